import pytest

from bot.sizing import position_size


def test_risk_based_size():
    # risk 100 USD, stop distance 1% of 100 = 1 USD -> 100 units, notional 10k
    qty = position_size(10_000, 100.0, 0.01, 0.01, 1_000_000)
    assert qty == pytest.approx(100.0)


def test_capped_by_max_position_usd():
    qty = position_size(10_000, 60_000.0, 0.004, 0.01, 5_000)
    assert qty * 60_000 <= 5_000
    assert qty == pytest.approx(5_000 / 60_000, abs=1e-6)


def test_never_exceeds_equity():
    qty = position_size(1_000, 50.0, 0.001, 0.05, 1_000_000)
    assert qty * 50.0 <= 1_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"equity": 0},
        {"price": 0},
        {"price": -1},
        {"stop_loss_pct": 0},
        {"stop_loss_pct": 1.5},
        {"risk_per_trade": 0},
        {"max_position_usd": -5},
    ],
)
def test_invalid_inputs_raise(kwargs):
    args = dict(equity=10_000, price=100.0, stop_loss_pct=0.01, risk_per_trade=0.01,
                max_position_usd=5_000)
    args.update(kwargs)
    with pytest.raises(ValueError):
        position_size(**args)
