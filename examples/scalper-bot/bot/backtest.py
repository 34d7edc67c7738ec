"""Long-only backtest of the EMA crossover strategy (always dry-run)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from bot.config import Config
from bot.data import Candle
from bot.execution import OrderExecutor
from bot.sizing import position_size
from bot.strategy import BUY, SELL, generate_signals


class BacktestResult(NamedTuple):
    trades: list[dict]
    final_equity: float


def _iso(candle: Candle) -> str:
    return candle.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_backtest(candles: Sequence[Candle], cfg: Config) -> BacktestResult:
    """Enter long on "buy" at the close; exit on stop-loss, take-profit
    (checked intrabar, stop first) or "sell" at the close. Any open
    position is closed at the last close. PnL is net of fees."""
    executor = OrderExecutor(symbol=cfg.symbol, fee_rate=cfg.fee_rate, dry_run=True)
    signals = generate_signals(candles, cfg)
    equity = cfg.initial_equity
    trades: list[dict] = []
    position = None  # (entry_fill, opened_candle)

    def close(candle: Candle, price: float, reason: str) -> None:
        nonlocal equity, position
        entry_fill, opened = position
        exit_fill = executor.sell(entry_fill.qty, price, candle.timestamp)
        pnl = (exit_fill.price - entry_fill.price) * entry_fill.qty
        pnl -= entry_fill.fee + exit_fill.fee
        equity += pnl
        trades.append(
            {
                "opened_at": _iso(opened),
                "closed_at": _iso(candle),
                "side": "long",
                "entry": round(entry_fill.price, 2),
                "exit": round(exit_fill.price, 2),
                "qty": entry_fill.qty,
                "pnl": round(pnl, 2),
                "reason": reason,
            }
        )
        position = None

    for candle, signal in zip(candles, signals):
        if position is not None:
            entry = position[0].price
            stop = entry * (1 - cfg.stop_loss_pct)
            target = entry * (1 + cfg.take_profit_pct)
            if candle.low <= stop:
                close(candle, stop, "stop_loss")
            elif candle.high >= target:
                close(candle, target, "take_profit")
            elif signal == SELL:
                close(candle, candle.close, "signal")
            continue  # no re-entry on the same candle as an exit
        if signal == BUY:
            qty = position_size(
                equity, candle.close, cfg.stop_loss_pct,
                cfg.risk_per_trade, cfg.max_position_usd,
            )
            if qty > 0:
                position = (executor.buy(qty, candle.close, candle.timestamp), candle)

    if position is not None and candles:
        close(candles[-1], candles[-1].close, "end_of_data")

    return BacktestResult(trades=trades, final_equity=round(equity, 2))
