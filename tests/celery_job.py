"""A small ATS pipeline for the Celery executor test: simulated market data to feature analyses.

Eight steps of real ATS code and no warehouse: fetch and validate the four raw tables from the
simulated market (four steps side by side), join them into the minute frame, compute the
features of the window's last session, then their information coefficients and their
correlation (two more steps side by side). Outputs travel through Dagster's filesystem I/O
manager, which every worker process can read; DuckDB is left out because it allows one writer
and these steps run in parallel processes.

Each step returns its output with the process id that computed it (``pid`` in the output
metadata), so a test can tell which process ran which step. The job is defined at module level
so that ``dagster.reconstructable`` can rebuild it inside a Celery worker.
"""

import os
from datetime import date

import dagster as dg
import polars as pl
from dagster_celery import celery_executor

from ats_assets.core.calendar import nyse_calendar
from ats_assets.core.validation import validate
from ats_assets.features.analysis import correlation, forward_returns, information_coefficients
from ats_assets.features.frames import minute_frame, resample
from ats_assets.features.pipeline import compute_days
from ats_assets.features.registry import catalogue
from ats_assets.market_data.assets import fetch_window
from ats_assets.market_data.specs import MARKET_DATA_SPECS, MarketDataSpec
from ats_resources.market_data import SimulatedMarketResource

# Three sessions of eight simulated tickers: enough rows for every feature and IC, small enough
# that the test spends its time on distribution, not on arithmetic.
FIRST_SESSION, LAST_SESSION = "2024-03-04", "2024-03-06"
TICKERS = 8
ANALYSES = ("session_features", "feature_ic", "feature_correlation")


class WindowConfig(dg.Config):
    """The sessions fetched (ISO dates, inclusive)."""

    first_session: str = FIRST_SESSION
    last_session: str = LAST_SESSION


def _with_pid(frame: pl.DataFrame) -> dg.Output:
    return dg.Output(frame, metadata={"pid": os.getpid(), "rows": len(frame)})


def _fetch_op(spec: MarketDataSpec) -> dg.OpDefinition:
    """An op that fetches ``spec``'s table for the window and keeps the rows that pass its rules."""

    @dg.op(name=f"fetch_{spec.name}", required_resource_keys={spec.source, "market_data"})
    def fetch(context: dg.OpExecutionContext, config: WindowConfig) -> dg.Output:
        calendar = nyse_calendar()
        sessions = calendar.sessions_between(
            date.fromisoformat(config.first_session), date.fromisoformat(config.last_session)
        )
        symbols = context.resources.market_data.universe()["ticker"].to_list()
        source = getattr(context.resources, spec.source)
        frame, failures = fetch_window(spec, source, symbols, sessions)
        if failures:
            raise dg.Failure(f"{spec.name}: the simulated market failed tickers {failures}")
        validated = validate(frame, spec.rules_for(symbols), bounds=calendar.bounds_frame(sessions))
        return _with_pid(validated.clean)

    return fetch


fetch_raw_bars, fetch_raw_quotes, fetch_raw_trades, fetch_options_flow = (
    _fetch_op(spec) for spec in MARKET_DATA_SPECS
)


@dg.op
def minute_bars(
    bars: pl.DataFrame, quotes: pl.DataFrame, trades: pl.DataFrame, flow: pl.DataFrame
) -> dg.Output:
    """1-minute bars with spreads, order-flow and options-flow columns (the features' input)."""
    return _with_pid(minute_frame(bars, quotes, trades, flow))


@dg.op
def session_features(minute: pl.DataFrame) -> dg.Output:
    """Every feature of every 1-minute row of the window's last session."""
    last = minute["session"].max()
    return _with_pid(compute_days(minute, resample(minute, "1d"), [last], catalogue()))


@dg.op
def feature_ic(features: pl.DataFrame, bars: pl.DataFrame) -> dg.Output:
    """Spearman IC of each feature with the 60-minute forward return."""
    return _with_pid(information_coefficients(features, forward_returns(bars)))


@dg.op
def feature_correlation(features: pl.DataFrame) -> dg.Output:
    """Pearson correlation of every pair of feature columns."""
    return _with_pid(correlation(features))


_market = SimulatedMarketResource(n_tickers=TICKERS)


@dg.job(
    executor_def=celery_executor,
    resource_defs={"market_data": _market, "options_flow_source": _market},
)
def feature_analysis_job():
    bars = fetch_raw_bars()
    minute = minute_bars(bars, fetch_raw_quotes(), fetch_raw_trades(), fetch_options_flow())
    features = session_features(minute)
    feature_ic(features, bars)
    feature_correlation(features)
