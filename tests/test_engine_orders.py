"""The order generator: order-type choice, prices to the cent, deterministic ids, exit sides."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from live.engine.orders import OrderGenerator, select_order_type, to_cent
from live.engine.settings import StrategySettings
from live.engine.types import Intent, OrderType, Position, Side, client_order_id

# limit orders above 8 bps of spread, stop-limits above 40 bps of volatility, 5-minute TTL
SETTINGS = StrategySettings()
DECIDED = datetime(2025, 3, 3, 15, 30, tzinfo=UTC)
NARROW, CALM = 3.0, 10.0  # bps: a market-order entry


def generator() -> OrderGenerator:
    return OrderGenerator("momo", SETTINGS)


def position(qty: int, target: float = math.nan) -> Position:
    return Position("AAPL", qty, 100.0, DECIDED, signal="breakout", target=target)


@pytest.mark.parametrize(
    "intent",
    [Intent.STOP, Intent.KILL, Intent.CLOSE, Intent.TIME, Intent.PEAK, Intent.SIGNAL_EXIT],
)
def test_urgent_exits_are_market_orders_even_in_wide_fast_names(intent):
    assert select_order_type(intent, 50.0, 100.0, SETTINGS) is OrderType.MARKET


def test_a_target_exit_is_a_limit_order():
    assert select_order_type(Intent.TARGET, NARROW, CALM, SETTINGS) is OrderType.LIMIT


def test_an_entry_in_a_fast_name_is_a_stop_limit():
    assert select_order_type(Intent.ENTRY, NARROW, 41.0, SETTINGS) is OrderType.STOP_LIMIT


def test_an_entry_in_a_wide_name_is_a_limit():
    assert select_order_type(Intent.ENTRY, 9.0, 40.0, SETTINGS) is OrderType.LIMIT


def test_an_entry_at_the_thresholds_is_a_market_order():
    assert select_order_type(Intent.ENTRY, 8.0, 40.0, SETTINGS) is OrderType.MARKET


def test_unknown_spread_and_volatility_count_as_narrow_and_calm():
    assert select_order_type(Intent.ENTRY, math.nan, math.nan, SETTINGS) is OrderType.MARKET
    assert select_order_type(Intent.ENTRY, 9.0, math.nan, SETTINGS) is OrderType.LIMIT


def test_the_intent_may_be_given_as_its_string():
    assert select_order_type("entry", 9.0, CALM, SETTINGS) is OrderType.LIMIT


def test_the_same_decision_gets_the_same_client_order_id():
    first = generator().entry("AAPL", 1, 10, 100.0, NARROW, CALM, DECIDED)
    again = generator().entry("AAPL", 1, 10, 100.0, NARROW, CALM, DECIDED)
    assert first.client_order_id == again.client_order_id
    assert first.client_order_id == client_order_id("momo", "AAPL", DECIDED, "entry")


def test_a_different_intent_gets_a_different_client_order_id():
    stop = generator().exit(position(10), Intent.STOP, 100.0, NARROW, CALM, DECIDED)
    time = generator().exit(position(10), Intent.TIME, 100.0, NARROW, CALM, DECIDED)
    assert stop.client_order_id != time.client_order_id


def test_a_different_minute_gets_a_different_client_order_id():
    now = generator().entry("AAPL", 1, 10, 100.0, NARROW, CALM, DECIDED)
    later = generator().entry("AAPL", 1, 10, 100.0, NARROW, CALM, DECIDED + timedelta(minutes=1))
    assert now.client_order_id != later.client_order_id


def test_a_market_entry_has_no_prices_and_no_expiry():
    order = generator().entry("AAPL", 1, 10, 100.0, NARROW, CALM, DECIDED, signal="breakout")
    assert (order.side, order.qty, order.order_type) == (Side.BUY, 10, OrderType.MARKET)
    assert (order.limit_price, order.stop_price, order.expires_at) == (None, None, None)
    assert (order.intent, order.signal) == (Intent.ENTRY, "breakout")


def test_a_limit_buy_rests_at_the_ask_to_the_cent():
    # 33.33 * (1 + 4.5 bps) = 33.3449985
    order = generator().entry("AAPL", 1, 10, 33.33, 9.0, CALM, DECIDED)
    assert (order.order_type, order.limit_price) == (OrderType.LIMIT, 33.34)


def test_a_limit_sell_rests_at_the_bid_to_the_cent():
    # 33.33 * (1 - 4.5 bps) = 33.3150015
    order = generator().entry("AAPL", -1, 10, 33.33, 9.0, CALM, DECIDED)
    assert (order.side, order.order_type, order.limit_price) == (Side.SELL, OrderType.LIMIT, 33.32)


def test_a_limit_entry_expires_one_minute_after_its_ttl():
    order = generator().entry("AAPL", 1, 10, 33.33, 9.0, CALM, DECIDED)
    assert order.expires_at == datetime(2025, 3, 3, 15, 36, tzinfo=UTC)


def test_a_stop_limit_buy_triggers_a_quarter_atr_up_with_a_spread_of_room():
    # stop 100 * (1 + 15 bps) = 100.15; limit 100.15 * (1 + 10 bps) = 100.25015
    order = generator().entry("AAPL", 1, 10, 100.0, 10.0, 60.0, DECIDED)
    assert order.order_type is OrderType.STOP_LIMIT
    assert (order.stop_price, order.limit_price) == (100.15, 100.25)
    assert order.expires_at == DECIDED + timedelta(minutes=6)


def test_a_stop_limit_sell_triggers_a_quarter_atr_down_with_a_spread_of_room():
    # stop 100 * (1 - 15 bps) = 99.85; limit 99.85 * (1 - 10 bps) = 99.75015
    order = generator().entry("AAPL", -1, 10, 100.0, 10.0, 60.0, DECIDED)
    assert (order.side, order.stop_price, order.limit_price) == (Side.SELL, 99.85, 99.75)


def test_a_stop_limit_with_an_unknown_spread_has_its_limit_at_the_stop():
    order = generator().entry("AAPL", 1, 10, 100.0, math.nan, 60.0, DECIDED)
    assert (order.stop_price, order.limit_price) == (100.15, 100.15)


@pytest.mark.parametrize("qty", [0, -5, 1.5])
def test_an_entry_needs_a_whole_positive_qty(qty):
    with pytest.raises(ValueError, match="qty"):
        generator().entry("AAPL", 1, qty, 100.0, NARROW, CALM, DECIDED)


def test_an_entry_needs_a_direction_of_one():
    with pytest.raises(ValueError, match="direction"):
        generator().entry("AAPL", 0, 10, 100.0, NARROW, CALM, DECIDED)


def test_exiting_a_long_sells_all_its_shares():
    order = generator().exit(position(30), Intent.STOP, 95.0, NARROW, CALM, DECIDED, reason="stop")
    assert (order.side, order.qty, order.order_type) == (Side.SELL, 30, OrderType.MARKET)
    assert (order.intent, order.signal, order.reason) == (Intent.STOP, "breakout", "stop")
    assert order.expires_at is None


def test_exiting_a_short_buys_back_all_its_shares():
    order = generator().exit(position(-30), Intent.TIME, 95.0, NARROW, CALM, DECIDED)
    assert (order.side, order.qty, order.order_type) == (Side.BUY, 30, OrderType.MARKET)


def test_a_target_exit_is_a_limit_at_the_target_to_the_cent():
    order = generator().exit(position(30, target=105.125), Intent.TARGET, 105.0, 9.0, 60.0, DECIDED)
    assert (order.side, order.order_type, order.limit_price) == (Side.SELL, OrderType.LIMIT, 105.13)
    assert order.expires_at == DECIDED + timedelta(minutes=6)


def test_a_target_exit_without_a_target_is_an_error():
    with pytest.raises(ValueError, match="target"):
        generator().exit(position(30), Intent.TARGET, 105.0, NARROW, CALM, DECIDED)


def test_an_exit_cannot_have_the_entry_intent():
    with pytest.raises(ValueError, match="exit intent"):
        generator().exit(position(30), Intent.ENTRY, 105.0, NARROW, CALM, DECIDED)


def test_exiting_a_flat_position_is_an_error():
    with pytest.raises(ValueError, match="qty"):
        generator().exit(position(0), Intent.STOP, 105.0, NARROW, CALM, DECIDED)


def test_prices_round_to_the_cent_with_halves_away_from_zero():
    assert [to_cent(10.005), to_cent(-10.005), to_cent(2.675), to_cent(2.674)] == [
        10.01,
        -10.01,
        2.68,
        2.67,
    ]
