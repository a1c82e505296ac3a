"""The ``ats`` command: run the pipeline over a window and summarise the warehouse.

``ats demo`` materializes every asset for a window of trading days into the Dagster instance at
``$DAGSTER_HOME`` (so the runs show in the UI) and prints a summary. Mistakes in settings or dates
end in one line on stderr that says what to fix, and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date

from ats_assets.core.calendar import CalendarError, nyse_calendar, parse_day
from ats_assets.features.pipeline import DAILY_HISTORY_SESSIONS
from ats_assets.market_data.specs import MARKET_DATA_SPECS
from ats_resources.settings import ConfigError, Settings
from ats_resources.warehouse.base import WarehouseError

# The documented default window: 25 sessions spanning the end of daylight saving time
# (2024-11-03), the Thanksgiving holiday (2024-11-28) and its early close (2024-11-29).
DEMO_START = date(2024, 10, 28)
DEMO_END = date(2024, 12, 2)
# Market data and daily bars start this many sessions earlier: the features' daily look-back.
DEMO_LEAD_IN = DAILY_HISTORY_SESSIONS
# Models are trained for the complete week(s) before the window's last complete week, which is
# their out-of-sample backtest (the demo's holds Thanksgiving and its early close). The sequence
# models get a shorter time budget than their defaults so the demo stays within minutes on two CPU cores.
DEMO_WEEKS = 1
DEMO_NEURAL = {"epochs": 4, "max_seconds": 40.0}
# market_regime (regime, declared changes, drift against the champion) for the last sessions
REGIME_SESSIONS = 5


class UsageError(ValueError):
    """A command-line mistake, reported in one line."""


def _session_arg(text: str, what: str) -> date:
    day = parse_day(text)
    calendar = nyse_calendar()
    if not calendar.is_session(day):
        before = calendar.previous_session(day)
        raise UsageError(
            f"--{what} {day} is not a trading session (weekend or exchange holiday); "
            f"use a session such as {before}"
        )
    return day


def _report(result) -> bool:
    """Print a run's failed steps and checks, one line each; True when all went well."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            message = event.step_failure_data.error.message.strip().splitlines()[0]
            print(f"error: step {event.step_key} failed: {message}", file=sys.stderr)
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for evaluation in failed_checks:
        print(
            f"error: check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed",
            file=sys.stderr,
        )
    print(f"  run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    return result.success and not failed_checks


def complete_weeks(start: date, end: date) -> list[str]:
    """Keys of the weekly model partitions whose sessions all lie in ``start..end``."""
    from ats_assets.partitions import sessions_for_window, weekly_partitions

    keys = []
    for key in weekly_partitions.get_partition_keys():
        window = weekly_partitions.time_window_for_partition_key(key)
        sessions = sessions_for_window(window)
        if window.start.date() > end:
            break
        if sessions and sessions[0] >= start and sessions[-1] <= end:
            keys.append(key)
    return keys


def model_weeks(start: date, end: date, weeks: int) -> list[tuple[str, bool]]:
    """The ``weeks`` model weeks to train, each with whether its backtest week is in the window.

    A model week is backtested on the following week, so when the window allows it the models are
    trained for the weeks before the last complete one, which is then their out-of-sample test."""
    complete = complete_weeks(start, end)
    if not weeks or not complete:
        return []
    if len(complete) > weeks:
        return [(week, True) for week in complete[-weeks - 1 : -1]]
    return [(week, False) for week in complete[-weeks:]]


def run_window(start: date, end: date, lead_in: int = 0, weeks: int = DEMO_WEEKS) -> bool:
    """Materialize every asset for sessions ``start..end``; True when every run succeeded.

    Market data and daily bars are also materialized for the ``lead_in`` sessions before
    ``start``: the look-back the features of ``start`` read. Three runs, as Dagster records them:
    the daily market data, the daily features, then the unpartitioned registry and analyses.
    """
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ats_assets.definitions import defs
    from ats_assets.features.frames import sessions_before

    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    else:
        print("note: DAGSTER_HOME is not set; this run is not recorded for the UI", file=sys.stderr)
        instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    market = {k for k in keys if graph.get(k).group_name == "market_data"} | {
        dg.AssetKey("daily_bars")
    }
    daily_features = {dg.AssetKey("features")}
    models = {k for k in keys if graph.get(k).group_name == "models"}
    weekly = models - {k for k in models if graph.get(k).partitions_def is None}
    unpartitioned = {k for k in keys if graph.get(k).partitions_def is None}
    first = sessions_before(start, lead_in)[0] if lead_in else start
    steps: list[tuple[str, set, str | None, str | None]] = [
        (f"market data and daily bars, {first} .. {end}", market, str(first), str(end)),
        (f"features, {start} .. {end}", daily_features, str(start), str(end)),
    ]
    backtest = {k for k in keys if graph.get(k).group_name == "backtest"}
    for week, tested in model_weeks(start, end, weeks):
        if tested:
            label = f"training set and models, week of {week}; backtest on the week after"
            steps.append((label, weekly | backtest, week, week))
        else:
            steps.append((f"training set and models, week of {week}", weekly, week, week))
    from ats_assets.regime.assets import MIN_SESSIONS

    regime = {k for k in keys if graph.get(k).group_name == "regime"}
    window = nyse_calendar().sessions_between(start, end)
    recent = window[-REGIME_SESSIONS:]
    # the detector needs MIN_SESSIONS of daily bars before the first regime session
    if regime and recent and lead_in + len(window) - len(recent) >= MIN_SESSIONS:
        label = f"market regime and drift, {recent[0]} .. {recent[-1]}"
        steps.append((label, regime, str(recent[0]), str(recent[-1])))
    steps.append(("registries and analyses", unpartitioned, None, None))
    run_config = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "ops": {name: {"config": DEMO_NEURAL} for name in ("lstm_model", "attention_model")},
    }
    ok = True
    with instance:
        for label, selection, since, until in steps:
            print(f"- {label}")
            tags = (
                {ASSET_PARTITION_RANGE_START_TAG: since, ASSET_PARTITION_RANGE_END_TAG: until}
                if since
                else {}
            )
            config = run_config if weekly <= selection else {"loggers": run_config["loggers"]}
            result = job.execute_in_process(
                run_config=config,
                instance=instance,
                tags=tags,
                asset_selection=sorted(selection, key=str),
                raise_on_error=False,
            )
            ok = _report(result) and ok
            if not result.success:
                break
    return ok


def summary(settings: Settings, start: date | None = None, end: date | None = None) -> str:
    """A short table of what the warehouse holds (for sessions ``start..end``, when given)."""
    import polars as pl

    from ats_resources.settings import build_resources

    warehouse = build_resources(settings)["warehouse"]
    existing = warehouse.tables()
    header = (
        f"{'asset':<14}{'rows':>12}{'sessions':>10}{'min tickers/session':>21}{'quarantined':>13}"
        "  time range (UTC)"
    )
    lines = [header, "-" * len(header)]
    for spec in MARKET_DATA_SPECS:
        if spec.name not in existing:
            lines.append(f"{spec.name:<14}{'not materialized':>12}")
            continue
        per_session = warehouse.partition_summary(spec.name)
        quarantined = (
            warehouse.partition_summary(spec.quarantine)
            if spec.quarantine in existing
            else per_session.clear()
        )
        if start and end:
            per_session = per_session.filter(pl.col("session").is_between(start, end))
            quarantined = quarantined.filter(pl.col("session").is_between(start, end))
        lines.append(
            f"{spec.name:<14}{per_session['rows'].sum():>12,}{len(per_session):>10}"
            f"{per_session['tickers'].min() or 0:>21}{quarantined['rows'].sum():>13,}"
            f"  {per_session['first_ts'].min()} .. {per_session['last_ts'].max()}"
        )
    for table in ("daily_bars", "features"):
        if table in existing:
            per_session = warehouse.partition_summary(table)
            if start and end:
                per_session = per_session.filter(pl.col("session").is_between(start, end))
            lines.append(
                f"{table:<14}{per_session['rows'].sum():>12,}{len(per_session):>10}"
                f"{per_session['tickers'].min() or 0:>21}{'':>13}"
                f"  {per_session['first_ts'].min()} .. {per_session['last_ts'].max()}"
            )
    if "feature_registry" in existing:
        registry = warehouse.read_table("feature_registry")
        lines.append(
            f"feature_registry: {len(registry)} feature columns in {registry['family'].n_unique()} families "
            f"on {registry['timeframe'].n_unique()} timeframes"
        )
    if "model_registry" in existing:
        registry = warehouse.read_table("model_registry")
        lines.append(
            f"model_registry: {len(registry)} stored models "
            f"({', '.join(sorted(set(registry['asset'].to_list())))})"
        )
    if "champion_model" in existing:
        latest = warehouse.read_table("champion_model").sort("week").tail(1).row(0, named=True)
        lines.append(
            f"champion_model (week of {latest['week']}): {latest['asset']}/{latest['partition']} "
            f"@{latest['model_version']} - {latest['reason']}"
        )
    if "market_regime" in existing:
        regimes = warehouse.read_table("market_regime").sort("session")
        latest = regimes.row(-1, named=True)
        drift = (
            f"; champion {latest['champion']}: PSI-drifted share {latest['psi_share_drifted']:.2f}, "
            f"IC {latest['realized_ic']:+.3f} vs {latest['validation_ic']:+.3f} in validation"
            if latest.get("champion")
            else ""
        )
        lines.append(
            f"market_regime {latest['session']}: {latest['regime']} "
            f"(p={latest['probability']:.2f}), {int(regimes['change'].sum())} declared "
            f"change(s) in {len(regimes)} sessions{drift}"
        )
    if "backtest_report" in existing:
        trades = warehouse.read_table("backtest_report")
        for week, group in trades.group_by("week", maintain_order=True):
            report = settings.data_dir / "reports" / "backtest_report" / f"{week[0]}.html"
            lines.append(
                f"backtest_report (model week of {week[0]}, traded the week after): "
                f"{len(group)} trades, P&L ${group['pnl'].sum():,.2f} after "
                f"${group['fees'].sum():,.2f} fees; report: {report}"
            )
    lines.append(f"data lives in: {warehouse.location} ({settings.warehouse}; one table per asset)")
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    start, end = _session_arg(args.start, "start"), _session_arg(args.end, "end")
    if end < start:
        raise UsageError(f"--end {end} is before --start {start}; swap them")
    sessions = nyse_calendar().sessions_between(start, end)
    print(
        f"materializing every asset for {len(sessions)} sessions {start} .. {end} "
        f"(market data: {settings.market_data}, warehouse: {settings.warehouse})"
    )
    began = time.perf_counter()
    ok = run_window(start, end, lead_in=args.lead_in, weeks=args.weeks)
    print(f"took {time.perf_counter() - began:.1f} s\n")
    print(summary(settings, start, end))
    print("\nopen the UI: make dev, then http://127.0.0.1:3000 (Assets -> market_data)")
    return 0 if ok else 1


def default_live_day(warehouse) -> date:
    """The latest session with features that a champion chosen in an earlier week can trade."""
    from datetime import timedelta

    import polars as pl

    tables = warehouse.tables()
    if "features" not in tables or "champion_model" not in tables:
        raise UsageError("nothing to replay yet: run `make demo` first (features and a champion)")
    champions = warehouse.read_table("champion_model").filter(pl.col("partition").is_not_null())
    if champions.is_empty():
        raise UsageError(
            "no champion model has been promoted (see champion_model's reason): nothing to trade"
        )
    first_week = champions["week"].min()
    days = [
        d
        for d in warehouse.partition_summary("features")["session"].to_list()
        if d - timedelta(days=d.weekday()) > first_week
    ]
    if not days:
        raise UsageError(f"no features after the first champion's week ({first_week})")
    return max(days)


def live_replay(day: date | None, speed: float, settings: Settings) -> int:
    """Run live_trading_job on ``day`` (replay, simulated broker) and print what it did."""
    from datetime import timedelta

    import dagster as dg
    import polars as pl

    from ats_assets.core.tables import markdown_table
    from ats_resources.settings import build_resources
    from live.location.definitions import defs

    warehouse = build_resources(settings)["warehouse"]
    day = day or default_live_day(warehouse)
    if os.environ.get("DAGSTER_HOME"):
        instance = dg.DagsterInstance.get()
    else:
        print("note: DAGSTER_HOME is not set; this run is not recorded for the UI", file=sys.stderr)
        instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("live_trading_job")
    print(f"live_trading_job: replay of {day} at speed {speed or 'max'} (simulated broker)")
    with instance:
        result = job.execute_in_process(
            run_config={
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                "ops": {"live_trading_session": {"config": {"speed": speed}}},
            },
            instance=instance,
            partition_key=day.isoformat(),
            raise_on_error=False,
        )
    if not _report(result):
        return 1
    meta = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    orders_meta = meta["live_orders"]
    span = {"partition_column": "session", "start": day, "end": day + timedelta(days=1)}
    orders = warehouse.read_window("live_orders", **span)
    fills = warehouse.read_window("live_fills", **span)
    trades = warehouse.read_window("live_trading_performance", **span)
    perf = meta["live_trading_performance"]
    print(f"run {result.run_id} (open it in the UI: make dev, then Runs)")
    print(
        f"champion: {orders_meta['champion'].value} from "
        f"{orders_meta['champion_materialization'].value}"
    )
    by_status = orders.group_by("status").len().sort("status")
    counts = ", ".join(f"{n} {s}" for s, n in by_status.iter_rows())
    print(f"\norders: {orders.height} ({counts or 'none'})")
    if orders.height:
        shown = orders.select(
            "decided_at", "ticker", "side", "qty", "order_type", "intent", "status"
        ).sort("decided_at")
        print(markdown_table(shown, max_rows=12))
    print(f"\nfills: {fills.height}")
    if fills.height:
        shown = fills.select(
            "ts", "ticker", "side", "qty", pl.col("price").round(4), "fees", "intent"
        ).sort("ts")
        print(markdown_table(shown, max_rows=12))
    pnl = float(trades["pnl"].sum()) if trades.height else 0.0
    fees = float(fills["fees"].sum()) if fills.height else 0.0
    print(
        f"\nP&L: ${pnl:,.2f} over {trades.height} round trips, after ${fees:,.2f} fees; "
        f"slippage {perf['slippage_arrival_bps'].value:.2f} bp vs arrival, "
        f"{perf['slippage_vwap_bps'].value:.2f} bp vs VWAP; "
        f"bar-to-orders latency p99 {orders_meta['latency_p99_ms'].value:.2f} ms"
    )
    if trades.height:
        by_ticker = trades.group_by("ticker").agg(pl.col("pnl").sum().round(2)).sort("pnl")
        print("largest losses by ticker:")
        print(markdown_table(by_ticker.head(5), max_rows=5))
    return 0


def _live(args: argparse.Namespace) -> int:
    day = _session_arg(args.day, "day") if args.day else None
    if args.speed < 0:
        raise UsageError(f"--speed {args.speed}: must be >= 0 (0 = as fast as possible)")
    return live_replay(day, args.speed, Settings.from_env())


def _summary(args: argparse.Namespace) -> int:
    print(summary(Settings.from_env()))
    return 0


def _metrics(args: argparse.Namespace) -> int:
    """Serve the Prometheus metrics until interrupted (Ctrl-C)."""
    from ats_resources.metrics import dagster_home_instance, serve

    settings = Settings.from_env()
    factory = dagster_home_instance()
    if factory is None:
        print("note: DAGSTER_HOME is not set; no pipeline metrics (runs, assets)", file=sys.stderr)
    try:
        server, thread, _ = serve(args.port, args.host, settings=settings, instance_factory=factory)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); "
            "choose another --port or stop the process using it"
        ) from None
    host, port = server.server_address[:2]
    print(f"serving ATS metrics on http://{host}:{port}/metrics (Ctrl-C stops)", flush=True)
    try:
        while thread.is_alive():
            thread.join(1.0)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def _add_metrics_parser(sub) -> None:
    metrics = sub.add_parser(
        "metrics", help="serve Prometheus metrics (trading, models, pipeline) on /metrics"
    )
    raw = os.environ.get("ATS_METRICS_PORT", "").strip()
    default_port = int(raw) if raw.isdigit() else 9108
    metrics.add_argument(
        "--port", type=int, default=default_port, help=f"port (default {default_port}; 0: any)"
    )
    metrics.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    metrics.set_defaults(handler=_metrics)


def _status(args: argparse.Namespace) -> int:
    """Print the system check; exit 1 when a configured service is unreachable."""
    import dagster as dg

    from ats_assets.status import report

    settings = Settings.from_env()
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            text, healthy = report(settings, instance)
    else:
        text, healthy = report(settings, None)
    print(text)
    return 0 if healthy else 1


def _add_status_parser(sub) -> None:
    sub.add_parser(
        "status",
        help="which services are reachable, how fresh each asset is, the champion, live trading",
    ).set_defaults(handler=_status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ats", description="ATS: autonomous trading system on Dagster"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="materialize every asset for a window of sessions and print a summary"
    )
    demo.add_argument(
        "--weeks",
        type=int,
        default=DEMO_WEEKS,
        help=(
            f"train and backtest models for this many complete weeks (default {DEMO_WEEKS}; "
            "0 skips): the weeks before the window's last complete week, the backtests' week"
        ),
    )
    demo.add_argument(
        "--start", default=DEMO_START.isoformat(), help=f"first session (default {DEMO_START})"
    )
    demo.add_argument(
        "--end", default=DEMO_END.isoformat(), help=f"last session (default {DEMO_END})"
    )
    demo.add_argument(
        "--lead-in",
        type=int,
        default=DEMO_LEAD_IN,
        help=f"sessions of market data before --start for the features' look-back (default {DEMO_LEAD_IN})",
    )
    demo.set_defaults(handler=_demo)
    live = sub.add_parser(
        "live",
        help="replay a trading day through live_trading_job (simulated broker) and print "
        "its orders, fills and P&L",
    )
    live.add_argument(
        "--day", help="the session to replay (default: the latest one a champion can trade)"
    )
    live.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="market minutes per second (default 0: as fast as possible; 60: a minute a second)",
    )
    live.set_defaults(handler=_live)
    sub.add_parser("summary", help="what the warehouse holds").set_defaults(handler=_summary)
    _add_metrics_parser(sub)
    _add_status_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, CalendarError, UsageError, WarehouseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
