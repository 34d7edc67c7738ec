import pytest

from bot.backtest import run_backtest
from bot.config import Config
from bot.data import DEFAULT_PRICES, load_candles
from bot.main import main

CFG = Config(fast_period=2, slow_period=4, fee_rate=0.0)


def test_take_profit_exit(candle_factory):
    closes = [100.0] * 6 + [110.0, 112.0, 115.0]
    candles = candle_factory(closes, spread=0.5)
    trades, equity = run_backtest(candles, Config(fast_period=2, slow_period=4,
                                                  take_profit_pct=0.01, fee_rate=0.0))
    assert trades[0]["reason"] == "take_profit"
    assert trades[0]["exit"] == pytest.approx(110.0 * 1.01)
    assert trades[0]["pnl"] > 0 and equity > CFG.initial_equity


def test_stop_loss_exit_limits_loss(candle_factory):
    closes = [100.0] * 6 + [110.0, 90.0]
    trades, equity = run_backtest(candle_factory(closes), CFG)
    assert [t["reason"] for t in trades] == ["stop_loss"]
    # risk_per_trade = 1% of equity; the stop caps the loss at roughly that
    assert -trades[0]["pnl"] <= CFG.initial_equity * CFG.risk_per_trade + 1e-6
    assert equity == pytest.approx(CFG.initial_equity + trades[0]["pnl"])


def test_open_position_closed_at_end(candle_factory):
    closes = [100.0] * 6 + [100.2, 100.3]
    trades, _ = run_backtest(candle_factory(closes, spread=0.01), CFG)
    assert len(trades) == 1 and trades[0]["reason"] == "end_of_data"


def test_sample_data_is_deterministic_and_trades():
    candles = load_candles(DEFAULT_PRICES)
    assert len(candles) == 300
    first = run_backtest(candles, Config())
    assert first == run_backtest(candles, Config())
    assert len(first.trades) >= 3
    assert {"opened_at", "closed_at", "side", "entry", "exit", "qty", "pnl"} <= set(first.trades[0])


def test_cli_requires_dry_run(capsys):
    assert main([]) == 2
    assert "live trading is disabled" in capsys.readouterr().err


def test_cli_dry_run_writes_only_when_asked(tmp_path, capsys):
    assert main(["--dry-run"]) == 0
    assert "final equity" in capsys.readouterr().out
    out = tmp_path / "trades.csv"
    assert main(["--dry-run", "--trades-out", str(out)]) == 0
    assert out.read_text().startswith("opened_at,closed_at,side")
