from datetime import datetime, timedelta, timezone

import pytest

from bot.data import Candle

START = datetime(2024, 5, 1, tzinfo=timezone.utc)


def make_candles(closes, spread=1.0):
    """Flat-ish candles around each close (tight wicks, no SL/TP trigger)."""
    return [
        Candle(START + timedelta(minutes=i), c, c + spread, c - spread, c, 1.0)
        for i, c in enumerate(closes)
    ]


@pytest.fixture
def candle_factory():
    return make_candles
