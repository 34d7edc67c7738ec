"""Bot configuration: defaults overridable via ``BOT_*`` environment variables.

Exchange credentials are intentionally NOT handled here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping


@dataclass(frozen=True)
class Config:
    symbol: str = "BTCUSDT"
    fast_period: int = 5
    slow_period: int = 20
    risk_per_trade: float = 0.01
    max_position_usd: float = 5000.0
    stop_loss_pct: float = 0.004
    take_profit_pct: float = 0.006
    fee_rate: float = 0.0004
    initial_equity: float = 10000.0

    def __post_init__(self) -> None:
        if self.fast_period <= 0 or self.slow_period <= 0:
            raise ValueError("EMA periods must be positive")
        if self.fast_period >= self.slow_period:
            raise ValueError("fast_period must be smaller than slow_period")
        if not 0 <= self.fee_rate < 1:
            raise ValueError("fee_rate must be in [0, 1)")


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build a Config from defaults, overridden by ``BOT_<FIELD>`` variables."""
    env = os.environ if env is None else env
    overrides: dict[str, object] = {}
    for f in fields(Config):
        raw = env.get(f"BOT_{f.name.upper()}")
        if raw is None:
            continue
        default = getattr(Config, f.name)
        overrides[f.name] = type(default)(raw)
    return Config(**overrides)
