"""The backtest agrees with an independent backtester (backtesting.py), and its fast path with it.

Reference comparison: 4 simulated tickers over 3 sessions of 1-minute bars, long-only entries and
exits (an SMA(10)/SMA(30) crossover, or random), 10 shares, $1.00 commission per order, no
slippage or regulatory fees. backtesting.py runs one ticker at a time with market orders filling
at the next bar's open (``trade_on_close=False``), the commission as a callable (charged on entry
and on exit; its ``Trade.pl`` is net of both), cash large enough that no order is refused.

Sessions: backtesting.py knows none, while our orders are DAY orders, so an order decided on a
session's last bar is cancelled here but filled at the next session's open there. The signals are
therefore never given on a session's last bar (nor on the first bar, which backtesting.py never
shows its strategy); positions held overnight are held by both. Every position is closed on the
last bar, so both end flat and the P&L is all realized.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from benchmarks.backtesting_py import run_reference, ticker_frame
from live.backtest.panel import MinutePanel, minute_panel
from live.backtest.simulator import BacktestResult, run_backtest
from live.backtest.vectorized import fill_fees, next_fill_rows, run_signals
from live.engine.settings import ExecutionCosts
from live.engine.signal_strategy import SignalStrategy

SIZE = 10  # shares
COMMISSION = 1.0  # dollars per order
COSTS = ExecutionCosts.fixed(commission_per_order=COMMISSION)
FIRST_SESSION = date(2024, 1, 2)
SESSIONS = 3

# raised inside backtesting.py's statistics by pandas 3, not by our code
pytestmark = pytest.mark.filterwarnings("ignore:DatetimeIndex.dayofweek is deprecated")


@cache
def simulated_panel(n_tickers: int = 4, sessions: int = SESSIONS, spread: bool = False):
    calendar = nyse_calendar()
    days = calendar.sessions_between(FIRST_SESSION, FIRST_SESSION + timedelta(days=10))[:sessions]
    market = SimulatedMarket(SimulationConfig(n_tickers=n_tickers))
    bars = pl.concat([market.day(d).bars.with_columns(session=pl.lit(d)) for d in days])
    quotes = None
    if spread:  # a quoted spread on most bars; the rest fall back to the default
        rng = np.random.default_rng(11)
        values = rng.uniform(1.0, 12.0, bars.height)
        values[rng.random(bars.height) < 0.2] = np.nan
        quotes = bars.select("ticker", "ts").with_columns(
            spread_bps=pl.Series(values).fill_nan(None)
        )
    return minute_panel(bars, {d: calendar.session_close(d) for d in days}, quotes)


def sma_crossover(panel: MinutePanel, fast: int = 10, slow: int = 30):
    """Entries where SMA(fast) of the closes crosses above SMA(slow), exits where it crosses below."""

    def sma(n: int) -> np.ndarray:
        out = np.full(panel.shape, np.nan)
        out[n - 1 :] = np.lib.stride_tricks.sliding_window_view(panel.close, n, axis=0).mean(-1)
        return out

    above = sma(fast) > sma(slow)
    below = sma(fast) < sma(slow)
    entries = np.zeros(panel.shape, dtype=bool)
    exits = np.zeros(panel.shape, dtype=bool)
    entries[1:] = above[1:] & ~above[:-1] & ~np.isnan(sma(slow)[:-1])
    exits[1:] = below[1:] & ~below[:-1] & ~np.isnan(sma(slow)[:-1])
    return entries, exits


def random_signals(panel: MinutePanel, rate: float = 0.03, seed: int = 5):
    rng = np.random.default_rng(seed)
    return rng.random(panel.shape) < rate, rng.random(panel.shape) < rate


def reference_signals(panel: MinutePanel, kind: str):
    """Signals both backtesters read alike: none on a session's last bar or the first bar; all
    positions exit on the last bar's open."""
    entries, exits = sma_crossover(panel) if kind == "sma" else random_signals(panel)
    for signals in (entries, exits):
        signals[panel.session_end] = False
        signals[0] = False
    entries[-2:] = False
    exits[-2] = True
    return entries, exits


def run_engine(engine: str, panel, entries, exits, costs=COSTS) -> BacktestResult:
    if engine == "event_loop":
        strategy = SignalStrategy(panel.tickers, panel.ts, entries, exits, SIZE)
        return run_backtest(panel, strategy, costs=costs)
    return run_signals(panel, entries, exits, SIZE, costs=costs)


def backtesting_py(panel: MinutePanel, j: int, entries, exits) -> pd.Series:
    """backtesting.py's stats for ticker column ``j`` under the same signals."""
    return run_reference(ticker_frame(panel, j), entries[:, j], exits[:, j], SIZE, COMMISSION)


@cache
def reference(kind: str) -> dict[str, pd.Series]:
    panel = simulated_panel()
    entries, exits = reference_signals(panel, kind)
    return {t: backtesting_py(panel, j, entries, exits) for j, t in enumerate(panel.tickers)}


def trade_list(trades: pl.DataFrame, ticker: str) -> list[tuple]:
    rows = trades.filter(pl.col("ticker") == ticker).sort("entry_ts")
    return [
        (
            pd.Timestamp(r["entry_ts"]),
            pd.Timestamp(r["exit_ts"]),
            r["entry_price"],
            r["exit_price"],
            r["qty"],
        )
        for r in rows.iter_rows(named=True)
    ]


def reference_trade_list(stats: pd.Series) -> list[tuple]:
    trades = stats["_trades"].sort_values("EntryTime")
    return [
        (
            pd.Timestamp(r.EntryTime).tz_convert(UTC),
            pd.Timestamp(r.ExitTime).tz_convert(UTC),
            r.EntryPrice,
            r.ExitPrice,
            int(r.Size),
        )
        for r in trades.itertuples()
    ]


ENGINES = ("event_loop", "vectorized")
KINDS = ("sma", "random")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_trades_match_backtesting_py(engine: str, kind: str) -> None:
    panel = simulated_panel()
    result = run_engine(engine, panel, *reference_signals(panel, kind))
    for ticker, stats in reference(kind).items():
        ours, theirs = trade_list(result.trades, ticker), reference_trade_list(stats)
        assert len(theirs) >= 5, "the comparison needs trades"
        assert len(ours) == len(theirs), ticker
        for a, b in zip(ours, theirs, strict=True):
            assert a[:2] == b[:2] and a[4] == b[4], (ticker, a, b)
            assert a[2] == pytest.approx(b[2], abs=1e-9) and a[3] == pytest.approx(b[3], abs=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_pnl_after_commissions_matches_backtesting_py_to_the_cent(engine: str, kind: str) -> None:
    panel = simulated_panel()
    result = run_engine(engine, panel, *reference_signals(panel, kind))
    pnl = result.trades.group_by("ticker").agg(pl.col("pnl").sum()).rows()
    for ticker, ours in pnl:
        stats = reference(kind)[ticker]
        assert abs(ours - stats["_trades"]["PnL"].sum()) < 0.005, ticker
        assert abs(ours - (stats["Equity Final [$]"] - 1e9)) < 0.005, ticker
    total = sum(s["_trades"]["PnL"].sum() for s in reference(kind).values())
    assert abs(result.equity["equity"][-1] - result.initial_capital - total) < 0.005


def test_backtesting_py_charges_the_commission_on_entry_and_exit() -> None:
    stats = reference("sma")[simulated_panel().tickers[0]]
    assert (stats["_trades"]["Commission"] == 2 * COMMISSION).all()


# -- the fast path against the event loop, with every cost and missing bars ---------------------


@cache
def gappy_run() -> tuple[BacktestResult, BacktestResult]:
    """Both engines on default costs (spread, impact, SEC and FINRA fees), 30% of opens missing,
    and signals on every kind of bar (session ends included)."""
    panel = copy.deepcopy(simulated_panel(n_tickers=6, sessions=3, spread=True))
    rng = np.random.default_rng(17)
    panel.open[rng.random(panel.shape) < 0.3] = np.nan
    panel.open[-5:, 0] = np.nan  # the last orders of the first ticker can never fill
    entries, exits = random_signals(panel, rate=0.05, seed=23)
    strategy = SignalStrategy(panel.tickers, panel.ts, entries, exits, SIZE)
    loop = run_backtest(panel, strategy, costs=ExecutionCosts())
    return loop, run_signals(panel, entries, exits, SIZE, costs=ExecutionCosts())


def test_run_signals_fills_equal_the_event_loop_with_costs_and_missing_bars() -> None:
    loop, fast = gappy_run()
    assert loop.fills["fees"].sum() > 0
    assert_frame_equal(fast.fills, loop.fills, check_exact=True)


def test_run_signals_orders_and_session_end_cancellations_equal_the_event_loop() -> None:
    loop, fast = gappy_run()
    assert loop.cancelled.height > 0
    assert_frame_equal(fast.orders, loop.orders, check_exact=True)
    assert_frame_equal(fast.cancelled, loop.cancelled, check_exact=True)


def test_run_signals_trades_equal_the_event_loop_with_costs_and_missing_bars() -> None:
    loop, fast = gappy_run()
    assert loop.trades.height > 50
    assert_frame_equal(fast.trades, loop.trades, check_exact=True)


def test_run_signals_equity_equals_the_event_loop_with_costs_and_missing_bars() -> None:
    loop, fast = gappy_run()
    assert_frame_equal(fast.equity, loop.equity, check_exact=False, rel_tol=0, abs_tol=1e-6)
    assert fast.bar_events == loop.bar_events


def broker_fees(costs: ExecutionCosts, buy, qty: int, price) -> list[float]:
    """What the broker charges: it passes each fill's price as a numpy float."""
    return [costs.fees("buy" if b else "sell", qty, p) for b, p in zip(buy, price, strict=True)]


@pytest.mark.parametrize(
    "costs",
    [
        ExecutionCosts(),
        COSTS,
        ExecutionCosts(commission_per_share=0.005, commission_min=1.0, finra_taf_max=0.01),
    ],
)
def test_fill_fees_equal_execution_costs_fees_to_the_bit(costs: ExecutionCosts) -> None:
    rng = np.random.default_rng(3)
    price = rng.uniform(1.0, 900.0, 20_000)
    buy = rng.random(len(price)) < 0.5
    assert fill_fees(costs, buy, 137, price).tolist() == broker_fees(costs, buy, 137, price)


def test_fill_fees_round_half_cents_of_a_sale_as_the_broker_does() -> None:
    costs, qty = ExecutionCosts(), 137
    taf = costs.finra_taf_per_share * qty  # $0.022742, under the cap
    # prices at which a sale's SEC fee plus TAF lands on half a cent, where numpy's and
    # Python's rounding part ways (about a third of them)
    price = (np.arange(1, 2_000) / 100 + 0.005 - taf) / (costs.sec_fee_rate * qty)
    sells = np.zeros(len(price), dtype=bool)
    assert fill_fees(costs, sells, qty, price).tolist() == broker_fees(costs, sells, qty, price)


# -- the fast path's parts, on hand-made bars ---------------------------------------------------


def hand_panel(opens: list[list[float]], sessions: list[int]) -> MinutePanel:
    """One ticker per column of ``opens``; closes equal opens; 1,000 shares a bar."""
    open_ = np.array(opens, dtype=float)
    rows = len(open_)
    start = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    days = [date(2024, 1, 2 + s) for s in sessions]
    return MinutePanel(
        tickers=[f"T{j}" for j in range(open_.shape[1])],
        ts=[start + timedelta(days=s, minutes=i) for i, s in enumerate(sessions)],
        session=days,
        session_end=np.array([i == rows - 1 or days[i + 1] != days[i] for i in range(rows)]),
        minutes_to_close=np.zeros(rows),
        open=open_,
        high=open_.copy(),
        low=open_.copy(),
        close=np.where(np.isnan(open_), np.nan, open_),
        volume=np.where(np.isnan(open_), 0.0, 1_000.0),
        spread_bps=np.full(open_.shape, np.nan),
    )


def test_an_order_fills_at_the_next_open_in_its_session_or_never() -> None:
    panel = hand_panel([[10.0], [np.nan], [12.0], [13.0], [14.0], [np.nan]], [0, 0, 0, 1, 1, 1])
    assert next_fill_rows(panel)[:, 0].tolist() == [2, 2, -1, 4, -1, -1]


def test_a_signal_while_an_order_is_pending_is_ignored() -> None:
    panel = hand_panel([[10.0], [11.0], [np.nan], [12.0], [13.0], [14.0]], [0] * 6)
    entries = np.array([[False], [True], [False], [False], [False], [False]])
    exits = np.array([[False], [False], [True], [True], [False], [False]])
    trades = run_signals(panel, entries, exits, SIZE, costs=COSTS).trades
    # bought at row 3's open (12.00): the exit on row 2 came while the buy was working
    assert trades.select("entry_price", "exit_price", "pnl").rows() == [(12.0, 13.0, 8.0)]
