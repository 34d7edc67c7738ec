import pytest

from bot.execution import OrderExecutor


def test_dry_run_records_fill_with_fee():
    ex = OrderExecutor(fee_rate=0.001, dry_run=True)
    fill = ex.buy(0.5, 60_000.0)
    assert fill.side == "buy" and fill.qty == 0.5
    assert fill.fee == pytest.approx(30.0)
    assert ex.fills == [fill]


def test_live_mode_without_client_is_disabled():
    ex = OrderExecutor(dry_run=False)
    with pytest.raises(RuntimeError, match="live trading is disabled"):
        ex.sell(0.1, 60_000.0)
    assert ex.fills == []


def test_live_mode_uses_injected_client():
    class FakeClient:
        def __init__(self):
            self.orders = []

        def place_order(self, symbol, side, qty, price):
            self.orders.append((symbol, side, qty, price))

    client = FakeClient()
    ex = OrderExecutor(symbol="ETHUSDT", dry_run=False, client=client)
    ex.buy(1.0, 3_000.0)
    assert client.orders == [("ETHUSDT", "buy", 1.0, 3_000.0)]


def test_rejects_invalid_orders():
    ex = OrderExecutor()
    with pytest.raises(ValueError):
        ex.submit("hodl", 1.0, 100.0)
    with pytest.raises(ValueError):
        ex.buy(0, 100.0)
