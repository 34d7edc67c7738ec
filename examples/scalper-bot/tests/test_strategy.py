import pytest

from bot.config import Config, load_config
from bot.strategy import BUY, HOLD, SELL, ema, generate_signals

CFG = Config(fast_period=2, slow_period=4)


def test_ema_constant_series_is_constant():
    assert ema([5.0] * 10, 3) == pytest.approx([5.0] * 10)


def test_ema_known_values():
    # alpha = 2 / (3 + 1) = 0.5
    assert ema([1, 2, 3], 3) == pytest.approx([1.0, 1.5, 2.25])


def test_ema_rejects_bad_period():
    with pytest.raises(ValueError):
        ema([1, 2, 3], 0)


def test_signals_hold_during_warmup_and_flat(candle_factory):
    candles = candle_factory([100.0] * 10)
    assert generate_signals(candles, CFG) == [HOLD] * 10


def test_signals_buy_then_sell_on_crossovers(candle_factory):
    closes = [100.0] * 6 + [110.0] * 4 + [90.0] * 4
    signals = generate_signals(candle_factory(closes), CFG)
    assert len(signals) == len(closes)
    assert signals.index(BUY) == 6
    assert signals.index(SELL) == 10
    assert signals.count(BUY) == 1 and signals.count(SELL) == 1


def test_load_config_env_overrides():
    cfg = load_config({"BOT_SYMBOL": "ETHUSDT", "BOT_FAST_PERIOD": "3", "BOT_FEE_RATE": "0.001"})
    assert (cfg.symbol, cfg.fast_period, cfg.fee_rate) == ("ETHUSDT", 3, 0.001)
    assert cfg.slow_period == Config().slow_period
