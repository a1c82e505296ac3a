"""A live session through the Alpaca broker on the fake trading API: reconciliation on start
and after a broker error, and orders that reach the fake exactly once."""

from __future__ import annotations

import polars as pl
import pytest

from live.brokers.alpaca import AlpacaBroker
from tests.fakes.alpaca_trading import KEY_ID, SECRET, FakeAlpacaTrading, TradingServer
from tests.fakes.vendor_server import Fault
from tests.test_alpaca_broker import FAST, TIMEOUT_S
from tests.test_live_session import live_session, market

pytestmark = pytest.mark.integration  # starts a server on loopback


@pytest.fixture
def fake():
    with TradingServer() as server:
        yield FakeAlpacaTrading(server, cash=100_000.0)


def alpaca(fake: FakeAlpacaTrading) -> AlpacaBroker:
    return AlpacaBroker(KEY_ID, SECRET, url_override=fake.url, timeout_s=TIMEOUT_S, retry=FAST)


def started(fake: FakeAlpacaTrading, ticker: str, price: float):
    """A session through the fake with a model that never trades, started (reconciled) at the
    open, ``ticker`` last traded at ``price``; returns it and the open."""
    bars, features = market()
    session = live_session(bars, features.with_columns(x=pl.lit(0.0)), broker=alpaca(fake))
    ts = session.panel.ts[0]
    session.reconcile(ts, starting=True)
    session.last[session.column[ticker]] = price
    return session, ts


def test_start_adopts_the_brokers_positions_and_cancels_stale_orders(fake):
    fake.set_position("CCC", 25, 70.0)
    stale = fake.place("DDD", 10, "buy", type="limit", limit_price=50.0,
                       client_order_id="ats-stale-from-a-crashed-run")  # fmt: skip
    bars, features = market()
    session = live_session(bars, features.with_columns(x=pl.lit(0.0)), broker=alpaca(fake))
    changes = session.reconcile(session.panel.ts[0], starting=True)
    assert "CCC: local +0 -> broker +25" in changes
    assert session.portfolio.positions["CCC"].qty == 25
    assert session.portfolio.positions["CCC"].avg_price == 70.0
    assert f"cancelled stale order {stale['client_order_id']}" in changes
    assert fake.order(stale["client_order_id"])["status"] == "canceled"
    assert session.portfolio.cash == pytest.approx(100_000.0)


def test_a_session_trades_through_alpaca_and_reconciles_after_an_error(fake):
    bars, features = market()
    alerts: list[tuple[str, str]] = []

    def notify(severity: str, title: str, text: str) -> None:
        alerts.append((severity, title))
        if title.endswith("started"):  # after the start's reconciliation
            fake.set_position("EEE", 5, 90.0)  # appears at the broker behind the session's back

    session = live_session(bars, features, broker=alpaca(fake), notify=notify)
    # the first fill reads fail for longer than the retries last: the session carries on
    fake.fail_next(*[Fault("status", status=500, path="/v2/account/activities")] * 4)
    result = session.run()
    events = result.records.frames()["live_events"]
    assert "broker_error" in events["kind"].to_list()
    assert "EEE: local +0 -> broker +5" in events["detail"].to_list()
    assert ("warning", "Positions reconciled with the broker") in alerts
    orders = result.records.frames()["live_orders"].filter(pl.col("status") == "submitted")
    assert orders.height > 0
    # one order at the broker per decision; the fake filled none, so all were cancelled at the end
    posted = [r.json()["client_order_id"] for r in fake.requests("POST", "/v2/orders")]
    assert sorted(posted) == sorted(orders["client_order_id"].to_list())
    assert all(fake.order(c)["status"] == "canceled" for c in posted)


def test_reconciling_after_an_error_books_unpolled_fills_once(fake):
    from datetime import timedelta

    from live.engine.types import Intent, Order, OrderType, Side

    session, ts = started(fake, "AAA", 50.0)
    order = Order("ats-entry-aaa", "AAA", Side.BUY, 10, OrderType.MARKET, Intent.ENTRY, ts)
    session._act(order, 0, ts)
    fake.fill("ats-entry-aaa", 10, 50.02)
    # a broker error elsewhere: the reconciliation sees the position, which includes the fill
    session.reconcile(ts + timedelta(minutes=1))
    assert session.portfolio.positions["AAA"].qty == 10
    assert session._poll_fills(ts) == []  # booked once, by the reconciliation
    assert session.portfolio.cash == pytest.approx(100_000.0 - 10 * 50.02)


def test_expired_limit_orders_are_cancelled_at_a_broker_that_keeps_them(fake):
    from datetime import timedelta

    from live.engine.types import Intent, Order, OrderType, Side

    session, ts = started(fake, "BBB", 60.0)
    limit = Order("ats-limit-bbb", "BBB", Side.BUY, 10, OrderType.LIMIT, Intent.ENTRY, ts,
                  limit_price=59.5, expires_at=ts + timedelta(minutes=5))  # fmt: skip
    session._act(limit, 0, ts)
    session._expire(ts + timedelta(minutes=2))
    assert fake.order("ats-limit-bbb")["status"] == "new"
    session._expire(ts + timedelta(minutes=4))  # it may not fill in the bar opening at +5
    assert fake.order("ats-limit-bbb")["status"] == "canceled"


def test_a_fill_that_beats_a_cancel_is_booked_before_the_exit_so_nothing_flips(fake):
    from datetime import timedelta

    from live.engine.types import Cancel, Intent, Order, OrderType, Side

    session, ts = started(fake, "CCC", 70.0)
    fake.set_position("CCC", 20, 69.0)
    session.reconcile(ts)  # the session now holds 20 CCC
    target = Order("ats-target-ccc", "CCC", Side.SELL, 20, OrderType.LIMIT, Intent.TARGET, ts,
                   limit_price=70.5)  # fmt: skip
    session._act(target, 0, ts)
    fake.fill("ats-target-ccc", 20, 70.5)  # the target fills before the cancel arrives
    later = ts + timedelta(minutes=1)
    session._act(Cancel("ats-target-ccc", "CCC", "replaced by a stop exit"), 1, later)
    assert "CCC" not in session.portfolio.positions  # the fill was booked by the cancel
    stop = Order("ats-stop-ccc", "CCC", Side.SELL, 20, OrderType.MARKET, Intent.STOP, later)
    session._act(stop, 1, later)
    [refused] = [o for o in session.records.orders if o["client_order_id"] == "ats-stop-ccc"]
    assert refused["status"] == "rejected" and "does not reduce" in refused["detail"]
    assert fake.order("ats-stop-ccc") is None  # never reached the broker: no short


def test_entries_are_refused_while_the_broker_blocks_the_account(fake):
    from live.engine.types import Intent, Order, OrderType, Side

    session, ts = started(fake, "AAA", 50.0)
    fake.trading_blocked = True
    entry = Order("ats-entry-blocked", "AAA", Side.BUY, 10, OrderType.MARKET, Intent.ENTRY, ts)
    session._act(entry, 0, ts)
    [refused] = session.records.orders
    assert refused["status"] == "rejected" and refused["detail"].startswith("buying power")
    assert fake.order("ats-entry-blocked") is None
