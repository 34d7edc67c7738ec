"""EMA crossover scalping strategy (pure functions)."""

from __future__ import annotations

from typing import Sequence

from bot.config import Config
from bot.data import Candle

BUY, SELL, HOLD = "buy", "sell", "hold"


def ema(values: Sequence[float], period: int) -> list[float]:
    """Exponential moving average, seeded with the first value."""
    if period <= 0:
        raise ValueError("period must be positive")
    if not values:
        return []
    alpha = 2.0 / (period + 1)
    out = [float(values[0])]
    for v in values[1:]:
        out.append(alpha * float(v) + (1 - alpha) * out[-1])
    return out


def generate_signals(candles: Sequence[Candle], cfg: Config) -> list[str]:
    """One signal per candle: "buy" when the fast EMA crosses above the slow
    EMA, "sell" when it crosses below, otherwise "hold". The first
    ``slow_period`` candles are a warm-up and always "hold"."""
    closes = [c.close for c in candles]
    fast = ema(closes, cfg.fast_period)
    slow = ema(closes, cfg.slow_period)
    signals = [HOLD] * len(candles)
    for i in range(max(1, cfg.slow_period), len(candles)):
        prev_diff = fast[i - 1] - slow[i - 1]
        diff = fast[i] - slow[i]
        if prev_diff <= 0 < diff:
            signals[i] = BUY
        elif prev_diff >= 0 > diff:
            signals[i] = SELL
    return signals
