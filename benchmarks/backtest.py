"""Backtest benchmark: our event loop and its vectorized fast path against vectorbt and backtesting.py.

Run with ``make bench-backtest`` (or ``python -m benchmarks.backtest``); prints a table. Input:
simulated 1-minute bars of 40 tickers over 60 NYSE sessions from 2024-01-02 (about 936k
ticker-minutes, the "bar events"), an SMA(10)/SMA(30) crossover of the closes, long only, 10
shares, $1.00 commission per order, no slippage or regulatory fees.

Rows:
- *event loop*: ``run_backtest(panel, SignalStrategy(...))``, the loop the full engine runs in;
- *run_signals*: ``live.backtest.vectorized.run_signals``, the same results without the loop;
- *vectorbt*: ``Portfolio.from_signals`` at the opens with the signals shifted one bar (so orders
  fill at the next bar's open), ``size=10, size_type='amount', fixed_fees=1.0``; the first call
  in this process (numba compiles, or loads its on-disk cache) and warm;
- *backtesting.py*: one ``Backtest`` per ticker (``trade_on_close=False``, the commission as a
  callable charged per order), in a Python loop.

vectorbt and backtesting.py know no sessions, while our orders are DAY orders cancelled at the
session's end; so no signal is given on a session's last bar, and every position exits on the
last bar's open: all four then agree on every trade (the trades and P&L columns show it).
Times are one run each, except run_signals and vectorbt warm: the median of ``REPEATS`` runs.
After the table, the *full engine* (``StrategyEngine``: selection of all 40 as focus, signals,
timeframes, sizing, allocation, stops, targets, peaks, time exits, kill switch, order types) runs
over the same bars with the default fill model (spread, impact, SEC/FINRA fees) on stand-in
predictions: every 5 minutes per ticker, seeded normal expected returns (sd 8 bp), confidence
uniform in [0.2, 0.9], cost 5 bp (a speed figure, not a strategy's P&L).
Building the inputs is not timed. Another row is one more maker in ``ROW_MAKERS``: a function
of :class:`Inputs` returning ``Row(name, seconds, bar_events, trades, pnl)`` tuples.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
import polars as pl

from ats_assets.core.calendar import nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from live.backtest.panel import MinutePanel, minute_panel
from live.backtest.simulator import BacktestResult, run_backtest
from live.backtest.vectorized import run_signals
from live.engine.settings import ExecutionCosts
from live.engine.signal_strategy import SignalStrategy

TICKERS = 40
SESSIONS = 60
FIRST_SESSION = date(2024, 1, 2)
FAST, SLOW = 10, 30  # SMA lengths, bars
SIZE = 10  # shares
COMMISSION = 1.0  # dollars per order
REPEATS = 3
VECTORBT_MISSING = "vectorbt not installed (pip install -e '.[bench]')"


class Row(NamedTuple):
    name: str
    seconds: float
    bar_events: int  # ticker-minutes simulated
    trades: int  # round trips
    pnl: float  # dollars after commissions


@dataclass
class Inputs:
    panel: MinutePanel
    entries: np.ndarray  # (bars, tickers) bool, read on each bar's close
    exits: np.ndarray
    costs: ExecutionCosts
    bar_events: int


def build_inputs() -> Inputs:
    calendar = nyse_calendar()
    days = calendar.sessions_between(FIRST_SESSION, FIRST_SESSION + timedelta(days=120))
    days = days[:SESSIONS]
    market = SimulatedMarket(SimulationConfig(n_tickers=TICKERS))
    bars = pl.concat([market.day(d).bars.with_columns(session=pl.lit(d)) for d in days])
    panel = minute_panel(bars, {d: calendar.session_close(d) for d in days})
    entries, exits = crossover_signals(panel)
    return Inputs(
        panel, entries, exits, ExecutionCosts.fixed(COMMISSION), int(np.isfinite(panel.close).sum())
    )


def crossover_signals(panel: MinutePanel) -> tuple[np.ndarray, np.ndarray]:
    """SMA(FAST) crossing above SMA(SLOW): entry; below: exit. None on a session's last bar
    (there our DAY order is cancelled, the session-less libraries would fill it next morning);
    every ticker exits on the second-to-last bar, so all trades close on the last bar's open."""
    close = pd.DataFrame(panel.close)
    fast, slow = close.rolling(FAST).mean(), close.rolling(SLOW).mean()
    above = (fast > slow).to_numpy()
    below = (fast < slow).to_numpy()
    ready = slow.notna().to_numpy()
    entries = np.zeros(panel.shape, dtype=bool)
    exits = np.zeros(panel.shape, dtype=bool)
    entries[1:] = above[1:] & ~above[:-1] & ready[:-1]
    exits[1:] = below[1:] & ~below[:-1] & ready[:-1]
    entries[panel.session_end] = exits[panel.session_end] = False
    entries[-2:] = False
    exits[-2] = True
    return entries & ~exits, exits


def _result_row(name: str, seconds: float, result: BacktestResult) -> Row:
    return Row(name, seconds, result.bar_events, result.trades.height, result.trades["pnl"].sum())


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    out = run()
    return time.perf_counter() - began, out


def event_loop_rows(inputs: Inputs) -> list[Row]:
    panel = inputs.panel
    strategy = SignalStrategy(panel.tickers, panel.ts, inputs.entries, inputs.exits, SIZE)
    seconds, result = _timed(lambda: run_backtest(panel, strategy, costs=inputs.costs))
    return [_result_row("event loop: run_backtest(SignalStrategy)", seconds, result)]


def run_signals_rows(inputs: Inputs) -> list[Row]:
    runs = [
        _timed(
            lambda: run_signals(
                inputs.panel, inputs.entries, inputs.exits, SIZE, costs=inputs.costs
            )
        )
        for _ in range(REPEATS)
    ]
    seconds = statistics.median(s for s, _ in runs)
    return [_result_row("vectorized: run_signals", seconds, runs[0][1])]


def vectorbt_rows(inputs: Inputs) -> list[Row]:
    try:
        import vectorbt as vbt
    except ImportError:
        return []  # the table says so
    panel = inputs.panel
    index = pd.DatetimeIndex(panel.ts)
    open_ = pd.DataFrame(panel.open, index=index, columns=panel.tickers)
    close = pd.DataFrame(panel.close, index=index, columns=panel.tickers)
    # a signal on bar i's close becomes an order at bar i + 1's open
    entries = pd.DataFrame(np.roll(inputs.entries, 1, axis=0), index=index, columns=panel.tickers)
    exits = pd.DataFrame(np.roll(inputs.exits, 1, axis=0), index=index, columns=panel.tickers)
    entries.iloc[0] = exits.iloc[0] = False

    def run() -> tuple[int, float]:
        portfolio = vbt.Portfolio.from_signals(
            close,
            entries,
            exits,
            price=open_,
            size=SIZE,
            size_type="amount",
            fixed_fees=COMMISSION,
            init_cash=1e9,
        )
        return int(portfolio.trades.count().sum()), float(portfolio.total_profit().sum())

    first, (trades, pnl) = _timed(run)
    warm = statistics.median(_timed(run)[0] for _ in range(REPEATS))
    return [
        Row("vectorbt from_signals, first call", first, inputs.bar_events, trades, pnl),
        Row("vectorbt from_signals, warm", warm, inputs.bar_events, trades, pnl),
    ]


def backtesting_py_rows(inputs: Inputs) -> list[Row]:
    from benchmarks.backtesting_py import run_reference, ticker_frame

    panel = inputs.panel
    frames = [ticker_frame(panel, j) for j in range(len(panel.tickers))]

    def run() -> tuple[int, float]:
        trades, pnl = 0, 0.0
        for j, data in enumerate(frames):
            stats = run_reference(data, inputs.entries[:, j], inputs.exits[:, j], SIZE, COMMISSION)
            trades += len(stats["_trades"])
            pnl += float(stats["_trades"]["PnL"].sum())
        return trades, pnl

    # its progress bars and a pandas deprecation inside its statistics are not ours to show
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, (trades, pnl) = _timed(run)
    return [Row("backtesting.py (loop over tickers)", seconds, inputs.bar_events, trades, pnl)]


# Each maker returns rows for the table; add a backtester by appending its maker here.
ROW_MAKERS: list[Callable[[Inputs], list[Row]]] = [
    event_loop_rows,
    run_signals_rows,
    vectorbt_rows,
    backtesting_py_rows,
]


def _ratio(seconds: float, reference: Row | None) -> str:
    return f"{seconds / reference.seconds:8.2f}x" if reference else f"{'n/a':>9}"


def print_table(rows: list[Row]) -> None:
    vbt_warm = next((r for r in rows if r.name.startswith("vectorbt") and "warm" in r.name), None)
    bt_py = next((r for r in rows if r.name.startswith("backtesting.py")), None)
    header = (
        f"{'backtester':<42} {'seconds':>8} {'bar-events/s':>13} {'trades':>7} "
        f"{'P&L ($)':>11} {'/ vbt warm':>10} {'/ bt.py':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:<42} {r.seconds:8.3f} {r.bar_events / r.seconds:13,.0f} {r.trades:7d} "
            f"{r.pnl:11.2f} {_ratio(r.seconds, vbt_warm):>10} {_ratio(r.seconds, bt_py)}"
        )
    if vbt_warm is None:
        print(f"{'vectorbt':<42} {VECTORBT_MISSING}")
    print("-" * len(header))
    if len({r.trades for r in rows}) > 1:
        print("WARNING: the backtesters disagree on the number of trades")
    elif max(r.pnl for r in rows) - min(r.pnl for r in rows) >= 0.005:
        print("WARNING: the backtesters agree on the trades but not on the P&L to the cent")
    else:
        print(f"all {len(rows)} rows agree: {rows[0].trades} trades, P&L ${rows[0].pnl:,.2f}")


def full_engine(inputs: Inputs) -> None:
    """Time the full strategy engine over the same bars (bar-events/s) and print one line."""
    from live.engine.strategy import SignalPanel, StrategyEngine

    panel = inputs.panel
    rng = np.random.default_rng(11)
    signals = SignalPanel.empty(*panel.shape)
    minute_of_session = np.zeros(panel.shape[0], dtype=int)
    for day in panel.sessions():
        span = panel.rows_of(day)
        minute_of_session[span.start : span.stop] = np.arange(len(span))
    rows = np.flatnonzero(minute_of_session % 5 == 4)
    shape = (len(rows), panel.shape[1])
    signals.expected_bps[rows] = rng.normal(0.0, 8.0, shape)
    signals.confidence[rows] = rng.uniform(0.2, 0.9, shape)
    signals.cost_bps[rows] = 5.0
    engine = StrategyEngine(panel, signals)
    seconds, result = _timed(lambda: run_backtest(panel, engine, costs=ExecutionCosts()))
    print(
        f"full engine (StrategyEngine, default costs, stand-in predictions): {seconds:.1f} s, "
        f"{result.bar_events / seconds:,.0f} bar-events/s, {result.orders.height:,} orders, "
        f"{result.trades.height:,} trades, {len(result.rejections):,} rejected entries"
    )


def main() -> None:
    began = time.perf_counter()
    inputs = build_inputs()
    minutes = inputs.panel.shape[0]
    print(
        f"{TICKERS} tickers x {SESSIONS} sessions of 1-minute bars: {minutes:,} minutes, "
        f"{inputs.bar_events:,} bar events, {int(inputs.entries.sum()):,} entry and "
        f"{int(inputs.exits.sum()):,} exit signals (inputs built in "
        f"{time.perf_counter() - began:.1f} s, not timed)"
    )
    table: list[Row] = []
    for make in ROW_MAKERS:
        table += make(inputs)
    print_table(table)
    print()
    full_engine(inputs)


if __name__ == "__main__":
    main()
