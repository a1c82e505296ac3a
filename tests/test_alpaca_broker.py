"""AlpacaBroker (through alpaca-py's TradingClient) against a fake Alpaca on loopback: never a real
broker. Orders, idempotent submits when answers are lost, rejections, retries, cancels, fills."""

from __future__ import annotations

import logging
import math
import time
import traceback
from datetime import UTC, datetime, timedelta

import pytest
import requests

from ats_resources.vendors.http import RetryPolicy
from live.brokers.alpaca import LIVE_URL, PAPER_URL, AlpacaBroker, _TradingClient
from live.brokers.base import (
    Broker,
    BrokerError,
    BrokerOrder,
    OrderRejected,
    OrderStatus,
    TradingMode,
)
from live.engine.types import Intent, Order, OrderType, Side, client_order_id
from tests.fakes.alpaca_trading import KEY_ID, SECRET, FakeAlpacaTrading, TradingServer
from tests.fakes.network import blocked_hosts  # noqa: F401 (autouse fixture)
from tests.fakes.vendor_server import Fault

pytestmark = pytest.mark.integration  # starts a server (loopback only), like test_vendor_alpaca

DECIDED = datetime(2024, 3, 5, 15, 0, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=4, max_elapsed_s=5.0, base_delay_s=0.01, max_delay_s=0.05)
TIMEOUT_S = 0.5
STALL_S = 1.2  # a dropped answer that stalls past the client's timeout


@pytest.fixture(scope="module")
def shared_server():
    # one server for the module: each stop() waits up to serve_forever's poll interval
    with TradingServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: TradingServer):
    for state in (shared_server.routes, shared_server.faults, shared_server.requests):
        state.clear()
    yield shared_server
    shared_server.faults.clear()


@pytest.fixture
def fake(server: TradingServer) -> FakeAlpacaTrading:
    return FakeAlpacaTrading(server)


def broker(fake: FakeAlpacaTrading, **overrides) -> AlpacaBroker:
    """A paper broker on the fake with fast retries (the defaults wait seconds)."""
    config = dict(url_override=fake.url, timeout_s=TIMEOUT_S, retry=FAST, seed=7)
    return AlpacaBroker(KEY_ID, SECRET, **{**config, **overrides})


def order(
    ticker: str = "AAPL",
    side: Side = Side.BUY,
    qty: int = 10,
    order_type: OrderType = OrderType.MARKET,
    *,
    intent: Intent = Intent.ENTRY,
    limit: float | None = None,
    stop: float | None = None,
    at: datetime = DECIDED,
    signal: str = "momentum",
) -> Order:
    return Order(
        client_order_id=client_order_id("s1", ticker, at, intent),
        ticker=ticker,
        side=side,
        qty=qty,
        order_type=order_type,
        intent=intent,
        decided_at=at,
        limit_price=limit,
        stop_price=stop,
        signal=signal,
    )


def posts(fake: FakeAlpacaTrading) -> list:
    return fake.requests("POST", "/v2/orders")


def lookups(fake: FakeAlpacaTrading) -> list:
    return fake.requests("GET", "/v2/orders:by_client_order_id")


def assert_secret_free(text: str) -> None:
    assert KEY_ID not in text and SECRET not in text


# -- reads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("negative_short_qty", [True, False])
def test_account_clock_and_positions_parse(server: TradingServer, negative_short_qty: bool) -> None:
    fake = FakeAlpacaTrading(
        server, cash=50_000.0, buying_power=120_000.0, negative_short_qty=negative_short_qty
    )
    fake.set_position("AAPL", 10, 150.25)
    fake.set_position("MSFT", -5, 300.0)
    b: Broker = broker(fake)
    protocol = [m for m in vars(Broker) if not m.startswith("_") and callable(vars(Broker)[m])]
    assert len(protocol) == 9 and all(callable(getattr(b, m)) for m in protocol)
    assert b.name == "alpaca-paper"

    account = b.account()
    assert account.cash == 50_000.0 and account.buying_power == 120_000.0
    assert account.equity == pytest.approx(50_000 + 10 * 150.25 - 5 * 300.0)
    assert not account.trading_blocked and account.status == "ACTIVE"

    fake.is_open = False
    clock = b.clock()
    assert clock.is_open is False
    assert clock.timestamp == datetime(2024, 3, 5, 15, 0, tzinfo=UTC)
    assert clock.next_open == datetime(2024, 3, 6, 14, 30, tzinfo=UTC)
    assert clock.next_close == datetime(2024, 3, 5, 21, 0, tzinfo=UTC)
    assert clock.timestamp.tzinfo is UTC

    wire = {p["symbol"]: p for p in _get(fake, "/v2/positions")}
    assert wire["MSFT"]["side"] == "short"
    assert wire["MSFT"]["qty"] == ("-5" if negative_short_qty else "5")
    positions = {p.ticker: p for p in b.positions()}
    assert (positions["AAPL"].qty, positions["AAPL"].avg_price) == (10, 150.25)
    assert (positions["MSFT"].qty, positions["MSFT"].avg_price) == (-5, 300.0)
    sent = fake.requests("GET")
    assert {r.path for r in sent} == {"/v2/account", "/v2/clock", "/v2/positions"}
    assert all(r.headers.get("APCA-API-KEY-ID") == KEY_ID for r in sent)


def test_trading_blocked_account(fake: FakeAlpacaTrading) -> None:
    fake.trading_blocked = True
    assert broker(fake).account().trading_blocked


def _get(fake: FakeAlpacaTrading, path: str):
    headers = {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}
    return requests.get(fake.url + path, headers=headers, timeout=2).json()


def test_reconciliation_reads_open_orders_and_a_short(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    mine = b.submit(order("AAPL", limit=180.0, order_type=OrderType.LIMIT))
    filled = b.submit(order("NVDA", intent=Intent.TARGET))
    fake.fill(filled.client_order_id, 10, 900.0)
    partial = b.submit(order("AMD", qty=4, intent=Intent.STOP))
    fake.fill(partial.client_order_id, 1, 170.0)
    outside = fake.place("TSLA", 3, "sell", type="stop", stop_price=150.0)
    fake.place("META", 2, status="canceled")
    fake.set_position("TSLA", -7, 200.0)

    opened = b.open_orders()
    by_id = {o.client_order_id: o for o in opened}
    assert set(by_id) == {mine.client_order_id, partial.client_order_id, outside["client_order_id"]}
    assert opened[0].client_order_id == mine.client_order_id  # oldest first
    assert by_id[mine.client_order_id].order_type is OrderType.LIMIT
    assert by_id[mine.client_order_id].limit_price == 180.0
    amd = by_id[partial.client_order_id]
    assert amd.status is OrderStatus.PARTIALLY_FILLED and amd.filled_qty == 1
    assert amd.filled_avg_price == 170.0 and amd.status.open
    tsla = by_id[outside["client_order_id"]]
    assert (tsla.side, tsla.qty, tsla.stop_price, tsla.limit_price) == (Side.SELL, 3, 150.0, None)
    assert tsla.order_type is OrderType.STOP_LIMIT  # Alpaca "stop": no engine type of its own
    listed = fake.requests("GET", "/v2/orders")[-1].query
    assert listed["status"] == "open" and listed["limit"] == "500"

    positions = {p.ticker: p.qty for p in b.positions()}
    assert positions == {"NVDA": 10, "AMD": 1, "TSLA": -7}

    got = b.get_order(filled.client_order_id)
    assert got is not None and got.status is OrderStatus.FILLED and got.filled_qty == 10
    assert b.get_order("ats-never-submitted") is None


# -- submit -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "side", "limit", "stop", "expected"),
    [
        (OrderType.MARKET, Side.BUY, None, None, {}),
        (OrderType.LIMIT, Side.SELL, 101.5, None, {"limit_price": 101.5}),
        (OrderType.STOP_LIMIT, Side.SELL, 95.0, 96.0, {"limit_price": 95.0, "stop_price": 96.0}),
    ],
)
def test_submit_sends_alpacas_order_json(
    fake: FakeAlpacaTrading,
    kind: OrderType,
    side: Side,
    limit: float | None,
    stop: float | None,
    expected: dict,
) -> None:
    o = order("AAPL", side, 12, kind, limit=limit, stop=stop)
    placed = broker(fake).submit(o)

    (post,) = posts(fake)
    body = post.json()
    assert body == {
        "symbol": "AAPL",
        "qty": 12.0,
        "side": side.value,
        "type": kind.value,
        "time_in_force": "day",
        "client_order_id": o.client_order_id,
        **expected,
    }
    assert post.headers.get("APCA-API-KEY-ID") == KEY_ID
    assert post.headers.get("APCA-API-SECRET-KEY") == SECRET
    assert isinstance(placed, BrokerOrder)
    assert placed.client_order_id == o.client_order_id
    assert placed.broker_order_id == fake.order(o.client_order_id)["id"]
    assert (placed.ticker, placed.side, placed.qty, placed.order_type) == ("AAPL", side, 12, kind)
    assert (placed.limit_price, placed.stop_price) == (limit, stop)
    assert placed.status is OrderStatus.NEW and placed.filled_qty == 0
    assert placed.submitted_at is not None and placed.submitted_at.tzinfo is UTC


def test_prices_round_to_alpacas_tick_in_the_orders_favour(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    buy = b.submit(order("AAPL", Side.BUY, 1, OrderType.LIMIT, limit=101.23789))
    sell = b.submit(order("MSFT", Side.SELL, 1, OrderType.STOP_LIMIT, limit=99.991, stop=100.005))
    penny = b.submit(order("SNDL", Side.BUY, 100, OrderType.LIMIT, limit=0.123456))

    assert buy.limit_price == 101.23  # a buy limit never rounds up
    assert sell.limit_price == 100.0 and sell.stop_price == 100.01  # a sell limit never down
    assert penny.limit_price == 0.1234  # below $1 the tick is 0.0001
    assert len(fake.orders) == 3


@pytest.mark.parametrize("stall_s", [0.0, STALL_S], ids=["reset", "stalled-past-timeout"])
def test_order_accepted_but_answer_lost_is_found_not_placed_twice(
    fake: FakeAlpacaTrading, stall_s: float
) -> None:
    o = order("AAPL", qty=5)
    fake.drop_next_order(stall_s=stall_s)
    placed = broker(fake).submit(o)

    assert len(fake.orders) == 1  # exactly one order at Alpaca
    assert placed.broker_order_id == fake.order(o.client_order_id)["id"]
    assert placed.qty == 5 and placed.status is OrderStatus.NEW
    assert len(posts(fake)) == 1  # found by the lookup, never posted again
    (lookup,) = lookups(fake)
    assert lookup.query == {"client_order_id": o.client_order_id}
    if stall_s:
        assert lookup.at - posts(fake)[0].at >= TIMEOUT_S


def test_unreadable_order_answer_is_looked_up(fake: FakeAlpacaTrading) -> None:
    o = order("AAPL")
    fake.fail_next(Fault("truncated", path="POST /v2/orders"))
    placed = broker(fake).submit(o)

    assert len(fake.orders) == 1 and len(posts(fake)) == 1 and len(lookups(fake)) == 1
    assert placed.broker_order_id == fake.order(o.client_order_id)["id"]


def test_5xx_on_submit_looks_up_then_posts_again(fake: FakeAlpacaTrading) -> None:
    o = order("AAPL")
    fake.fail_next(Fault("status", 503, path="POST /v2/orders"))
    placed = broker(fake).submit(o)

    assert len(fake.orders) == 1
    assert len(posts(fake)) == 2  # the 503 placed nothing (the lookup said so): posted again
    assert len(lookups(fake)) == 1
    assert lookups(fake)[0].at < posts(fake)[1].at
    assert placed.client_order_id == o.client_order_id


def test_duplicate_submit_returns_the_existing_order(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    o = order("AAPL", Side.SELL, 3, OrderType.LIMIT, limit=190.0)
    first = b.submit(o)
    again = b.submit(o)

    assert again == first
    assert len(fake.orders) == 1
    assert len(posts(fake)) == 2 and len(lookups(fake)) == 1  # 422 "must be unique" -> lookup


def test_422_unique_from_an_earlier_process_returns_that_order_and_maps_its_fills(
    fake: FakeAlpacaTrading,
) -> None:
    o = order("AAPL", qty=8)
    earlier = fake.place("AAPL", 8, "buy", client_order_id=o.client_order_id)
    b = broker(fake)
    placed = b.submit(o)

    assert placed.broker_order_id == earlier["id"] and len(fake.orders) == 1
    fake.fill(o.client_order_id, 8, 101.0)
    (fill,) = b.poll_fills()
    assert (fill.client_order_id, fill.qty, fill.price) == (o.client_order_id, 8, 101.0)


def test_insufficient_buying_power_is_rejected_with_alpacas_message(
    server: TradingServer,
) -> None:
    fake = FakeAlpacaTrading(server, buying_power=1_000.0)
    o = order("AAPL", qty=100, order_type=OrderType.LIMIT, limit=150.0)
    with pytest.raises(OrderRejected) as raised:
        broker(fake).submit(o)

    text = str(raised.value)
    assert "insufficient buying power" in text and "HTTP 403" in text
    assert o.client_order_id in text and "AAPL" in text
    assert not raised.value.retryable
    assert len(posts(fake)) == 1 and not fake.orders and not lookups(fake)
    assert_secret_free(text)


def test_refusal_after_a_lost_answer_looks_the_order_up_first(fake: FakeAlpacaTrading) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=2, max_elapsed_s=5.0, base_delay_s=0.01))
    o = order("AAPL")
    refused = {"code": 40310000, "message": "insufficient buying power"}
    fake.drop_next_order()  # placed, answer lost
    fake.fail_next(
        *[Fault("status", 500, path="GET /v2/orders:by_client_order_id")] * 2,  # lookup fails
        Fault("status", 403, body=refused, path="POST /v2/orders"),  # the first used the money
    )
    placed = b.submit(o)

    assert placed.broker_order_id == fake.order(o.client_order_id)["id"]
    assert len(fake.orders) == 1 and len(posts(fake)) == 2 and len(lookups(fake)) == 3


def test_other_422_is_rejected(fake: FakeAlpacaTrading) -> None:
    fake.fail_next(
        Fault(
            "status",
            422,
            body={"code": 42210000, "message": "asset AAPLX is not active"},
            path="POST /v2/orders",
        )
    )
    with pytest.raises(OrderRejected, match="asset AAPLX is not active"):
        broker(fake).submit(order("AAPLX"))
    assert len(posts(fake)) == 1


def test_429_retry_after_is_honoured(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    fake.fail_next(Fault("status", 429, headers={"Retry-After": "0.4"}, path="GET /v2/account"))
    assert b.account().cash == 100_000.0
    first, second = fake.requests("GET", "/v2/account")
    assert second.at - first.at >= 0.4

    fake.fail_next(Fault("status", 429, headers={"Retry-After": "0.3"}, path="POST /v2/orders"))
    b.submit(order("AAPL"))
    one, two = posts(fake)
    assert two.at - one.at >= 0.3
    assert not lookups(fake)  # a 429 placed nothing: no lookup needed
    assert len(fake.orders) == 1


def test_retry_after_beyond_the_time_budget_fails_at_once(fake: FakeAlpacaTrading) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=5, max_elapsed_s=1.0, base_delay_s=0.01))
    fake.fail_next(Fault("status", 429, headers={"Retry-After": "30"}, path="GET /v2/clock"))
    began = time.monotonic()
    with pytest.raises(BrokerError, match="HTTP 429") as raised:
        b.clock()
    assert time.monotonic() - began < 0.9
    assert raised.value.retryable and "rate limit" in str(raised.value)


def test_5xx_reset_and_slow_reads_are_retried(fake: FakeAlpacaTrading) -> None:
    fake.set_position("AAPL", 1, 10.0)
    fake.fail_next(
        Fault("status", 503, path="/v2/positions"),
        Fault("reset", path="/v2/positions"),
        Fault("slow", delay_s=STALL_S, path="/v2/positions"),
    )
    assert [p.ticker for p in broker(fake).positions()] == ["AAPL"]
    assert len(fake.requests("GET", "/v2/positions")) == 4


def test_persistent_5xx_fails_after_bounded_attempts(fake: FakeAlpacaTrading) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=3, max_elapsed_s=5.0, base_delay_s=0.01))
    fake.fail_next(*[Fault("status", 500, path="/v2/clock")] * 10)
    began = time.monotonic()
    with pytest.raises(BrokerError) as raised:
        b.clock()

    assert time.monotonic() - began < 2.0
    assert len(fake.requests("GET", "/v2/clock")) == 3
    text = str(raised.value)
    assert raised.value.retryable
    assert "GET /v2/clock" in text and "HTTP 500" in text and "gave up after 3 tries" in text
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_persistent_5xx_on_submit_fails_retryable_and_places_nothing(
    fake: FakeAlpacaTrading,
) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=3, max_elapsed_s=5.0, base_delay_s=0.01))
    fake.fail_next(*[Fault("status", 502, path="POST /v2/orders")] * 10)
    o = order("AAPL")
    with pytest.raises(BrokerError) as raised:
        b.submit(o)

    assert not isinstance(raised.value, OrderRejected) and raised.value.retryable
    assert len(posts(fake)) == 3 and len(lookups(fake)) == 3 and not fake.orders
    text = str(raised.value)
    assert o.client_order_id in text and "HTTP 502" in text and "again is safe" in text
    assert text.count("alpaca-paper") == 1 and "tries" in text


def test_submit_is_bounded_in_time(fake: FakeAlpacaTrading) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=50, max_elapsed_s=1.5, base_delay_s=0.01))
    fake.fail_next(*[Fault("status", 500)] * 200)  # posts and lookups alike
    began = time.monotonic()
    with pytest.raises(BrokerError, match="not confirmed"):
        b.submit(order("AAPL"))
    assert time.monotonic() - began < 2.5


def test_malformed_json(fake: FakeAlpacaTrading) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=2, max_elapsed_s=5.0, base_delay_s=0.01))
    fake.fail_next(Fault("truncated", path="/v2/account"))
    assert b.account().equity == 100_000.0  # retried once

    fake.fail_next(*[Fault("truncated", path="/v2/account")] * 2)
    with pytest.raises(BrokerError, match="malformed JSON") as raised:
        b.account()
    assert raised.value.retryable and "GET /v2/account" in str(raised.value)


def test_unexpected_shape_is_a_broker_error(fake: FakeAlpacaTrading) -> None:
    fake.fail_next(Fault("status", 200, body={"hello": "world"}, path="/v2/clock"))
    with pytest.raises(BrokerError, match="alpaca-paper GET /v2/clock: unexpected Alpaca response"):
        broker(fake).clock()


# -- cancel -----------------------------------------------------------------------------------------
def test_cancel(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    working = b.submit(order("AAPL", order_type=OrderType.LIMIT, limit=150.0))
    b.cancel(working.client_order_id)

    (delete,) = fake.requests("DELETE")
    assert delete.path == f"/v2/orders/{working.broker_order_id}"
    assert fake.order(working.client_order_id)["status"] == "canceled"
    assert b.get_order(working.client_order_id).status is OrderStatus.CANCELED
    b.cancel(working.client_order_id)  # again: 422, not an error

    done = b.submit(order("MSFT"))
    fake.fill(done.client_order_id, 10, 400.0)
    b.cancel(done.client_order_id)  # already filled: 422 "already in filled state", no error
    assert fake.order(done.client_order_id)["status"] == "filled"

    b.cancel("ats-unknown")  # nothing at the broker: no error, no DELETE
    assert len(fake.requests("DELETE")) == 3


def test_cancel_looks_up_an_order_this_broker_did_not_place(fake: FakeAlpacaTrading) -> None:
    outside = fake.place("AAPL", 5, "buy", type="limit", limit_price=120.0)
    broker(fake).cancel(outside["client_order_id"])

    assert len(lookups(fake)) == 1
    assert fake.order(outside["client_order_id"])["status"] == "canceled"


def test_cancel_5xx_is_retried(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    working = b.submit(order("AAPL", order_type=OrderType.LIMIT, limit=150.0))
    fake.fail_next(Fault("status", 500, path="DELETE /v2/orders"))
    b.cancel(working.client_order_id)
    assert len(fake.requests("DELETE")) == 2
    assert fake.order(working.client_order_id)["status"] == "canceled"


# -- fills ------------------------------------------------------------------------------------------
def test_poll_fills_partial_fills_pages_no_duplicates_and_unknown_orders(
    fake: FakeAlpacaTrading, caplog: pytest.LogCaptureFixture
) -> None:
    b = broker(fake, fills_page_size=2)
    entry = order("AAPL", qty=10, signal="breakout")
    short = order("MSFT", Side.SELL, 4, intent=Intent.ENTRY, signal="mean_rev")
    b.submit(entry)
    b.submit(short)
    outside = fake.place("TSLA", 2)
    fake.fill(entry.client_order_id, 3, 100.0)
    fake.fill(outside["client_order_id"], 2, 250.0)
    fake.fill(entry.client_order_id, 3, 100.5)
    fake.fill(short.client_order_id, 4, 400.0)
    fake.fill(entry.client_order_id, 4, 101.0)

    with caplog.at_level(logging.WARNING, logger="live.brokers.alpaca"):
        fills = b.poll_fills()
    assert [(f.client_order_id, f.qty, f.price) for f in fills] == [
        (entry.client_order_id, 3, 100.0),
        (entry.client_order_id, 3, 100.5),
        (short.client_order_id, 4, 400.0),
        (entry.client_order_id, 4, 101.0),
    ]
    first = fills[0]
    assert (first.ticker, first.side, first.intent, first.signal) == (
        "AAPL",
        Side.BUY,
        Intent.ENTRY,
        "breakout",
    )
    assert first.fees == 0.0 and math.isnan(first.reference_price)
    assert first.ts.tzinfo is UTC and abs(first.ts - datetime.now(UTC)) < timedelta(minutes=1)
    assert fills[2].side is Side.SELL and fills[2].signal == "mean_rev"  # "sell_short" on the wire
    assert [f.ts for f in fills] == sorted(f.ts for f in fills)
    assert b.skipped_fills == 1 and "TSLA" in caplog.text

    # five activities at two per page: three pages, each after the last one's last id
    pages = fake.requests("GET", "/v2/account/activities/FILL")
    assert len(pages) == 3
    assert all(p.query["direction"] == "asc" and p.query["page_size"] == "2" for p in pages)
    assert "page_token" not in pages[0].query
    assert pages[1].query["page_token"] == fake.activities[1]["id"]
    assert pages[2].query["page_token"] == fake.activities[3]["id"]

    assert b.poll_fills() == []  # nothing new (the lookback re-reads, the ids are dropped)
    assert b.skipped_fills == 1  # and the unknown one is not counted twice
    later = b.submit(order("AAPL", Side.SELL, 10, intent=Intent.TARGET))
    fake.fill(later.client_order_id, 6, 103.0)
    fake.fill(later.client_order_id, 4, 103.5)
    again = b.poll_fills()
    assert [(f.qty, f.price, f.intent, f.side) for f in again] == [
        (6, 103.0, Intent.TARGET, Side.SELL),
        (4, 103.5, Intent.TARGET, Side.SELL),
    ]
    assert b.poll_fills() == []


def test_poll_fills_starts_at_fills_since(fake: FakeAlpacaTrading) -> None:
    b = broker(fake)
    o = order("AAPL")
    b.submit(o)
    fake.fill(o.client_order_id, 4, 10.0, at=datetime.now(UTC) - timedelta(hours=2))
    fake.fill(o.client_order_id, 6, 11.0)
    assert [f.qty for f in b.poll_fills()] == [6]  # before fills_since: not this session's

    b2 = broker(fake, fills_since=datetime.now(UTC) - timedelta(days=1))
    b2.adopt(o)
    assert [f.qty for f in b2.poll_fills()] == [4, 6]


def test_fills_of_an_adopted_order_map_back(fake: FakeAlpacaTrading) -> None:
    o = order("AAPL", qty=6, intent=Intent.STOP, signal="trend")
    fake.place("AAPL", 6, "sell", client_order_id=o.client_order_id)  # before a restart
    b = broker(fake)
    b.adopt(o)  # found at reconcile; its broker id is not known yet
    fake.fill(o.client_order_id, 6, 99.0)
    (fill,) = b.poll_fills()

    assert (fill.client_order_id, fill.intent, fill.signal, fill.qty) == (
        o.client_order_id,
        Intent.STOP,
        "trend",
        6,
    )
    # the broker id was resolved once, by GET /v2/orders/{id}
    assert len(fake.requests("GET", f"/v2/orders/{fake.order(o.client_order_id)['id']}")) == 1


def test_fills_of_a_submit_whose_answer_never_came(fake: FakeAlpacaTrading) -> None:
    b = broker(fake, retry=RetryPolicy(max_attempts=1, max_elapsed_s=5.0, base_delay_s=0.01))
    o = order("AAPL")
    fake.drop_next_order()
    fake.fail_next(Fault("status", 500, path="GET /v2/orders:by_client_order_id"))
    with pytest.raises(BrokerError, match="not confirmed"):
        b.submit(o)  # the order exists, but neither the POST nor the lookup said so
    assert len(fake.orders) == 1

    fake.fill(o.client_order_id, 10, 50.0)
    (fill,) = b.poll_fills()
    assert fill.client_order_id == o.client_order_id and b.skipped_fills == 0


# -- configuration and secrets ---------------------------------------------------------------------
def test_from_env_paper_live_and_url_override(fake: FakeAlpacaTrading) -> None:
    env = {"ALPACA_API_KEY": KEY_ID, "ALPACA_API_SECRET": SECRET}
    paper = AlpacaBroker.from_env(env, TradingMode.PAPER)
    assert (paper.paper, paper.name, paper.url) == (True, "alpaca-paper", PAPER_URL)
    live = AlpacaBroker.from_env(env, TradingMode.LIVE)
    assert (live.paper, live.name, live.url) == (False, "alpaca-live", LIVE_URL)
    assert live._client._base_url == LIVE_URL == "https://api.alpaca.markets"

    routed = AlpacaBroker.from_env(
        {**env, "ALPACA_TRADING_URL": fake.url + "/v2/"}, TradingMode.PAPER, retry=FAST
    )
    assert routed.url == fake.url
    assert routed.account().cash == 100_000.0
    assert_secret_free(repr(paper) + repr(live) + repr(routed) + repr(routed._client))


def test_from_env_refusals_name_variables_never_values() -> None:
    with pytest.raises(ValueError, match="simulated") as raised:
        AlpacaBroker.from_env({"ALPACA_API_KEY": KEY_ID}, TradingMode.SIMULATED)
    for env, missing in (
        ({"ALPACA_API_KEY": KEY_ID}, "ALPACA_API_SECRET"),
        ({"ALPACA_API_SECRET": SECRET, "ALPACA_API_KEY": " "}, "ALPACA_API_KEY"),
        ({}, "ALPACA_API_KEY and ALPACA_API_SECRET"),
    ):
        with pytest.raises(ValueError) as raised:
            AlpacaBroker.from_env(env, TradingMode.LIVE)
        text = str(raised.value)
        assert missing in text and "\n" not in text
        assert_secret_free(text)
    env = {"ALPACA_API_KEY": KEY_ID, "ALPACA_API_SECRET": SECRET}
    with pytest.raises(ValueError, match="live API"):
        AlpacaBroker.from_env({**env, "ALPACA_TRADING_URL": LIVE_URL}, TradingMode.PAPER)
    with pytest.raises(ValueError, match="paper API"):
        AlpacaBroker.from_env({**env, "ALPACA_TRADING_URL": PAPER_URL + "/"}, TradingMode.LIVE)
    with pytest.raises(ValueError, match="missing: ALPACA_API_SECRET"):
        AlpacaBroker(KEY_ID, "")


@pytest.mark.parametrize("wrong", ["key", "secret"])
def test_401_names_the_fix_and_never_the_credentials(
    fake: FakeAlpacaTrading, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    key, secret = ("PKWRONGKEY999", SECRET) if wrong == "key" else (KEY_ID, "wrong/secret+value")
    b = AlpacaBroker(key, secret, url_override=fake.url, retry=FAST, timeout_s=TIMEOUT_S)
    with caplog.at_level(logging.DEBUG):
        for call in (b.account, b.open_orders, b.poll_fills, lambda: b.submit(order("AAPL"))):
            with pytest.raises(BrokerError) as raised:
                call()
            exc = raised.value
            text = "".join(traceback.format_exception(exc)) + repr(exc) + str(vars(exc))
            assert "HTTP 401" in text and "request is not authorized" in text
            assert "ALPACA_API_KEY" in str(exc) and "ALPACA_API_SECRET" in str(exc)
            assert key not in text and secret not in text
            assert exc.__context__ is None and not exc.retryable
    assert key not in caplog.text and secret not in caplog.text
    assert key not in repr(b) and secret not in repr(b)
    assert len(fake.requests()) == 4  # a 401 is not retried
    assert not fake.orders


def test_sdk_hooks_are_the_ones_overridden(fake: FakeAlpacaTrading) -> None:
    """alpaca-py's private hooks this module relies on (checked against 0.44)."""
    b = broker(fake)
    client = b._client
    assert isinstance(client, _TradingClient) and client._retry == 0
    assert "_one_request" in vars(type(client))  # the SDK's per-request hook, overridden
    assert b.account().cash == 100_000.0
    assert len(fake.requests()) == 1
