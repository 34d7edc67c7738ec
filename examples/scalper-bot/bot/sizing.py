"""Risk-based position sizing."""

from __future__ import annotations

import math


def position_size(
    equity: float,
    price: float,
    stop_loss_pct: float,
    risk_per_trade: float,
    max_position_usd: float,
) -> float:
    """Quantity such that hitting the stop loses ``equity * risk_per_trade``,
    capped so the notional never exceeds ``max_position_usd`` or equity.
    Rounded down to 6 decimals."""
    if equity <= 0:
        raise ValueError("equity must be positive")
    if price <= 0:
        raise ValueError("price must be positive")
    if not 0 < stop_loss_pct < 1:
        raise ValueError("stop_loss_pct must be in (0, 1)")
    if not 0 < risk_per_trade <= 1:
        raise ValueError("risk_per_trade must be in (0, 1]")
    if max_position_usd <= 0:
        raise ValueError("max_position_usd must be positive")

    risk_amount = equity * risk_per_trade
    qty = risk_amount / (price * stop_loss_pct)
    max_notional = min(max_position_usd, equity)
    qty = min(qty, max_notional / price)
    return math.floor(qty * 1_000_000) / 1_000_000
