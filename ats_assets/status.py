"""``ats status``: the system check at a glance.

Four sections, each line a fact measured now:

- **services**: the warehouse, the Dagster instance's storage, Redis (the live feature cache)
  and the metrics exporter: reachable or not (and why), or not configured; Slack and the broker:
  configured or not (they are not contacted);
- **freshness**: each partitioned asset table's latest partition and how many sessions (or
  weeks) it is behind the last completed session;
- **champion**: the model in force and when it was chosen;
- **live session**: whether one runs now (its lock is held, or a live_trading_job run is in
  progress), and the last session's result.

Nothing here writes or trades; secrets are never printed (only whether they are set).
"""

import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from ats_assets.core.calendar import nyse_calendar

DAILY = (
    "raw_bars", "raw_quotes", "raw_trades", "options_flow", "daily_bars", "features",
    "market_regime", "ensemble_weights", "live_orders", "live_trading_performance",
    "metric_history",
)  # fmt: skip
WEEKLY = (
    "training_set", "champion_model", "backtest_report", "strategy_parameters",
    "feature_importance_history",
)  # fmt: skip
EXPORTER_PORT = 9108


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # "ok" | "down" | "off" (not configured)
    detail: str

    def line(self) -> str:
        mark = {"ok": "ok  ", "down": "DOWN", "off": "--  "}[self.state]
        return f"  [{mark}] {self.name:<18} {self.detail}"


def _short(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 140 else text[:139] + "…"


def check_warehouse(warehouse) -> Check:
    try:
        tables = warehouse.tables()
    except Exception as error:  # any driver error is the finding
        return Check("warehouse", "down", f"{warehouse.location}: {_short(error)}")
    return Check("warehouse", "ok", f"{warehouse.location} ({len(tables)} tables)")


def check_instance(instance) -> Check:
    if instance is None:
        return Check("dagster instance", "off", "DAGSTER_HOME is not set (runs are not recorded)")
    storage = type(instance.run_storage).__name__
    try:
        runs = instance.get_runs_count()
    except Exception as error:
        return Check("dagster instance", "down", f"{storage}: {_short(error)}")
    return Check("dagster instance", "ok", f"{storage}, {runs} runs recorded")


def check_redis(env: Mapping[str, str]) -> Check:
    host = (env.get("REDIS_HOST") or "").strip()
    if not host:
        return Check("redis", "off", "REDIS_HOST unset: the feature cache is in process")
    port = int(env.get("REDIS_PORT") or 6379)
    try:
        import redis

        client = redis.Redis(
            host=host,
            port=port,
            db=int(env.get("REDIS_DB") or 0),
            password=env.get("REDIS_PASSWORD") or None,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        client.ping()
    except Exception as error:
        return Check("redis", "down", f"{host}:{port}: {_short(error)}")
    return Check("redis", "ok", f"{host}:{port}")


def check_exporter(env: Mapping[str, str]) -> Check:
    port = int(env.get("ATS_METRICS_PORT") or EXPORTER_PORT)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        import httpx

        response = httpx.get(url, timeout=2.0)
        response.raise_for_status()
    except Exception as error:
        return Check("metrics exporter", "down", f"{url}: {_short(error)} (start: ats metrics)")
    series = sum(1 for line in response.text.splitlines() if line.startswith("ats_"))
    return Check("metrics exporter", "ok", f"{url} ({series} ats_* samples)")


def check_slack(env: Mapping[str, str]) -> Check:
    if (env.get("SLACK_WEBHOOK_URL") or "").strip():
        return Check("slack", "ok", "incoming webhook configured (not contacted)")
    if (env.get("SLACK_BOT_TOKEN") or "").strip():
        return Check("slack", "ok", "bot token configured (not contacted)")
    return Check("slack", "off", "no SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN: alerts go to the log")


def check_broker(env: Mapping[str, str]) -> Check:
    from live.brokers.base import trading_mode

    try:
        mode = trading_mode(env)
    except ValueError as error:
        return Check("broker", "down", str(error))
    if mode.value == "simulated":
        return Check("broker", "ok", "simulated (ATS_TRADING_MODE unset or simulated)")
    keys = all((env.get(k) or "").strip() for k in ("ALPACA_API_KEY", "ALPACA_API_SECRET"))
    state = "ok" if keys else "down"
    detail = f"Alpaca {mode.value}; keys {'set' if keys else 'MISSING (ALPACA_API_KEY/SECRET)'}"
    return Check("broker", state, detail)


def last_completed_session(now: datetime | None = None) -> date:
    """The latest session whose close has passed."""
    calendar = nyse_calendar()
    now = now or datetime.now(UTC)
    day = now.date()
    while not calendar.is_session(day) or calendar.session_close(day) > now:
        day -= timedelta(days=1)
    return day


def freshness(warehouse, now: datetime | None = None) -> list[str]:
    """One line per partitioned table: latest partition and how far behind it is."""
    last = last_completed_session(now)
    calendar = nyse_calendar()
    existing = set(warehouse.tables())
    lines = []
    for table, column in [*((t, "session") for t in DAILY), *((t, "week") for t in WEEKLY)]:
        if table not in existing:
            continue
        try:
            latest = warehouse.partition_summary(table, partition_column=column)[column].max()
        except Exception as error:
            lines.append(f"  {table:<28} unreadable: {_short(error)}")
            continue
        if latest is None:
            lines.append(f"  {table:<28} empty")
            continue
        if column == "session":
            behind = len(calendar.sessions_between(latest, last)) - 1
            lag = "up to date" if behind <= 0 else f"{behind} session(s) behind {last}"
        else:
            weeks = ((last - timedelta(days=last.weekday())) - latest).days // 7
            lag = "up to date" if weeks <= 1 else f"{weeks - 1} week(s) behind"
        lines.append(f"  {table:<28} latest {latest}  {lag}")
    return lines or ["  nothing materialized yet: run `make demo`"]


def champion_line(warehouse, today: date | None = None) -> str:
    from ats_assets.models.serving import champion_as_of

    today = today or date.today()
    try:
        champion = champion_as_of(warehouse, today + timedelta(days=7))
    except Exception as error:
        return f"  unreadable: {_short(error)}"
    if champion is None:
        return "  none promoted yet (champion_model)"
    return (
        f"  {champion['asset']}/{champion['partition']} @ {champion['model_version']} "
        f"(chosen by champion_model {champion['week']}; sha256 {champion['sha256'][:12]}…)"
    )


def live_lines(data_dir: Path, instance, warehouse) -> list[str]:
    holders = []
    for path in sorted(Path(data_dir).glob("live-session-*.lock")):
        with open(path, "a+") as handle:
            try:  # a shared probe: a session starting meanwhile still gets its lock (it retries)
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            except BlockingIOError:
                handle.seek(0)
                holders.append(handle.read().strip() or "a process")
    runs = []
    if instance is not None:
        import dagster as dg

        runs = instance.get_runs(
            dg.RunsFilter(job_name="live_trading_job", statuses=[dg.DagsterRunStatus.STARTED])
        )
    lines = []
    if holders or runs:
        for holder in holders:
            lines.append(f"  running: session lock held ({holder})")
        for run in runs:
            partition = run.tags.get("dagster/partition", "?")
            lines.append(f"  running: live_trading_job run {run.run_id[:8]} for {partition}")
    else:
        lines.append("  no live session running")
    if "live_trading_performance" in warehouse.tables():
        perf = warehouse.read_table("live_trading_performance")
        if perf.height:
            last = perf["session"].max()
            day = perf.filter(pl.col("session") == last)
            lines.append(
                f"  last session {last}: {day.height} round trips, P&L ${day['pnl'].sum():,.2f}"
            )
    return lines


def report(settings, instance=None, now: datetime | None = None) -> tuple[str, bool]:
    """The status text and whether every configured service is reachable."""
    from ats_resources.settings import build_resources

    env = settings.env if settings.env is not None else os.environ
    warehouse = build_resources(settings)["warehouse"]
    checks = [
        check_warehouse(warehouse),
        check_instance(instance),
        check_redis(env),
        check_exporter(env),
        check_slack(env),
        check_broker(env),
    ]
    lines = ["services"] + [c.line() for c in checks]
    healthy = all(c.state != "down" for c in checks if c.name != "metrics exporter")
    if checks[0].state == "ok":
        lines += ["", "freshness (latest partition)", *freshness(warehouse, now)]
        lines += ["", "champion model", champion_line(warehouse, (now or datetime.now(UTC)).date())]
        lines += ["", "live trading", *live_lines(settings.data_dir, instance, warehouse)]
    return "\n".join(lines), healthy
