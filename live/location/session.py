"""Assembling a live session from the asset graph: champion, plan, bars, signals, broker, clock.

:func:`prepare_session` does everything :class:`~live.session.runner.LiveSession` needs before
the first bar, from data known before the session only:

1. the champion in force on the day: the latest ``champion_model`` materialization of an earlier
   week, found through the Dagster instance; its model is loaded from the model store, which
   verifies every file's sha256, and the artifact's sha256 must equal the one the
   materialization recorded;
2. the ensemble weights (``ensemble_weights`` before the day) and tuned strategy thresholds
   (``strategy_parameters`` of earlier weeks), when those assets exist;
3. the session plan (focus list, holding period) from the sessions before the day;
4. the bars: a replay of the day's ``raw_bars`` from the warehouse, or the market-data source
   polled each minute; features: the day's ``features`` rows (replay), or in real time computed
   each sampled minute from the session's data so far (``RealtimeFeatures``);
5. the broker for ``ATS_TRADING_MODE`` (simulated by default; Alpaca paper, or live with the
   explicit confirmation).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from ats_assets.adaptation.assets import adapted_weights, apply_tuned
from ats_assets.backtest import evaluation
from ats_assets.core.calendar import nyse_calendar
from ats_assets.models.labels import LabelSpec, sample_rows
from ats_assets.models.serving import ModelServer
from live.backtest.panel import minute_panel
from live.brokers.base import TradingMode, trading_mode
from live.engine.portfolio import Portfolio
from live.engine.settings import ExecutionCosts, StrategySettings
from live.engine.strategy import StrategyEngine
from live.session.clock import ReplayClock, WallClock
from live.session.feed import PollingFeed, ReplayFeed, session_grid
from live.session.runner import LiveSession
from live.session.signals import SignalUpdater

CHAMPION = dg.AssetKey("champion_model")


# Settings a run's config may not change outside simulated trading (the environment sets them).
RISK_LIMITS = frozenset(
    {
        "risk_percentage",
        "max_position_size",
        "max_open_positions",
        "max_gross_exposure",
        "max_net_exposure",
        "max_sector_exposure",
        "daily_loss_limit",
        "max_drawdown",
        "initial_capital",
    }
)


class SessionError(RuntimeError):
    """The session cannot start; the message says why and what to do."""


@dataclass
class Champion:
    asset: str
    partition: str
    model_version: str
    sha256: str
    week: str  # champion_model partition that chose it
    run_id: str
    storage_id: int

    @property
    def label(self) -> str:
        return f"{self.asset}/{self.partition}@{self.model_version}"


def champion_in_force(instance: dg.DagsterInstance, day: date) -> Champion:
    """The champion chosen by the latest ``champion_model`` materialization of a week before
    ``day``'s week (week W's champion is trained through W and trades from W+1)."""
    monday = day - timedelta(days=day.weekday())
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHAMPION), limit=500, ascending=False
    )
    best = None
    for record in result.records:
        week = record.partition_key
        if week is None or date.fromisoformat(week) >= monday:
            continue
        if best is None or week > best.partition_key:
            best = record  # newest first: the first record of a week is its latest
    if best is None:
        raise SessionError(
            f"no champion_model materialization before the week of {monday}: materialize "
            "champion_model (make demo, or the retraining job) first"
        )
    meta = best.asset_materialization.metadata
    text = str(meta["champion"].value)
    asset, _, rest = text.partition("/")
    partition, _, version = rest.partition("@")
    if asset in ("None", "") or version in ("None", ""):
        raise SessionError(
            f"champion_model {best.partition_key} names no model ({text}): no ensemble has been "
            "promoted yet"
        )
    return Champion(
        asset=asset,
        partition=partition,
        model_version=version,
        sha256=str(meta["sha256"].value),
        week=best.partition_key,
        run_id=best.run_id,
        storage_id=best.storage_id,
    )


def load_champion(store, champion: Champion, weights: dict[str, float] | None):
    """The champion's predictor; the store verifies each file, and the artifact must match."""
    ref, _ = store.load(champion.asset, champion.partition, champion.model_version)
    if ref.sha256 != champion.sha256:
        raise SessionError(
            f"{champion.label}: stored artifact sha256 {ref.sha256[:12]}… differs from "
            f"{champion.sha256[:12]}… recorded by champion_model {champion.week}; refusing to "
            "trade a model that is not the one promoted"
        )
    return ModelServer(store).load(
        champion.asset, champion.partition, champion.model_version, weights=weights
    )


def history_rows(predictor) -> int:
    """How many sampled rows of history the model reads per ticker (sequence models)."""
    members = getattr(predictor, "members", [predictor])
    lengths = [getattr(getattr(m.model, "config", None), "sequence_length", 1) for m in members]
    return max([1, *lengths])


@contextlib.contextmanager
def inference_threads(threads: int = 1):
    """Torch on ``threads`` intra-op threads while a session runs, restored after.

    A bar's predictions are small (40 tickers x a 12-row window); on a 2-core machine several
    threads only contend with polars and the OS: one thread gave a p99 of 9 ms against 43 ms
    for the bars with predictions (``make bench-live``)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model_columns(predictor) -> list[str]:
    members = getattr(predictor, "members", [predictor])
    return sorted({c for m in members for c in m.columns})


def strategy_settings(warehouse, day: date, overrides: Mapping[str, float]):
    """Environment settings, then tuned thresholds before ``day``'s week, then ``overrides``."""
    settings, source = apply_tuned(
        StrategySettings.from_env(), warehouse, day - timedelta(days=day.weekday())
    )
    known = {f.name: type(f.default) for f in fields(StrategySettings)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise SessionError(f"unknown strategy setting(s) {unknown}; known: {sorted(known)}")
    settings = replace(settings, **{k: known[k](v) for k, v in overrides.items()})
    settings.validate()
    return settings, source


def sessions_before(warehouse, day: date, count: int) -> list[date]:
    available = warehouse.partition_summary("features")["session"].to_list()
    return sorted(d for d in available if d < day)[-count:]


@dataclass
class PreparedSession:
    session: LiveSession
    champion: Champion
    plan: evaluation.SessionPlan
    settings: StrategySettings
    parameters_from: str
    weights_from: str
    mode: TradingMode
    replay: bool
    predictor: object


def prepare_session(
    *,
    instance: dg.DagsterInstance,
    warehouse,
    model_store,
    market_data,
    flow_source=None,
    day: date,
    replay: bool = True,
    speed: float = 0.0,
    holding_sessions: int = 2,
    overrides: Mapping[str, float] | None = None,
    env: Mapping[str, str] | None = None,
    notify=None,
    notify_fills: bool = True,
    broker=None,
) -> PreparedSession:
    env = os.environ if env is None else env
    mode = trading_mode(env)
    risky = sorted(set(overrides or {}) & RISK_LIMITS)
    if risky and mode is not TradingMode.SIMULATED:
        raise SessionError(
            f"risk limits {risky} cannot be overridden by run config when trading with "
            f"ATS_TRADING_MODE={mode}; set them in the environment"
        )
    if replay and mode is not TradingMode.SIMULATED and broker is None:
        raise SessionError(
            f"a replay trades a past day through the simulated broker; ATS_TRADING_MODE={mode} "
            "is for real-time sessions"
        )
    calendar = nyse_calendar()
    if not calendar.is_session(day):
        raise SessionError(f"{day} is not a trading session")
    spec = LabelSpec()
    champion = champion_in_force(instance, day)
    weights, weights_from = (None, "stored weights")
    if champion.asset == "ensemble_model":
        weights, weights_from = adapted_weights(
            warehouse,
            {"asset": champion.asset, "partition": champion.partition,
             "model_version": champion.model_version},
            day,
        )  # fmt: skip
    predictor = load_champion(model_store, champion, weights)
    settings, parameters_from = strategy_settings(warehouse, day, overrides or {})
    before = sessions_before(warehouse, day, holding_sessions)
    if not before:
        raise SessionError(f"no features before {day}: materialize features for earlier sessions")
    plan = evaluation.session_plan(warehouse, predictor, day, before, settings, spec)
    open_, close = calendar.session_open(day), calendar.session_close(day)
    span = {"partition_column": "session", "start": day, "end": day + timedelta(days=1)}
    if replay:
        bars = warehouse.read_window("raw_bars", **span)
        features = warehouse.read_window("features", **span)
        if bars.is_empty() or features.is_empty():
            raise SessionError(
                f"replay of {day} needs its raw_bars and features: materialize them first"
            )
        source = minute_panel(bars, {day: close}, evaluation.session_spread(features))
        feed = ReplayFeed(source)
        by_minute = {key[0]: rows for key, rows in sample_rows(features, spec).group_by("ts")}

        def features_at(ts: datetime) -> pl.DataFrame:
            return by_minute.get(ts, pl.DataFrame())

        clock = ReplayClock(speed)
    else:
        if datetime.now(UTC) >= close:
            raise SessionError(
                f"the session of {day} closed at {close:%H:%M} UTC: replay it instead (the "
                "default config), or start real time before the close"
            )
        if broker is None and mode is not TradingMode.SIMULATED:
            from live.brokers.alpaca import AlpacaBroker

            broker = AlpacaBroker.from_env(env, mode)
        held = {p.ticker for p in broker.positions()} if broker is not None else set()
        # the broker's positions must be in the panel, so that the engine can manage them
        tickers = sorted(set(plan.focus) | _active(warehouse, day, settings) | held)
        grid = session_grid(tickers, day, open_, close)

        def fetch(symbols, start, end):
            return market_data.bars(symbols, start, end).frame

        feed = PollingFeed(grid, fetch)
        if flow_source is None:
            raise SessionError("a real-time session needs the options-flow source for features")
        features_at = RealtimeFeatures(warehouse, market_data, flow_source, day, plan.focus)
        clock = WallClock()
    panel = feed.panel
    updater = SignalUpdater(
        predictor,
        panel.tickers,
        len(panel.ts),
        features_at,
        lambda rows: evaluation.row_costs(rows, spec),
        lambda ts: (
            int((ts - open_).total_seconds() // 60) % spec.sample_minutes == spec.sample_minutes - 1
        ),
        history_rows(predictor),
        model_columns(predictor),
    )
    sectors = dict(market_data.universe().select("ticker", "sector").iter_rows())
    engine = StrategyEngine(
        panel,
        updater.signals,
        settings,
        sectors=sectors,
        focus={day: plan.focus},
        holding_minutes=plan.holding.minutes,
        strategy_id=f"live-{champion.asset}-{champion.partition}",
    )
    costs = ExecutionCosts.from_env(env)
    if broker is None:
        if mode is TradingMode.SIMULATED:
            from live.brokers.simulated import SimulatedLiveBroker

            broker = SimulatedLiveBroker(panel, costs, cash=settings.initial_capital)
        else:
            from live.brokers.alpaca import AlpacaBroker

            broker = AlpacaBroker.from_env(env, mode)
    session = LiveSession(
        day=day,
        engine=engine,
        feed=feed,
        updater=updater,
        broker=broker,
        settings=settings,
        clock=clock,
        portfolio=Portfolio(cash=settings.initial_capital),
        sectors=sectors,
        notify=notify or (lambda *a: None),
        notify_fills=notify_fills,
    )
    return PreparedSession(
        session, champion, plan, settings, parameters_from, weights_from, mode, replay, predictor
    )


def _active(warehouse, day: date, settings: StrategySettings) -> set[str]:
    from live.engine.selection import select_active, selection_stats

    daily = warehouse.read_window(
        "daily_bars",
        partition_column="session",
        start=day - timedelta(days=3 * evaluation.SELECTION_LOOKBACK),
        end=day + timedelta(days=1),
    )
    stats = selection_stats(daily, day, evaluation.SELECTION_LOOKBACK)
    return set(select_active(stats, settings.max_active_tickers)["ticker"].to_list())


class RealtimeFeatures:
    """Real time: the features of the minute being decided, computed from the session so far.

    At start it reads the look-back the ``features`` asset reads (the minute data of the
    ``MINUTE_HISTORY_SESSIONS`` and the daily bars of the ``DAILY_HISTORY_SESSIONS`` before the
    day) for ``tickers`` from the warehouse. On each sampled minute it fetches the bars, quotes,
    trades and options flow since its last call from the market-data sources and computes the
    day's features with the same pipeline (``compute_day``), whose values at a minute depend
    only on bars completed by then; it returns the rows of that minute. Raw data fetched live is
    not validated by the asset checks the daily pipeline runs. One difference from the asset:
    at the session's last minute the asset joins the day's own daily bar (complete at the close),
    which is not known live; the engine takes no decision on it (entries stop 30 minutes before
    the close and the close-out is decided two minutes before).
    """

    def __init__(self, warehouse, market_data, flow_source, day: date, tickers: list[str]):
        from ats_assets.features.frames import sessions_before as history_sessions
        from ats_assets.features.indicators import warm_up
        from ats_assets.features.pipeline import DAILY_HISTORY_SESSIONS, MINUTE_HISTORY_SESSIONS

        warm_up()  # the compiled kernels load now, before the open, not on the first decision

        self.market_data, self.flow_source = market_data, flow_source
        self.day, self.tickers = day, sorted(tickers)
        wanted = pl.col("ticker").is_in(self.tickers)

        def window(table: str, sessions: int) -> pl.DataFrame:
            first = history_sessions(day, sessions)[0]
            if table not in warehouse.tables():
                return pl.DataFrame()
            return warehouse.read_window(
                table, partition_column="session", start=first, end=day
            ).filter(wanted)

        self.history = {
            kind: window(table, MINUTE_HISTORY_SESSIONS)
            for kind, table in (
                ("bars", "raw_bars"),
                ("quotes", "raw_quotes"),
                ("trades", "raw_trades"),
                ("flow", "options_flow"),
            )
        }
        self.daily = window("daily_bars", DAILY_HISTORY_SESSIONS)
        self.today: dict[str, list[pl.DataFrame]] = {kind: [] for kind in self.history}
        self.fetched_until = nyse_calendar().session_open(day)

    def _fetch(self, end: datetime) -> None:
        start, symbols = self.fetched_until, self.tickers
        if end <= start:
            return
        fetched = {
            "bars": self.market_data.bars(symbols, start, end).frame,
            "quotes": self.market_data.quotes(symbols, start, end).frame,
            "trades": self.market_data.trades(symbols, start, end).frame,
            "flow": self.flow_source.options_flow(symbols, start, end).frame,
        }
        for kind, frame in fetched.items():
            if not frame.is_empty():
                self.today[kind].append(frame.with_columns(session=pl.lit(self.day)))
        self.fetched_until = end

    def __call__(self, ts: datetime) -> pl.DataFrame:
        from ats_assets.features.frames import minute_frame
        from ats_assets.features.pipeline import compute_day
        from ats_assets.features.registry import catalogue

        self._fetch(ts + timedelta(minutes=1))
        frames = {
            kind: pl.concat([self.history[kind], *self.today[kind]], how="diagonal_relaxed")
            for kind in self.history
        }
        if frames["bars"].filter(pl.col("ts") == ts).is_empty():
            return pl.DataFrame()
        minute = minute_frame(frames["bars"], frames["quotes"], frames["trades"], frames["flow"])
        rows = compute_day(minute, self.daily, self.day, catalogue())
        return rows.filter(pl.col("ts") == ts)
