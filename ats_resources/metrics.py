"""Prometheus metrics of the trading system, read from the warehouse and the Dagster instance.

``ATSCollector`` is a prometheus_client custom collector: on a scrape it reads what the system
already records (nothing is instrumented in the trading path, so a broken exporter can never
slow or stop a session) and caches the answer for ``cache_s`` seconds, so several Prometheus
servers or a dashboard refreshing fast cost one read. Three sections, each optional:

- **trading**, from the latest session in the ``live_*`` tables: realized P&L of its round trips,
  equity, exposure, open positions, orders by status, rejections, the kill switch;
- **models**, from ``champion_model`` and ``market_regime``: the champion in force and its age,
  the share of its inputs drifted (PSI), its realized IC and IC decay;
- **pipeline**, from the Dagster instance: the age of each asset's latest materialization and
  run counts by status.

A section whose tables (or instance) do not exist yet exports nothing; a section that fails adds
one to ``ats_exporter_scrape_errors_total{section=...}`` and the others are still exported.

The live tables are written when a session ends, so the trading gauges describe the latest
*finished* session. ``samples`` turns a collection into rows; ``metric_history`` stores them
daily, with ``at`` set to the end of each session's day so a backfill records the past as it was.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

DEFAULT_PORT = 9108
DEFAULT_CACHE_S = 10.0
# A scrape that finds the DuckDB file held by a writer waits this long, not the writers' 5 minutes.
SCRAPE_LOCK_TIMEOUT_S = 5.0
NEW_YORK = ZoneInfo("America/New_York")
LIVE_TABLES = ("live_orders", "live_fills", "live_positions", "live_account", "live_events")
ORDER_STATUSES = ("submitted", "rejected", "unknown", "duplicate")
RUN_STATUSES = ("SUCCESS", "FAILURE", "STARTED", "QUEUED", "CANCELED")
SECTIONS = ("trading", "models", "pipeline")

# Every metric the exporter can expose, with its help text (units in the name or the text).
METRICS: dict[str, str] = {
    "ats_live_session_info": "The latest live session (labels: session date, broker, mode); 1",
    "ats_live_pnl_dollars": "Realized P&L of the latest session's round trips, after fees, $",
    "ats_live_fees_dollars": "Fees paid on the latest session's fills, $",
    "ats_live_fills": "Fills in the latest session",
    "ats_live_round_trips": "Round trips completed in the latest session",
    "ats_live_equity_dollars": "Account equity at the latest snapshot of the session, $",
    "ats_live_opening_equity_dollars": "Account equity at the session's first snapshot, $",
    "ats_live_gross_exposure_dollars": "Gross market value of open positions (long + |short|), $",
    "ats_live_net_exposure_dollars": "Net market value of open positions (long - short), $",
    "ats_live_open_positions": "Open positions at the latest snapshot",
    "ats_live_orders": "Orders of the latest session by status",
    "ats_live_rejections": "Orders refused (pre-trade guards or broker) in the latest session",
    "ats_live_kill_switch_engaged": "1 when the kill switch halted the latest session, else 0",
    "ats_live_last_snapshot_timestamp_seconds": "Unix time of the session's latest account "
    "snapshot",
    "ats_champion_info": "The champion model in force (labels: asset, partition, model_version); 1",
    "ats_champion_age_days": "Days since the end of the week the champion was trained on",
    "ats_market_regime_info": "The latest market regime (labels: session, regime, declared); 1",
    "ats_model_psi_drifted_share": "Share of the champion's inputs with PSI > 0.25 (latest day)",
    "ats_model_realized_ic": "The champion's IC on the latest day's realized returns",
    "ats_model_validation_ic": "The champion's IC on its validation sessions",
    "ats_model_ic_decay": "Decay of the champion's IC: realized against validation",
    "ats_asset_last_materialization_age_seconds": "Seconds since the asset's latest "
    "materialization",
    "ats_runs": "Dagster runs by status",
    "ats_failed_runs_24h": "Dagster runs that failed in the last 24 hours",
    "ats_exporter_scrape_errors": "Sections that failed to read, by section",
    "ats_exporter_last_scrape_duration_seconds": "Seconds the latest read of all sections took",
}


class _Families:
    """Gauges gathered by one section; a section that fails is dropped as a whole."""

    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily] = {}

    def gauge(self, name: str, value: float, **labels: str) -> None:
        if value is None or value != value:  # no series for a missing figure (None, NaN)
            return
        family = self.families.get(name)
        if family is None:
            family = GaugeMetricFamily(name, METRICS[name], labels=sorted(labels))
            self.families[name] = family
        family.add_metric([str(labels[k]) for k in sorted(labels)], float(value))


def _day_of(moment: datetime) -> date:
    """The New York calendar date of ``moment`` (sessions are New York days)."""
    return moment.astimezone(NEW_YORK).date()


def _latest_session(warehouse: Any, tables: list[str], until: date) -> date | None:
    sessions = [
        day
        for table in tables
        for day in warehouse.partition_summary(table)["session"].to_list()
        if day is not None and day <= until
    ]
    return max(sessions) if sessions else None


def _session_label(instance: Any, day: date) -> dict[str, str]:
    """Broker and mode of the session, from its ``live_orders`` materialization's metadata."""
    labels = {"broker": "unknown", "mode": "unknown"}
    if instance is None:
        return labels
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("live_orders"), asset_partitions=[str(day)]),
        limit=1,
    ).records
    if records and records[0].asset_materialization is not None:
        metadata = records[0].asset_materialization.metadata
        for key in labels:
            if key in metadata:
                value = metadata[key]
                labels[key] = str(getattr(value, "value", value))
    return labels


class ATSCollector:
    """Reads the system's state for Prometheus; see the module docstring.

    ``source``: the ``Settings`` (the warehouse is built from them, with a short lock wait), a
    resources mapping holding ``warehouse``, or a warehouse resource. ``instance_factory``: called
    once, on the first scrape, for the Dagster instance (None: no pipeline section). ``at``: read
    the state as it was at that moment (UTC) rather than now (``metric_history`` backfills).
    """

    def __init__(
        self,
        source: Any,
        instance_factory: Callable[[], Any] | None = None,
        *,
        cache_s: float = DEFAULT_CACHE_S,
        at: datetime | None = None,
    ) -> None:
        self.warehouse = _warehouse_of(source)
        self.instance_factory = instance_factory
        self.cache_s = cache_s
        self.at = at
        self.errors = dict.fromkeys(SECTIONS, 0)
        self.last_errors: dict[str, str] = {}  # section -> its error, in the latest read only
        self.last_duration_s = 0.0
        self._instance: Any = None
        self._cached: list[Metric] = []
        self._cached_at = float("-inf")
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        # No description: registering the collector must not read the warehouse.
        return []

    def collect(self) -> list[Metric]:
        with self._lock:
            if time.monotonic() - self._cached_at >= self.cache_s:
                self._cached = self._read()
                self._cached_at = time.monotonic()
            return [*self._cached, *self._exporter_families()]

    # -- sections -------------------------------------------------------------------------
    def _read(self) -> list[Metric]:
        began = time.perf_counter()
        now = self.at or datetime.now(UTC)
        families: list[Metric] = []
        self.last_errors = {}
        try:
            tables, unreadable = self.warehouse.tables(), None
        except Exception as error:  # the warehouse itself is down: both its sections fail
            tables, unreadable = None, error
        for section, read in (
            ("trading", self._trading),
            ("models", self._models),
            ("pipeline", self._pipeline),
        ):
            gathered = _Families()
            try:
                if unreadable is not None and section != "pipeline":
                    raise RuntimeError(f"the warehouse cannot be read: {unreadable}")
                read(gathered, now, tables)
            except Exception as error:  # one failing section must not hide the others
                self.errors[section] += 1
                self.last_errors[section] = " ".join(str(error).split()) or type(error).__name__
                log.warning("metrics: section %s failed: %s", section, error)
                continue
            families.extend(gathered.families.values())
        self.last_duration_s = time.perf_counter() - began
        return families

    def _trading(self, out: _Families, now: datetime, tables: list[str]) -> None:
        from live.session.performance import round_trips

        present = [t for t in LIVE_TABLES if t in tables]
        day = _latest_session(self.warehouse, present, _day_of(now)) if present else None
        if day is None:
            return
        span = {"partition_column": "session", "start": day, "end": day + timedelta(days=1)}
        frames = {t: self.warehouse.read_window(t, **span) for t in present}
        try:
            labels = _session_label(self._get_instance(), day)
        except Exception as error:  # the instance's faults count against the pipeline section
            log.warning("metrics: the session's broker is unknown: %s", error)
            labels = {"broker": "unknown", "mode": "unknown"}
        out.gauge("ats_live_session_info", 1, session=str(day), **labels)
        fills = frames.get("live_fills")
        if fills is not None:
            trades = round_trips(fills)
            out.gauge("ats_live_pnl_dollars", float(trades["pnl"].sum()) if trades.height else 0.0)
            out.gauge("ats_live_round_trips", trades.height)
            out.gauge("ats_live_fills", fills.height)
            out.gauge("ats_live_fees_dollars", float(fills["fees"].sum()) if fills.height else 0.0)
        halted = False
        account = frames.get("live_account")
        if account is not None and account.height:
            account = account.sort("ts")
            last = account.row(-1, named=True)
            out.gauge("ats_live_equity_dollars", last["equity"])
            out.gauge("ats_live_opening_equity_dollars", account["equity"][0])
            out.gauge("ats_live_gross_exposure_dollars", last["gross_exposure"])
            out.gauge("ats_live_net_exposure_dollars", last["net_exposure"])
            out.gauge("ats_live_open_positions", last["positions"])
            out.gauge("ats_live_last_snapshot_timestamp_seconds", last["ts"].timestamp())
            halted = bool(last["halted"])
        elif (positions := frames.get("live_positions")) is not None and positions.height:
            latest = positions.filter(pl.col("ts") == pl.col("ts").max())
            out.gauge("ats_live_open_positions", latest.filter(pl.col("qty") != 0).height)
        orders = frames.get("live_orders")
        if orders is not None:
            counts = dict.fromkeys(ORDER_STATUSES, 0)
            counts |= dict(orders.group_by("status").len().iter_rows())
            for status, count in sorted(counts.items()):
                out.gauge("ats_live_orders", count, status=str(status))
            out.gauge("ats_live_rejections", counts["rejected"])
        events = frames.get("live_events")
        if events is not None:
            halted = halted or bool((events["kind"] == "kill_switch").any())
        if account is not None or events is not None:
            out.gauge("ats_live_kill_switch_engaged", int(halted))

    def _models(self, out: _Families, now: datetime, tables: list[str]) -> None:
        today = _day_of(now)
        if "champion_model" in tables:
            # In force on ``today``: the latest decided in an earlier week (as the live job reads it)
            monday = today - timedelta(days=today.weekday())
            rows = (
                self.warehouse.read_table("champion_model")
                .filter(
                    (pl.col("week") < monday)
                    & pl.col("partition").is_not_null()
                    & pl.col("model_version").is_not_null()
                )
                .sort("week")
            )
            if rows.height:
                champion = rows.row(-1, named=True)
                out.gauge(
                    "ats_champion_info",
                    1,
                    asset=champion["asset"],
                    partition=champion["partition"],
                    model_version=champion["model_version"],
                )
                # the partition key is the training week's Monday; its data ends a week later
                trained_until = date.fromisoformat(champion["partition"]) + timedelta(days=7)
                out.gauge("ats_champion_age_days", (today - trained_until).days)
        if "market_regime" in tables:
            regimes = self.warehouse.read_table("market_regime").filter(pl.col("session") <= today)
            if regimes.height:
                latest = regimes.sort("session").row(-1, named=True)
                out.gauge(
                    "ats_market_regime_info",
                    1,
                    session=str(latest["session"]),
                    regime=str(latest.get("regime")),
                    declared=str(latest.get("declared_regime")),
                )
                for name, column in (
                    ("ats_model_psi_drifted_share", "psi_share_drifted"),
                    ("ats_model_realized_ic", "realized_ic"),
                    ("ats_model_validation_ic", "validation_ic"),
                    ("ats_model_ic_decay", "ic_decay"),
                ):
                    out.gauge(name, latest.get(column))

    def _pipeline(self, out: _Families, now: datetime, tables: list[str] | None) -> None:
        instance = self._get_instance()
        if instance is None:
            return
        import dagster as dg

        before = now.timestamp() if self.at is not None else None
        for key in instance.get_asset_keys():
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, before_timestamp=before), limit=1
            ).records
            if records:
                age = now.timestamp() - records[0].timestamp
                out.gauge(
                    "ats_asset_last_materialization_age_seconds",
                    max(age, 0.0),
                    asset=key.to_user_string(),
                )
        created_before = self.at
        for status in RUN_STATUSES:
            runs = instance.get_runs_count(
                dg.RunsFilter(statuses=[dg.DagsterRunStatus[status]], created_before=created_before)
            )
            out.gauge("ats_runs", runs, status=status.lower())
        failed = instance.get_runs_count(
            dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.FAILURE],
                updated_after=now - timedelta(hours=24),
                updated_before=self.at,
            )
        )
        out.gauge("ats_failed_runs_24h", failed)

    # -- helpers --------------------------------------------------------------------------
    def _get_instance(self) -> Any:
        if self._instance is None and self.instance_factory is not None:
            self._instance = self.instance_factory()
        return self._instance

    def _exporter_families(self) -> list[Metric]:
        errors = CounterMetricFamily(
            "ats_exporter_scrape_errors", METRICS["ats_exporter_scrape_errors"], labels=["section"]
        )
        for section, count in self.errors.items():
            errors.add_metric([section], count)
        duration = GaugeMetricFamily(
            "ats_exporter_last_scrape_duration_seconds",
            METRICS["ats_exporter_last_scrape_duration_seconds"],
            value=self.last_duration_s,
        )
        return [errors, duration]


def _warehouse_of(source: Any) -> Any:
    from ats_resources.settings import Settings, build_resources

    if isinstance(source, Settings):
        warehouse = build_resources(source)["warehouse"]
        from ats_resources.warehouse import DuckDBWarehouse

        if isinstance(warehouse, DuckDBWarehouse):
            warehouse = DuckDBWarehouse(path=warehouse.path, lock_timeout_s=SCRAPE_LOCK_TIMEOUT_S)
        return warehouse
    if isinstance(source, Mapping):
        return source["warehouse"]
    return source


def dagster_home_instance() -> Callable[[], Any] | None:
    """A factory of the instance at ``$DAGSTER_HOME``; None when it is not set (no pipeline)."""
    if not os.environ.get("DAGSTER_HOME"):
        return None

    def factory() -> Any:
        import dagster as dg

        return dg.DagsterInstance.get()

    return factory


def samples(collector: Any) -> list[tuple[str, dict[str, str], float]]:
    """Every sample one collection yields, as (name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in collector.collect()
        for sample in family.samples
    ]


def serve(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    *,
    collector: ATSCollector | None = None,
    settings: Any = None,
    instance_factory: Callable[[], Any] | None = None,
    cache_s: float = DEFAULT_CACHE_S,
) -> tuple[Any, threading.Thread, ATSCollector]:
    """Serve ``/metrics`` on ``host:port`` (0: any free port) from a daemon thread.

    The registry holds only the ATS collector (no process or Python metrics), so every series is
    the system's. Returns the server (``server.server_address`` has the port; ``shutdown()``
    stops it), its thread and the collector.
    """
    from prometheus_client import start_http_server

    if collector is None:
        from ats_resources.settings import Settings

        collector = ATSCollector(
            settings if settings is not None else Settings.from_env(),
            instance_factory,
            cache_s=cache_s,
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread, collector
