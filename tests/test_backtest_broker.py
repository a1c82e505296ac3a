"""The simulated broker's fill model: next-bar fills, slippage, fees, limits, participation, expiry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from live.backtest.broker import SimulatedBroker
from live.backtest.panel import MinutePanel, minute_panel
from live.backtest.simulator import run_backtest
from live.engine.settings import ExecutionCosts
from live.engine.signal_strategy import SignalStrategy
from live.engine.types import Intent, Order, OrderType, Side

DAY = date(2025, 3, 3)
OPEN = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)  # 09:30 New York
NO_SLIPPAGE = ExecutionCosts(half_spread=False, impact_bps=0.0)  # regulatory fees only

Bar = tuple[float, float, float, float, float]  # open, high, low, close (dollars), volume (shares)


def minutes(n: int, start: datetime = OPEN) -> list[datetime]:
    return [start + timedelta(minutes=k) for k in range(n)]


def panel(
    bars: dict[str, list[Bar | None]], spread_bps: float | None = None, day: date = DAY
) -> MinutePanel:
    """One session of 1-minute bars per ticker (``None``: no bar that minute), closing after the
    last bar; ``spread_bps`` quoted on every bar when given."""
    n = max(len(rows) for rows in bars.values())
    start = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
    ts = minutes(n, start)
    records = [
        {
            "ticker": ticker,
            "ts": ts[k],
            "session": day,
            "open": bar[0],
            "high": bar[1],
            "low": bar[2],
            "close": bar[3],
            "volume": bar[4],
        }
        for ticker, rows in bars.items()
        for k, bar in enumerate(rows)
        if bar is not None
    ]
    frame = pl.DataFrame(records).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    spread = None
    if spread_bps is not None:
        spread = frame.select("ticker", "ts").with_columns(spread_bps=pl.lit(spread_bps))
    return minute_panel(frame, {day: ts[-1] + timedelta(minutes=1)}, spread)


def flat(price: float, volume: float = 10_000.0) -> Bar:
    return (price, price, price, price, volume)


def order(
    side: Side,
    qty: int,
    order_type: OrderType = OrderType.MARKET,
    limit: float | None = None,
    stop: float | None = None,
    expires_at: datetime | None = None,
    key: str = "ats-1",
    ticker: str = "AAPL",
) -> Order:
    return Order(
        client_order_id=key,
        ticker=ticker,
        side=side,
        qty=qty,
        order_type=order_type,
        intent=Intent.ENTRY,
        decided_at=OPEN,
        limit_price=limit,
        stop_price=stop,
        expires_at=expires_at,
    )


def run_bars(broker: SimulatedBroker, rows: range) -> list:
    return [f for i in rows for f in broker.process_bar(i)]


# -- market orders --------------------------------------------------------------------------


def test_a_market_order_never_fills_on_the_bar_that_decided_it():
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0), flat(51.0)]}))
    broker.submit(order(Side.BUY, 100), row=0)

    assert broker.process_bar(0) == []


def test_a_market_buy_fills_at_the_next_open_plus_half_spread_and_impact():
    # 4 bps spread -> 2 bps; impact 10 bps x sqrt(100 / 10,000) = 1 bp; 3 bps on a 50.00 open
    bars = panel({"AAPL": [flat(49.0), (50.0, 50.5, 49.5, 50.2, 10_000.0)]}, spread_bps=4.0)
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.BUY, 100), row=0)

    (fill,) = run_bars(broker, range(2))
    assert (fill.ts, fill.qty, fill.side) == (bars.ts[1], 100, Side.BUY)
    assert fill.price == pytest.approx(50.015, abs=1e-9)
    assert fill.reference_price == 50.0
    assert fill.fees == 0.0


def test_a_market_sell_fills_below_the_next_open_by_the_same_slippage():
    bars = panel({"AAPL": [flat(49.0), (50.0, 50.5, 49.5, 50.2, 10_000.0)]}, spread_bps=4.0)
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.SELL, 100), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.price == pytest.approx(49.985, abs=1e-9)


def test_a_bar_without_a_quote_pays_the_default_spread():
    # default 3 bps spread -> 1.5 bps, plus 1 bp of impact
    broker = SimulatedBroker(panel({"AAPL": [flat(49.0), flat(50.0)]}), ExecutionCosts())
    broker.submit(order(Side.BUY, 100), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.price == pytest.approx(50.0125, abs=1e-9)


def test_a_market_order_fills_in_full_whatever_the_bar_volume():
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0), flat(50.0, volume=100.0)]}), NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 5_000), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.qty == 5_000
    assert broker.working == {}


# -- fees -------------------------------------------------------------------------------------


def test_a_sell_pays_the_sec_fee_and_finra_taf_to_the_cent():
    # SEC 27.80e-6 x 50,000 = 1.39; TAF 0.000166 x 1,000 = 0.166; 1.556 -> 1.56
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0), flat(50.0)]}), NO_SLIPPAGE)
    broker.submit(order(Side.SELL, 1_000), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.fees == 1.56


def test_a_buy_pays_no_regulatory_fee():
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0), flat(50.0)]}), NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 1_000), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.fees == 0.0


def test_the_finra_taf_is_capped_per_fill():
    # SEC 27.80e-6 x 500,000 = 13.90; TAF 0.000166 x 100,000 = 16.60, capped at 8.30
    broker = SimulatedBroker(panel({"AAPL": [flat(5.0), flat(5.0, 1e6)]}), NO_SLIPPAGE)
    broker.submit(order(Side.SELL, 100_000), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.fees == 22.20


def test_sell_fees_are_charged_on_the_slipped_price():
    # sold at 49.985: SEC 27.80e-6 x 4,998.50 = 0.13896; TAF 0.0166; 0.15556 -> 0.16
    bars = panel({"AAPL": [flat(49.0), flat(50.0)]}, spread_bps=4.0)
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.SELL, 100), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.fees == 0.16


# -- idempotent submission --------------------------------------------------------------------


def test_a_retried_order_id_is_refused_and_fills_once():
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0)] * 4}), NO_SLIPPAGE)

    assert broker.submit(order(Side.BUY, 100), row=0) is True
    assert broker.submit(order(Side.BUY, 100), row=0) is False
    assert broker.submit(order(Side.BUY, 100), row=1) is False

    fills = run_bars(broker, range(4))
    assert [(f.client_order_id, f.qty) for f in fills] == [("ats-1", 100)]


def test_an_order_id_that_already_filled_is_refused_when_resubmitted():
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0)] * 4}), NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 100), row=0)
    run_bars(broker, range(2))

    assert broker.submit(order(Side.BUY, 100), row=2) is False
    assert run_bars(broker, range(2, 4)) == []


# -- limit orders -----------------------------------------------------------------------------


def test_a_limit_buy_above_the_open_fills_at_the_open_plus_slippage():
    bars = panel({"AAPL": [flat(49.0), (50.0, 50.5, 49.5, 50.2, 10_000.0)]}, spread_bps=4.0)
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.BUY, 100, OrderType.LIMIT, limit=50.10), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.price == pytest.approx(50.015, abs=1e-9)


def test_a_limit_buy_just_above_the_open_never_pays_more_than_its_limit():
    bars = panel({"AAPL": [flat(49.0), (50.0, 50.5, 49.5, 50.2, 10_000.0)]}, spread_bps=4.0)
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.BUY, 100, OrderType.LIMIT, limit=50.01), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.price == 50.01


def test_a_limit_buy_below_the_open_fills_at_the_limit_when_the_bar_trades_through_it():
    bars = panel({"AAPL": [flat(50.0), (50.0, 50.1, 49.85, 49.95, 10_000.0)]}, spread_bps=4.0)
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.BUY, 100, OrderType.LIMIT, limit=49.90), row=0)

    (fill,) = run_bars(broker, range(2))
    assert (fill.ts, fill.price) == (bars.ts[1], 49.90)


def test_a_limit_sell_below_the_open_fills_at_the_limit_when_the_bar_trades_through_it():
    bars = panel({"AAPL": [flat(50.0), (50.0, 50.15, 49.9, 50.05, 10_000.0)]})
    broker = SimulatedBroker(bars, ExecutionCosts())
    broker.submit(order(Side.SELL, 100, OrderType.LIMIT, limit=50.10), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.price == 50.10


def test_a_limit_the_bar_only_touches_does_not_fill_and_keeps_working():
    bars = panel({"AAPL": [flat(50.0), (50.0, 50.1, 49.90, 49.95, 10_000.0)]})
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 100, OrderType.LIMIT, limit=49.90), row=0)

    assert run_bars(broker, range(2)) == []
    assert list(broker.working) == ["ats-1"]


def test_a_limit_order_takes_at_most_the_participation_rate_of_each_bar():
    # 10% of 3,000-share bars: 300 shares a bar until the 1,000 are done
    bars = panel({"AAPL": [flat(50.0, 3_000.0)] * 6})
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 1_000, OrderType.LIMIT, limit=50.0), row=0)

    fills = run_bars(broker, range(6))
    assert [(f.ts, f.qty) for f in fills] == [
        (bars.ts[1], 300),
        (bars.ts[2], 300),
        (bars.ts[3], 300),
        (bars.ts[4], 100),
    ]
    assert broker.working == {}


def test_a_limit_order_cannot_fill_in_a_bar_too_thin_for_one_share():
    # 10% of 9 shares floors to 0
    bars = panel({"AAPL": [flat(50.0), flat(50.0, 9.0), flat(50.0, 3_000.0)]})
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 100, OrderType.LIMIT, limit=50.0), row=0)

    fills = run_bars(broker, range(3))
    assert [(f.ts, f.qty) for f in fills] == [(bars.ts[2], 100)]


def test_an_expired_limit_is_cancelled_with_its_unfilled_rest_recorded():
    bars = panel({"AAPL": [flat(50.0, 3_000.0)] * 6})
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    limit = order(Side.BUY, 1_000, OrderType.LIMIT, limit=50.0, expires_at=bars.ts[3])
    broker.submit(limit, row=0)

    fills = run_bars(broker, range(6))
    assert [(f.ts, f.qty) for f in fills] == [(bars.ts[1], 300), (bars.ts[2], 300)]
    assert broker.cancelled == [(limit, 400, "expired")]
    assert broker.working == {}


# -- stop-limit orders ------------------------------------------------------------------------


def test_a_stop_limit_buy_waits_until_a_bar_trades_at_its_stop():
    bars = panel(
        {
            "AAPL": [
                flat(10.00),
                (10.00, 10.15, 9.95, 10.10, 10_000.0),  # below the 10.20 stop
                (10.10, 10.25, 10.05, 10.22, 10_000.0),  # trades through it
            ]
        }
    )
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 100, OrderType.STOP_LIMIT, limit=10.30, stop=10.20), row=0)

    assert broker.process_bar(1) == []
    (fill,) = broker.process_bar(2)
    # triggered inside the bar: it fills at the stop, not at the earlier open
    assert (fill.ts, fill.price) == (bars.ts[2], pytest.approx(10.20, abs=1e-12))


def test_a_stop_limit_sell_triggers_when_the_bar_trades_at_or_below_its_stop():
    bars = panel({"AAPL": [flat(10.00), (10.00, 10.05, 9.80, 9.85, 10_000.0)]})
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.SELL, 100, OrderType.STOP_LIMIT, limit=9.80, stop=9.90), row=0)

    (fill,) = run_bars(broker, range(2))
    assert fill.price == pytest.approx(9.90, abs=1e-12)


def test_a_stop_limit_that_gaps_past_its_limit_fills_only_if_the_bar_trades_back_through_it():
    bars = panel(
        {
            "AAPL": [
                flat(10.00),
                (10.40, 10.50, 10.35, 10.45, 10_000.0),  # triggered, never back to 10.30
                (10.35, 10.40, 10.25, 10.30, 10_000.0),  # trades through the 10.30 limit
            ]
        }
    )
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 100, OrderType.STOP_LIMIT, limit=10.30, stop=10.20), row=0)

    assert broker.process_bar(1) == []
    (fill,) = broker.process_bar(2)
    assert fill.price == 10.30


# -- missing bars and the session end ---------------------------------------------------------


def test_an_order_for_a_ticker_without_a_bar_fills_at_its_next_bar():
    bars = panel(
        {
            "AAPL": [flat(50.0), None, flat(52.0)],
            "MSFT": [flat(400.0), flat(401.0), flat(402.0)],
        }
    )
    assert np.isnan(bars.open[1, bars.column()["AAPL"]])
    broker = SimulatedBroker(bars, NO_SLIPPAGE)
    broker.submit(order(Side.BUY, 100), row=0)

    assert broker.process_bar(1) == []
    (fill,) = broker.process_bar(2)
    assert (fill.ts, fill.price) == (bars.ts[2], 52.0)


def test_an_order_for_a_ticker_not_in_the_panel_is_refused():
    broker = SimulatedBroker(panel({"AAPL": [flat(50.0)]}))

    with pytest.raises(ValueError, match="TSLA is not in the panel"):
        broker.submit(order(Side.BUY, 100, ticker="TSLA"), row=0)


def two_sessions(last_minute_of_first: bool) -> tuple[MinutePanel, np.ndarray]:
    """Two 3-bar sessions of one ticker and a buy signal on the first session's last bar."""
    days = (date(2025, 3, 3), date(2025, 3, 4))
    frames, closes = [], {}
    for day, price in zip(days, (50.0, 55.0), strict=True):
        start = datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)
        ts = minutes(3, start)
        closes[day] = ts[-1] + timedelta(minutes=1)
        frames.append(
            pl.DataFrame(
                {
                    "ticker": "AAPL",
                    "ts": ts,
                    "session": day,
                    "open": price,
                    "high": price,
                    "low": price,
                    "close": price,
                    "volume": 10_000.0,
                }
            )
        )
    bars = minute_panel(
        pl.concat(frames).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))), closes
    )
    entries = np.zeros(bars.shape, dtype=bool)
    entries[2 if last_minute_of_first else 1, 0] = True
    return bars, entries


def test_an_order_decided_on_the_sessions_last_bar_is_cancelled_at_the_session_end():
    bars, entries = two_sessions(last_minute_of_first=True)
    strategy = SignalStrategy(bars.tickers, bars.ts, entries, np.zeros_like(entries), size=10)

    result = run_backtest(bars, strategy, costs=NO_SLIPPAGE)

    assert result.orders.height == 1
    assert result.fills.is_empty()
    assert result.cancelled.select("ticker", "decided_at", "unfilled", "why").rows() == [
        ("AAPL", bars.ts[2], 10, "session end")
    ]


def test_an_order_decided_before_the_sessions_last_bar_fills_on_it():
    bars, entries = two_sessions(last_minute_of_first=False)
    strategy = SignalStrategy(bars.tickers, bars.ts, entries, np.zeros_like(entries), size=10)

    result = run_backtest(bars, strategy, costs=NO_SLIPPAGE)

    assert result.fills.select("ts", "qty", "price").rows() == [(bars.ts[2], 10, 50.0)]
    assert result.cancelled.is_empty()
