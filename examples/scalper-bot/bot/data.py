"""Loading OHLCV candles from CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.csv"


@dataclass(frozen=True)
class Candle:
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO8601 UTC timestamp such as ``2024-05-01T00:00:00Z``."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def load_candles(path: str | Path = DEFAULT_PRICES) -> list[Candle]:
    candles: list[Candle] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            candles.append(
                Candle(
                    timestamp=parse_timestamp(row["timestamp"]),
                    open=float(row["open"]),
                    high=float(row["high"]),
                    low=float(row["low"]),
                    close=float(row["close"]),
                    volume=float(row["volume"]),
                )
            )
    return candles
