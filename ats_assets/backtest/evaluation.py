"""Inputs of a walk-forward backtest and its run: predictions, focus lists, holding period, engine.

Model week W is evaluated on the sessions of week W+1 (never seen in training). Everything the
engine reads on a test session was known before it: the focus list comes from daily bars before
the session and the model's confidence on the previous session (for the first test session, on
W's last sessions); the holding period from W's last sessions.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from ats_assets.models.labels import SPREAD_COLUMN, LabelSpec, sample_rows
from live.backtest.panel import minute_panel, signal_panel
from live.backtest.simulator import BacktestResult, run_backtest
from live.engine.holding import HoldingChoice, forward_returns, optimal_holding, return_column
from live.engine.selection import select_active, select_focus, selection_stats
from live.engine.settings import ExecutionCosts, StrategySettings
from live.engine.signals import entry_signals
from live.engine.strategy import StrategyEngine

SELECTION_LOOKBACK = 20  # sessions of daily bars behind the ticker selector
HOLDING_HORIZONS = (5, 10, 15, 30, 60)


@dataclass
class BacktestInputs:
    sessions: list[date]
    focus: dict[date, list[str]]
    active_counts: dict[date, int]
    holding: HoldingChoice
    predictions: pl.DataFrame  # ticker, ts, session, prediction, expected_bps, confidence, cost_bps
    spread: pl.DataFrame | None  # ticker, ts, spread_bps of every test minute
    before: pl.DataFrame | None = None  # predictions on the holding sessions


def _window(warehouse, table: str, first: date, last: date) -> pl.DataFrame:
    return warehouse.read_window(
        table, partition_column="session", start=first, end=last + timedelta(days=1)
    )


def row_costs(rows: pl.DataFrame, spec: LabelSpec) -> pl.DataFrame:
    """ticker, ts, cost_bps: each feature row's round-trip cost (quoted spread plus fees)."""
    spread = (
        pl.col(SPREAD_COLUMN).fill_nan(None).fill_null(spec.default_spread_bps)
        if SPREAD_COLUMN in rows.columns
        else pl.lit(spec.default_spread_bps)
    )
    return rows.select(
        "ticker", "ts", cost_bps=spread.cast(pl.Float64).clip(lower_bound=0) + spec.fee_bps
    )


def session_spread(features: pl.DataFrame) -> pl.DataFrame | None:
    """ticker, ts, spread_bps of every minute (the fill model's quoted spread)."""
    if SPREAD_COLUMN not in features.columns:
        return None
    return features.select("ticker", "ts", spread_bps=pl.col(SPREAD_COLUMN).fill_nan(None))


def predict_sessions(
    warehouse, predictor, sessions: list[date], spec: LabelSpec, spreads: list | None = None
) -> pl.DataFrame:
    """The model's predictions on each session's sampled feature rows, with their cost (bps).

    Each session's features are read once; ``spreads``, when given, collects every minute's
    quoted spread (ticker, ts, spread_bps) for the fill model."""
    parts = []
    for day in sessions:
        features = _window(warehouse, "features", day, day)
        if spreads is not None and SPREAD_COLUMN in features.columns:
            spreads.append(session_spread(features))
        rows = sample_rows(features, spec)
        if rows.is_empty():
            continue
        predicted = predictor.predict(rows).join(
            row_costs(rows, spec), on=["ticker", "ts"], how="left"
        )
        parts.append(predicted)
    if not parts:
        raise ValueError(f"no feature rows for sessions {sessions[0]} .. {sessions[-1]}")
    return pl.concat(parts, how="diagonal_relaxed")


def holding_period(
    warehouse, predictions: pl.DataFrame, settings: StrategySettings
) -> HoldingChoice:
    """The holding-period optimiser on the entry signals of ``predictions``' sessions."""
    sessions = predictions["session"].unique().sort().to_list()
    bars = _window(warehouse, "raw_bars", sessions[0], sessions[-1]).select(
        "ticker", "session", "ts", "close"
    )
    direction = entry_signals(
        predictions["expected_bps"].to_numpy(),
        predictions["confidence"].to_numpy(),
        predictions["cost_bps"].to_numpy(),
        settings,
    )
    signals = predictions.select("ticker", "ts", "cost_bps").with_columns(
        direction=pl.Series(direction.astype(np.int64))
    )
    returns = forward_returns(bars.sort("ticker", "ts"), HOLDING_HORIZONS)
    table = signals.filter(pl.col("direction") != 0).join(
        returns.select("ticker", "ts", *(return_column(h) for h in HOLDING_HORIZONS)),
        on=["ticker", "ts"],
        how="inner",
    )
    return optimal_holding(table, HOLDING_HORIZONS, default=settings.max_holding_minutes)


def focus_lists(
    warehouse,
    sessions: list[date],
    predictions: pl.DataFrame,
    before: pl.DataFrame,
    settings: StrategySettings,
) -> tuple[dict[date, list[str]], dict[date, int]]:
    """Each test session's focus tickers: active names by liquidity and volatility from daily bars
    before the session, then focus by those and the model's mean confidence on the session before.
    """
    first = sessions[0] - timedelta(days=3 * SELECTION_LOOKBACK)
    daily = _window(warehouse, "daily_bars", first, sessions[-1])
    focus, active_counts = {}, {}
    previous = before
    for day in sessions:
        active = select_active(
            selection_stats(daily, day, SELECTION_LOOKBACK), settings.max_active_tickers
        )
        confidence = previous.group_by("ticker").agg(pl.col("confidence").mean())
        chosen = select_focus(active, confidence, settings.focus_universe_size)
        focus[day] = chosen["ticker"].to_list()
        active_counts[day] = len(active)
        previous = predictions.filter(pl.col("session") == day)
    return focus, active_counts


@dataclass
class SessionPlan:
    """What a session's trading needs before its first bar: focus list and holding period."""

    day: date
    focus: list[str]
    active: int
    holding: HoldingChoice
    before: pl.DataFrame  # predictions on the sessions before the day


def session_plan(
    warehouse,
    predictor,
    day: date,
    before_sessions: list[date],
    settings: StrategySettings,
    spec: LabelSpec,
) -> SessionPlan:
    """The live job's plan for ``day``, made from data before it only; the same as ``prepare``
    makes for a backtest of ``[day]`` with ``before_sessions`` as its holding sessions."""
    before = predict_sessions(warehouse, predictor, before_sessions, spec)
    focus, active = focus_lists(warehouse, [day], before.clear(), before, settings)
    return SessionPlan(
        day, focus[day], active[day], holding_period(warehouse, before, settings), before
    )


def prepare(
    warehouse,
    predictor,
    test_sessions: list[date],
    holding_sessions: list[date],
    settings: StrategySettings,
    spec: LabelSpec,
) -> BacktestInputs:
    before = predict_sessions(warehouse, predictor, holding_sessions, spec)
    spreads: list[pl.DataFrame] = []
    predictions = predict_sessions(warehouse, predictor, test_sessions, spec, spreads)
    focus, active = focus_lists(warehouse, test_sessions, predictions, before, settings)
    return BacktestInputs(
        sessions=test_sessions,
        focus=focus,
        active_counts=active,
        holding=holding_period(warehouse, before, settings),
        predictions=predictions,
        spread=pl.concat(spreads) if spreads else None,
        before=before,
    )


def test_panel(warehouse, inputs: BacktestInputs, session_close: dict[date, datetime]):
    """The test sessions' 1-minute bars as a panel, with their quoted spreads."""
    sessions = inputs.sessions
    bars = _window(warehouse, "raw_bars", sessions[0], sessions[-1])
    return minute_panel(bars, session_close, inputs.spread)


def run_on_panel(
    panel,
    inputs: BacktestInputs,
    sectors: dict[str, str],
    settings: StrategySettings,
    costs: ExecutionCosts,
    strategy_id: str,
) -> BacktestResult:
    """The strategy engine over ``panel`` through the simulated broker."""
    engine = StrategyEngine(
        panel,
        signal_panel(panel, inputs.predictions),
        settings,
        sectors=sectors,
        focus=inputs.focus,
        holding_minutes=inputs.holding.minutes,
        strategy_id=strategy_id,
    )
    return run_backtest(
        panel, engine, initial_capital=settings.initial_capital, costs=costs, sectors=sectors
    )


def run(
    warehouse,
    inputs: BacktestInputs,
    session_close: dict[date, datetime],
    sectors: dict[str, str],
    settings: StrategySettings,
    costs: ExecutionCosts,
    strategy_id: str,
) -> BacktestResult:
    """The strategy engine over the test sessions' 1-minute bars, through the simulated broker."""
    panel = test_panel(warehouse, inputs, session_close)
    return run_on_panel(panel, inputs, sectors, settings, costs, strategy_id)
