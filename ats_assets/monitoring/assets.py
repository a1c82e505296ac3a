"""``metric_history``: the metrics the Prometheus exporter serves, stored once a day.

Prometheus keeps weeks; the warehouse keeps everything. Each trading-day partition holds one row
per sample of ``ats_resources.metrics.ATSCollector`` (session, ts, metric, labels as JSON, value),
read as the system stood at the last second of that session's New York day (or now, when that is still
to come), so a backfill of past days records their state then, not today's: that session's live
tables, the champion in force and the regime of that day, and only materializations and runs
that existed by then. The exporter's own health series are left out: they describe a scrape.
"""

import json
from datetime import UTC, date, datetime, time

import dagster as dg
import polars as pl

from ats_assets.partitions import sessions_for_window, trading_day_partitions

GROUP = "monitoring"
SCHEMA = {
    "session": pl.Date,
    "ts": pl.Datetime("us", "UTC"),
    "metric": pl.Utf8,
    "labels": pl.Utf8,  # JSON object, keys sorted; "{}" for a series without labels
    "value": pl.Float64,
}
# Plotted over the stored history in the metadata (series without labels)
PLOTTED = (
    "ats_live_pnl_dollars",
    "ats_live_equity_dollars",
    "ats_model_psi_drifted_share",
    "ats_model_realized_ic",
    "ats_failed_runs_24h",
)


def collection_time(day: date, now: datetime) -> datetime:
    """When session ``day``'s metrics are read: the last second of its New York day, or ``now``
    when that has not come yet (UTC)."""
    from ats_resources.metrics import NEW_YORK

    end = datetime.combine(day, time(23, 59, 59), tzinfo=NEW_YORK).astimezone(UTC)
    return min(now, end)


def history_rows(day: date, at: datetime, samples: list[tuple[str, dict, float]]) -> pl.DataFrame:
    """One row per sample, without the exporter's own series."""
    rows = [
        (day, at, name, json.dumps(labels, sort_keys=True), value)
        for name, labels, value in samples
        if not name.startswith("ats_exporter_")
    ]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def history_plot(history: pl.DataFrame) -> str:
    """Each of ``PLOTTED`` (that has data) by session, one panel each (Markdown PNG)."""
    import matplotlib

    from ats_assets.features.analysis import _png_markdown

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        (name, history.filter((pl.col("metric") == name) & (pl.col("labels") == "{}")))
        for name in PLOTTED
    ]
    series = [(name, frame.sort("session")) for name, frame in series if frame.height]
    if not series:
        return "no plotted series yet"
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 1.9 * len(series)), sharex=True)
    for ax, (name, frame) in zip(list(getattr(axes, "flat", [axes])), series, strict=True):
        ax.plot(frame["session"].to_list(), frame["value"].to_list(), marker=".", linewidth=1)
        ax.set_title(name, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png_markdown(fig)


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    required_resource_keys={"warehouse"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "session"},
    kinds={"polars"},
    code_version="1",
    description=(
        "The Prometheus exporter's metrics (live P&L, equity, exposure, orders, kill switch; "
        "champion, drift; asset freshness, runs) as of each session's day, one row per sample."
    ),
)
def metric_history(context: dg.AssetExecutionContext) -> dg.Output:
    from ats_assets.core.tables import markdown_table
    from ats_resources.metrics import ATSCollector, samples

    warehouse = context.resources.warehouse
    now = datetime.now(UTC)
    frames = []
    for day in sessions_for_window(context.partition_time_window):
        at = collection_time(day, now)
        collector = ATSCollector(warehouse, lambda: context.instance, cache_s=0.0, at=at)
        collected = samples(collector)
        if collector.last_errors:
            failed = "; ".join(f"{k}: {v}" for k, v in collector.last_errors.items())
            raise dg.Failure(f"metric_history {day}: sections could not be read ({failed})")
        frames.append(history_rows(day, at, collected))
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=SCHEMA)
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date()
    history = frame
    if "metric_history" in warehouse.tables():
        stored = warehouse.read_table("metric_history").filter(
            pl.col("metric").is_in(PLOTTED) & ~pl.col("session").is_between(first, last, "left")
        )
        history = pl.concat([stored.select(list(SCHEMA)), frame])
    latest = frame.filter(pl.col("session") == frame["session"].max()) if frame.height else frame
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": frame.height,
            "sessions": frame["session"].n_unique() if frame.height else 0,
            "metrics": frame["metric"].n_unique() if frame.height else 0,
            "collected_at": str(frame["ts"].max()) if frame.height else "",
            "latest": dg.MetadataValue.md(
                markdown_table(latest.select("metric", "labels", "value"), max_rows=60)
            ),
            "history": dg.MetadataValue.md(history_plot(history)),
        },
    )


monitoring_assets = [metric_history]
