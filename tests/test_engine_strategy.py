"""The strategy engine driven by the backtest loop over tiny hand-built sessions.

Bars are quiet unless a test says otherwise: open = close = $100.00, high and low 12.5 cents
either side, so the 1-minute ATR is $0.25 (25 bps: entries are market orders), the initial stop
sits 2 ATRs ($0.50) from the entry and the target 4 ATRs ($1.00). Fills carry no costs, so every
price is a bar's open or a limit. A 10-bar session opens at 14:30 UTC and closes at 14:40; with
``entry_cutoff_minutes=2`` entries are decided on rows 0 to 6, and the flat-at-close exit on row 8
(one minute from the close) fills at the open of the last bar, row 9.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from live.backtest.panel import MinutePanel, minute_panel, signal_panel
from live.backtest.simulator import BacktestResult, run_backtest
from live.engine.settings import ExecutionCosts, StrategySettings
from live.engine.strategy import SignalPanel, StrategyEngine

DAY = date(2025, 3, 3)
FREE = ExecutionCosts.fixed()
SETTINGS = StrategySettings(atr_bars=2, entry_cutoff_minutes=2)

Bar = tuple[float, float, float, float]  # open, high, low, close (dollars)


def quiet(price: float = 100.0) -> Bar:
    return (price, price + 0.125, price - 0.125, price)


def session_open(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)


def panel(*sessions: tuple[date, dict[str, list[Bar]]]) -> MinutePanel:
    """Sessions of 1-minute bars from 14:30 UTC, each closing one minute after its last bar."""
    records, closes = [], {}
    for day, bars in sessions:
        start = session_open(day)
        n = max(len(rows) for rows in bars.values())
        closes[day] = start + timedelta(minutes=n)
        for ticker, rows in bars.items():
            for k, (o, h, low, c) in enumerate(rows):
                records.append(
                    {
                        "ticker": ticker,
                        "ts": start + timedelta(minutes=k),
                        "session": day,
                        "open": o,
                        "high": h,
                        "low": low,
                        "close": c,
                        "volume": 10_000.0,
                    }
                )
    frame = pl.DataFrame(records).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    return minute_panel(frame, closes)


def one_session(bars: dict[str, list[Bar]], day: date = DAY) -> MinutePanel:
    return panel((day, bars))


def signals(
    bars: MinutePanel, wanted: dict[tuple[int, str], float], cost_bps: float = 10.0
) -> SignalPanel:
    """Predictions made on the given (row, ticker) closes: expected bps, confidence 0.6."""
    predictions = pl.DataFrame(
        [
            {
                "ticker": ticker,
                "ts": bars.ts[row],
                "expected_bps": expected,
                "confidence": 0.6,
                "cost_bps": cost_bps,
            }
            for (row, ticker), expected in wanted.items()
        ],
        schema={
            "ticker": pl.Utf8,
            "ts": pl.Datetime("us", "UTC"),
            "expected_bps": pl.Float64,
            "confidence": pl.Float64,
            "cost_bps": pl.Float64,
        },
    )
    return signal_panel(bars, predictions)


def backtest(
    bars: MinutePanel,
    predictions: SignalPanel,
    settings: StrategySettings = SETTINGS,
    capital: float = 100_000.0,
    costs: ExecutionCosts = FREE,
) -> BacktestResult:
    engine = StrategyEngine(bars, predictions, settings)
    return run_backtest(bars, engine, initial_capital=capital, costs=costs)


def decisions(result: BacktestResult) -> list[tuple]:
    return result.orders.select("ticker", "intent", "side", "qty", "decided_at").rows()


# -- entries ----------------------------------------------------------------------------------


def test_an_entry_signal_on_a_close_fills_at_the_next_bars_open():
    bars = one_session({"AAA": [quiet()] * 3 + [quiet(100.25)] * 7})
    result = backtest(bars, signals(bars, {(2, "AAA"): 50.0}))

    entry = result.orders.row(0, named=True)
    assert (entry["intent"], entry["order_type"], entry["side"]) == ("entry", "market", "buy")
    assert entry["decided_at"] == bars.ts[2]
    first_fill = result.fills.row(0, named=True)
    assert (first_fill["ts"], first_fill["price"]) == (bars.ts[3], 100.25)


def test_an_entry_is_capped_at_the_max_position_dollars():
    # 2% of $100,000 over a $0.50 stop would be 4,000 shares; $2,500 at $100 is 25
    bars = one_session({"AAA": [quiet()] * 10})
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}))

    entry = result.orders.row(0, named=True)
    assert entry["qty"] == 25
    assert entry["reason"].endswith("size by max_position")


def test_an_entry_risks_two_percent_of_equity_to_its_stop():
    # a 40-ATR stop is $10.00 away: 2% of $10,000 is $200, 20 shares (under the $2,500 cap)
    bars = one_session({"AAA": [quiet()] * 10})
    wide_stop = replace(SETTINGS, stop_atr_multiple=40.0)
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}), wide_stop, capital=10_000.0)

    entry = result.orders.row(0, named=True)
    assert entry["qty"] == 20
    assert entry["reason"].endswith("size by risk")


def test_a_negative_expected_return_enters_short():
    bars = one_session({"AAA": [quiet()] * 10})
    result = backtest(bars, signals(bars, {(1, "AAA"): -50.0}))

    assert decisions(result)[0] == ("AAA", "entry", "sell", 25, bars.ts[1])


def test_no_entry_is_decided_within_the_cutoff_minutes_of_the_close():
    # row 6 closes 3 minutes before the close, row 7 two: the cutoff is 2 minutes
    bars = one_session({"AAA": [quiet()] * 10, "BBB": [quiet()] * 10})
    result = backtest(bars, signals(bars, {(6, "AAA"): 50.0, (7, "BBB"): 50.0}))

    entries = result.orders.filter(pl.col("intent") == "entry")
    assert entries.select("ticker", "decided_at").rows() == [("AAA", bars.ts[6])]


def test_entries_beyond_max_open_positions_are_rejected_with_the_reason():
    bars = one_session({t: [quiet()] * 10 for t in ("AAA", "BBB", "CCC")})
    predictions = signals(bars, {(1, "AAA"): 50.0, (1, "BBB"): 40.0, (1, "CCC"): 30.0})
    result = backtest(bars, predictions, replace(SETTINGS, max_open_positions=2))

    entries = result.orders.filter(pl.col("intent") == "entry")
    assert entries["ticker"].to_list() == ["AAA", "BBB"]
    assert result.rejections.rows() == [(bars.ts[1], "CCC", "max open positions: 2 of 2")]


# -- exits ------------------------------------------------------------------------------------


def test_a_bar_through_the_stop_exits_on_its_close_with_a_market_order():
    # filled at 100.00 on row 2; the peak 100.125 trails the stop up to 99.625
    falling = (99.75, 99.875, 99.50, 99.50)
    bars = one_session({"AAA": [quiet()] * 4 + [falling] + [quiet(99.50)] * 5})
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}))

    stop = result.orders.filter(pl.col("intent") == "stop").row(0, named=True)
    assert (stop["decided_at"], stop["order_type"], stop["side"], stop["qty"]) == (
        bars.ts[4],
        "market",
        "sell",
        25,
    )
    trade = result.trades.row(0, named=True)
    assert (trade["exit_intent"], trade["exit_ts"], trade["exit_price"]) == (
        "stop",
        bars.ts[5],
        99.50,
    )
    assert trade["gross_pnl"] == -12.50


def test_a_bar_above_the_stop_does_not_exit():
    dipping = (99.875, 99.875, 99.75, 99.875)  # low 99.75 stays above the 99.625 stop
    bars = one_session({"AAA": [quiet()] * 4 + [dipping] + [quiet(99.875)] * 5})
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}))

    assert result.orders["intent"].to_list() == ["entry", "close"]


def test_a_bar_reaching_the_target_exits_with_a_limit_at_the_target():
    # filled at 100.00 on row 2: target 101.00; the bar's low stays above the trailed stop
    reaching = (100.75, 101.125, 100.75, 101.0)
    through = (100.875, 101.25, 100.875, 101.125)
    bars = one_session({"AAA": [quiet()] * 4 + [reaching, through] + [quiet(101.125)] * 4})
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}))

    target = result.orders.filter(pl.col("intent") == "target").row(0, named=True)
    assert (target["decided_at"], target["order_type"], target["limit_price"]) == (
        bars.ts[4],
        "limit",
        101.0,
    )
    trade = result.trades.row(0, named=True)
    assert (trade["exit_intent"], trade["exit_ts"], trade["exit_price"]) == (
        "target",
        bars.ts[5],
        101.0,
    )
    assert trade["gross_pnl"] == 25.0


def test_a_position_is_closed_after_its_holding_minutes():
    bars = one_session({"AAA": [quiet()] * 10})
    result = backtest(
        bars, signals(bars, {(1, "AAA"): 50.0}), replace(SETTINGS, max_holding_minutes=3)
    )

    assert decisions(result) == [
        ("AAA", "entry", "buy", 25, bars.ts[1]),
        ("AAA", "time", "sell", 25, bars.ts[4]),
    ]
    trade = result.trades.row(0, named=True)
    assert (trade["entry_ts"], trade["exit_ts"], trade["bars_held"]) == (
        bars.ts[2],
        bars.ts[5],
        3,
    )


def test_a_position_is_flat_before_the_session_close():
    bars = one_session({"AAA": [quiet()] * 10})
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}))

    # decided 2 minutes before the close, so the market exit has two bars to fill in
    assert decisions(result)[-1] == ("AAA", "close", "sell", 25, bars.ts[7])
    trade = result.trades.row(0, named=True)
    assert (trade["exit_intent"], trade["exit_ts"]) == ("close", bars.ts[8])
    assert result.equity["positions"].to_list()[-1] == 0


def test_a_position_is_flat_before_an_early_close():
    # the second session has 5 bars and closes at 14:35: entry on its row 1 (3 minutes from the
    # close), close decision on its row 2 (2 minutes), filled at its row 3's open (14:33)
    early = date(2025, 3, 4)
    bars = panel((DAY, {"AAA": [quiet()] * 10}), (early, {"AAA": [quiet()] * 5}))
    result = backtest(bars, signals(bars, {(11, "AAA"): 50.0}))

    assert decisions(result) == [
        ("AAA", "entry", "buy", 25, bars.ts[11]),
        ("AAA", "close", "sell", 25, bars.ts[12]),
    ]
    trade = result.trades.row(0, named=True)
    assert (trade["exit_intent"], trade["exit_ts"]) == ("close", bars.ts[13])
    assert bars.ts[13] == datetime(2025, 3, 4, 14, 33, tzinfo=UTC)
    assert result.equity["positions"].to_list()[-1] == 0


def test_each_session_counts_its_minutes_to_its_own_close():
    early = date(2025, 3, 4)
    bars = panel((DAY, {"AAA": [quiet()] * 10}), (early, {"AAA": [quiet()] * 5}))

    assert bars.minutes_to_close.tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 4, 3, 2, 1, 0]
    assert np.flatnonzero(bars.session_end).tolist() == [9, 14]


def test_no_position_is_held_at_any_sessions_end():
    early = date(2025, 3, 4)
    bars = panel((DAY, {"AAA": [quiet()] * 10}), (early, {"AAA": [quiet()] * 5}))
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0, (11, "AAA"): 50.0}))

    held_at_end = result.equity.filter(pl.Series(bars.session_end))["positions"].to_list()
    assert held_at_end == [0, 0]
    assert result.trades["exit_intent"].to_list() == ["close", "close"]


def test_a_position_with_a_resting_target_order_is_still_flat_at_the_close():
    # filled at 100.00 on row 2 (target 101.00); row 6 reaches the target, then the price falls
    # back so the target limit rests unfilled on row 7, when the close decision replaces it
    reaching = (100.75, 101.125, 100.75, 101.0)
    bars = one_session({"AAA": [quiet()] * 6 + [reaching] + [quiet(100.875)] * 3})
    result = backtest(bars, signals(bars, {(1, "AAA"): 50.0}))

    assert decisions(result)[1:] == [
        ("AAA", "target", "sell", 25, bars.ts[6]),
        ("AAA", "close", "sell", 25, bars.ts[7]),
    ]
    cancelled = result.cancelled.row(0, named=True)
    assert (cancelled["intent"], cancelled["why"]) == ("target", "replaced by a close exit")
    assert result.trades["exit_intent"].to_list() == ["close"]
    assert result.equity["positions"].to_list()[-1] == 0


# -- kill switch ------------------------------------------------------------------------------


def test_the_kill_switch_flattens_every_position_and_blocks_new_entries():
    # limit $100 (0.1% of $100,000); AAA closes row 4 at 95.00: 25 shares lose $125
    crash = (96.0, 96.125, 94.875, 95.0)
    bars = one_session(
        {
            "AAA": [quiet()] * 4 + [crash] + [quiet(95.0)] * 5,
            "BBB": [quiet()] * 10,
            "CCC": [quiet()] * 10,
        }
    )
    predictions = signals(bars, {(1, "AAA"): 50.0, (1, "BBB"): 40.0, (5, "CCC"): 50.0})
    result = backtest(bars, predictions, replace(SETTINGS, daily_loss_limit=0.001))

    assert decisions(result) == [
        ("AAA", "entry", "buy", 25, bars.ts[1]),
        ("BBB", "entry", "buy", 25, bars.ts[1]),
        ("AAA", "kill", "sell", 25, bars.ts[4]),
        ("BBB", "kill", "sell", 25, bars.ts[4]),
    ]
    kills = result.orders.filter(pl.col("intent") == "kill")
    assert all(reason.startswith("daily loss limit") for reason in kills["reason"])
    assert result.trades.select("ticker", "exit_intent", "exit_price").rows() == [
        ("AAA", "kill", 95.0),
        ("BBB", "kill", 100.0),
    ]


def test_the_kill_switch_flattens_a_position_whose_target_limit_is_resting():
    # BBB reaches its 101.00 target on row 3 and falls back, so its target limit rests; AAA then
    # closes row 4 at 95.00: -$125 + $18.75 breaches the $100 limit
    reaching = (100.75, 101.125, 100.75, 101.0)
    crash = (96.0, 96.125, 94.875, 95.0)
    bars = one_session(
        {
            "AAA": [quiet()] * 4 + [crash] + [quiet(95.0)] * 5,
            "BBB": [quiet()] * 3 + [reaching] + [quiet(100.75)] * 6,
        }
    )
    predictions = signals(bars, {(1, "AAA"): 50.0, (1, "BBB"): 40.0})
    result = backtest(bars, predictions, replace(SETTINGS, daily_loss_limit=0.001))

    kills = result.orders.filter(pl.col("intent") == "kill")
    assert kills.select("ticker", "decided_at").rows() == [
        ("AAA", bars.ts[4]),
        ("BBB", bars.ts[4]),
    ]


def test_a_loss_within_the_daily_limit_leaves_trading_on():
    crash = (96.0, 96.125, 94.875, 95.0)
    bars = one_session({"AAA": [quiet()] * 4 + [crash] + [quiet(95.0)] * 5, "CCC": [quiet()] * 10})
    predictions = signals(bars, {(1, "AAA"): 50.0, (5, "CCC"): 50.0})
    result = backtest(bars, predictions, replace(SETTINGS, daily_loss_limit=0.002))

    assert ("CCC", "entry", "buy", 25, bars.ts[5]) in decisions(result)
    assert "kill" not in result.orders["intent"].to_list()


# -- causality and determinism ----------------------------------------------------------------


def random_market(seed: int, sessions: int = 2, n: int = 10) -> tuple[MinutePanel, SignalPanel]:
    """Three tickers of random-walk bars with quoted spreads, and dense random predictions."""
    rng = np.random.default_rng(seed)
    days = [date(2025, 3, 3) + timedelta(days=k) for k in range(sessions)]
    records, closes = [], {}
    for day in days:
        start = session_open(day)
        closes[day] = start + timedelta(minutes=n)
        for ticker, level in (("AAA", 50.0), ("BBB", 100.0), ("CCC", 20.0)):
            close = level * np.cumprod(1 + rng.normal(0, 0.003, n))
            open_ = np.r_[level, close[:-1]]
            high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
            low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
            for k in range(n):
                records.append(
                    {
                        "ticker": ticker,
                        "ts": start + timedelta(minutes=k),
                        "session": day,
                        "open": open_[k],
                        "high": high[k],
                        "low": low[k],
                        "close": close[k],
                        "volume": float(rng.integers(500, 5_000)),
                        "spread_bps": float(rng.uniform(1.0, 12.0)),
                    }
                )
    frame = pl.DataFrame(records).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    bars = minute_panel(
        frame.drop("spread_bps"), closes, frame.select("ticker", "ts", "spread_bps")
    )
    predictions = SignalPanel(
        expected_bps=rng.normal(0.0, 30.0, bars.shape),
        confidence=rng.uniform(0.3, 0.9, bars.shape),
        cost_bps=np.full(bars.shape, 8.0),
    )
    return bars, predictions


BUSY = replace(SETTINGS, max_holding_minutes=3, max_open_positions=2)


def run_engine(bars: MinutePanel, predictions: SignalPanel) -> BacktestResult:
    engine = StrategyEngine(bars, predictions, BUSY)
    return run_backtest(bars, engine, costs=ExecutionCosts())


@pytest.mark.parametrize("t", [3, 9, 12])
def test_orders_decided_up_to_a_bar_do_not_depend_on_any_later_bar(t):
    bars, predictions = random_market(seed=7)
    other_bars, other_predictions = random_market(seed=8)
    future = copy.deepcopy(bars)
    for name in ("open", "high", "low", "close", "volume", "spread_bps"):
        getattr(future, name)[t + 1 :] = getattr(other_bars, name)[t + 1 :]
    future_predictions = copy.deepcopy(predictions)
    for name in ("expected_bps", "confidence", "cost_bps"):
        getattr(future_predictions, name)[t + 1 :] = getattr(other_predictions, name)[t + 1 :]

    original = run_engine(bars, predictions)
    altered = run_engine(future, future_predictions)

    decided_by_t = pl.col("decided_at") <= bars.ts[t]
    assert original.orders.filter(decided_by_t).height > 0
    assert_frame_equal(altered.orders.filter(decided_by_t), original.orders.filter(decided_by_t))
    rejected_by_t = pl.col("ts") <= bars.ts[t]
    assert_frame_equal(
        altered.rejections.filter(rejected_by_t), original.rejections.filter(rejected_by_t)
    )
    # the altered future did change later decisions, so the comparison above has teeth
    assert not original.orders.equals(altered.orders)


def test_the_same_inputs_give_the_same_orders_ids_and_fills():
    bars, predictions = random_market(seed=7)
    first = run_engine(bars, predictions)
    second = run_engine(*random_market(seed=7))

    assert first.orders.height > 0
    assert_frame_equal(first.orders, second.orders)
    assert_frame_equal(first.fills, second.fills)
    assert_frame_equal(first.trades, second.trades)
    assert first.orders["client_order_id"].n_unique() == first.orders.height
