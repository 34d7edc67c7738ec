"""Order executor. Dry-run simulates fills; live trading is disabled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class ExchangeClient(Protocol):
    def place_order(self, symbol: str, side: str, qty: float, price: float) -> Any: ...


@dataclass(frozen=True)
class Fill:
    symbol: str
    side: str
    qty: float
    price: float
    fee: float
    timestamp: datetime | None = None

    @property
    def notional(self) -> float:
        return self.qty * self.price


@dataclass
class OrderExecutor:
    symbol: str = "BTCUSDT"
    fee_rate: float = 0.0004
    dry_run: bool = True
    client: ExchangeClient | None = None
    fills: list[Fill] = field(default_factory=list)

    def submit(
        self, side: str, qty: float, price: float, timestamp: datetime | None = None
    ) -> Fill:
        if side not in ("buy", "sell"):
            raise ValueError(f"invalid side: {side!r}")
        if qty <= 0:
            raise ValueError("qty must be positive")
        if price <= 0:
            raise ValueError("price must be positive")

        if not self.dry_run:
            if self.client is None:
                raise RuntimeError("live trading is disabled in this example")
            self.client.place_order(self.symbol, side, qty, price)

        fill = Fill(
            symbol=self.symbol,
            side=side,
            qty=qty,
            price=price,
            fee=qty * price * self.fee_rate,
            timestamp=timestamp,
        )
        self.fills.append(fill)
        return fill

    def buy(self, qty: float, price: float, timestamp: datetime | None = None) -> Fill:
        return self.submit("buy", qty, price, timestamp)

    def sell(self, qty: float, price: float, timestamp: datetime | None = None) -> Fill:
        return self.submit("sell", qty, price, timestamp)
