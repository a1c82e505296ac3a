"""Portfolio accounting: round trips net of fees, partial fills, flips and cash (dollars, shares)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from live.engine.portfolio import Portfolio
from live.engine.types import Fill, Intent, Side

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def fill(
    side: Side,
    qty: int,
    price: float,
    at: int,
    fees: float = 0.0,
    intent: Intent = Intent.ENTRY,
    ticker: str = "AAPL",
) -> Fill:
    return Fill(
        client_order_id=f"ats-{ticker}-{at}-{intent}",
        ticker=ticker,
        side=side,
        qty=qty,
        price=price,
        fees=fees,
        ts=minute(at),
        intent=intent,
        signal="long 1m" if side is Side.BUY else "short 1m",
    )


def test_a_long_round_trip_earns_the_price_gain_less_both_fills_fees():
    book = Portfolio(cash=100_000.0)
    assert book.apply(fill(Side.BUY, 100, 10.00, at=0, fees=0.50)) is None
    trip = book.apply(fill(Side.SELL, 100, 10.50, at=5, fees=0.65, intent=Intent.TARGET))

    assert trip is not None
    assert (trip.direction, trip.qty, trip.entry_price, trip.exit_price) == (1, 100, 10.00, 10.50)
    assert trip.gross_pnl == pytest.approx(50.00, abs=1e-9)
    assert trip.fees == pytest.approx(1.15, abs=1e-9)
    assert trip.pnl == pytest.approx(48.85, abs=1e-9)
    assert (trip.entry_ts, trip.exit_ts, trip.exit_intent) == (minute(0), minute(5), "target")
    assert book.positions == {}


def test_a_short_round_trip_earns_the_price_fall_less_both_fills_fees():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.SELL, 50, 20.00, at=0, fees=0.03))
    trip = book.apply(fill(Side.BUY, 50, 19.00, at=3, fees=0.25, intent=Intent.STOP))

    assert trip is not None
    assert (trip.direction, trip.qty, trip.entry_price, trip.exit_price) == (-1, 50, 20.00, 19.00)
    assert trip.gross_pnl == pytest.approx(50.00, abs=1e-9)
    assert trip.pnl == pytest.approx(49.72, abs=1e-9)
    assert trip.exit_intent == "stop"


def test_a_losing_short_has_negative_gross_pnl():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.SELL, 10, 20.00, at=0))
    trip = book.apply(fill(Side.BUY, 10, 21.00, at=1, intent=Intent.STOP))

    assert trip is not None
    assert trip.gross_pnl == pytest.approx(-10.00, abs=1e-9)


def test_partial_entry_fills_average_the_entry_price_by_shares():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0, fees=0.10))
    book.apply(fill(Side.BUY, 300, 11.00, at=1, fees=0.20))

    position = book.positions["AAPL"]
    assert position.qty == 400
    assert position.avg_price == pytest.approx(10.75, abs=1e-12)
    assert position.opened_at == minute(0)
    assert position.entry_fees == pytest.approx(0.30, abs=1e-12)


def test_a_position_built_from_partial_fills_closes_as_one_round_trip_at_the_average_price():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0))
    book.apply(fill(Side.BUY, 300, 11.00, at=1))
    trip = book.apply(fill(Side.SELL, 400, 12.00, at=2, intent=Intent.CLOSE))

    assert trip is not None
    assert (trip.qty, trip.entry_price) == (400, pytest.approx(10.75, abs=1e-12))
    assert trip.gross_pnl == pytest.approx(500.00, abs=1e-9)
    assert len(book.round_trips) == 1


def test_partial_exit_fills_complete_one_round_trip_only_when_the_position_is_flat():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.BUY, 300, 10.00, at=0, fees=0.30))
    first = book.apply(fill(Side.SELL, 100, 11.00, at=1, fees=0.10, intent=Intent.TARGET))

    assert first is None
    assert book.positions["AAPL"].qty == 200
    assert book.round_trips == []

    trip = book.apply(fill(Side.SELL, 200, 12.00, at=2, fees=0.20, intent=Intent.TIME))
    assert trip is not None
    assert book.round_trips == [trip]
    assert trip.qty == 300
    # 100 at 11 and 200 at 12: the exit price is their share-weighted mean
    assert trip.exit_price == pytest.approx(3_500.00 / 300, abs=1e-12)
    assert trip.gross_pnl == pytest.approx(500.00, abs=1e-9)
    assert trip.fees == pytest.approx(0.60, abs=1e-12)
    assert (trip.exit_ts, trip.exit_intent) == (minute(2), "time")


def test_a_fill_through_zero_splits_into_a_closed_trip_and_a_new_opposite_position():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0, fees=0.40))
    trip = book.apply(fill(Side.SELL, 150, 12.00, at=4, fees=0.30, intent=Intent.SIGNAL_EXIT))

    assert trip is not None
    assert (trip.direction, trip.qty, trip.exit_price) == (1, 100, 12.00)
    assert trip.gross_pnl == pytest.approx(200.00, abs=1e-9)
    # the flipping fill's fees are shared by shares: 100 of 150 close, 50 of 150 open
    assert trip.fees == pytest.approx(0.40 + 0.20, abs=1e-12)

    short = book.positions["AAPL"]
    assert (short.qty, short.avg_price, short.opened_at) == (-50, 12.00, minute(4))
    assert short.entry_fees == pytest.approx(0.10, abs=1e-12)


def test_the_position_opened_by_a_flip_closes_as_its_own_round_trip():
    book = Portfolio(cash=100_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0))
    book.apply(fill(Side.SELL, 150, 12.00, at=4, fees=0.30, intent=Intent.SIGNAL_EXIT))
    trip = book.apply(fill(Side.BUY, 50, 11.00, at=6, fees=0.00, intent=Intent.STOP))

    assert trip is not None
    assert (trip.direction, trip.qty, trip.entry_price, trip.exit_price) == (-1, 50, 12.00, 11.00)
    assert trip.entry_ts == minute(4)
    assert trip.gross_pnl == pytest.approx(50.00, abs=1e-9)
    assert trip.fees == pytest.approx(0.10, abs=1e-12)
    assert len(book.round_trips) == 2
    assert book.positions == {}


def test_cash_moves_by_the_fill_notional_and_fees():
    book = Portfolio(cash=10_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0, fees=1.00))
    assert book.cash == pytest.approx(8_999.00, abs=1e-9)

    book.apply(fill(Side.SELL, 50, 20.00, at=1, fees=0.50, ticker="MSFT"))
    assert book.cash == pytest.approx(9_998.50, abs=1e-9)
    assert book.fees_paid == pytest.approx(1.50, abs=1e-12)


def test_equity_is_cash_plus_signed_shares_at_the_marks():
    book = Portfolio(cash=10_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0, fees=1.00))
    book.apply(fill(Side.SELL, 50, 20.00, at=1, fees=0.50, ticker="MSFT"))

    # cash 9,998.50 + 100 x 11.00 long - 50 x 19.00 short
    assert book.equity({"AAPL": 11.00, "MSFT": 19.00}) == pytest.approx(10_148.50, abs=1e-9)
    assert book.market_value({"AAPL": 11.00, "MSFT": 19.00}) == (
        pytest.approx(150.00, abs=1e-9),
        pytest.approx(2_050.00, abs=1e-9),
    )


def test_equity_after_a_closed_round_trip_is_the_starting_cash_plus_its_net_pnl():
    book = Portfolio(cash=10_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0, fees=0.50))
    trip = book.apply(fill(Side.SELL, 100, 10.50, at=1, fees=0.65, intent=Intent.CLOSE))

    assert trip is not None
    assert book.equity({}) == pytest.approx(10_000.00 + trip.pnl, abs=1e-9)
    assert book.equity({}) == pytest.approx(10_048.85, abs=1e-9)


def test_a_position_without_a_mark_is_valued_at_its_average_price():
    book = Portfolio(cash=10_000.0)
    book.apply(fill(Side.BUY, 100, 10.00, at=0))

    assert book.equity({}) == pytest.approx(10_000.00, abs=1e-9)
    assert book.equity({"AAPL": float("nan")}) == pytest.approx(10_000.00, abs=1e-9)
