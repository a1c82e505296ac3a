"""Feature assets: daily bars, the features table, the registry, and the analyses.

``features`` (daily) reads the raw market data of its sessions *and the look-back before them*
through partition mappings, so Dagster shows exactly which upstream partitions each feature day
depends on, and a day's values do not depend on what else is computed with it.
"""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from ats_assets.core.tables import markdown_table
from ats_assets.features import analysis
from ats_assets.features.frames import minute_frame, resample
from ats_assets.features.pipeline import (
    DAILY_HISTORY_SESSIONS,
    MINUTE_HISTORY_SESSIONS,
    compute_days,
)
from ats_assets.features.registry import catalogue, catalogue_version, registry_frame
from ats_assets.partitions import sessions_for_window, trading_day_partitions

GROUP = "features"
WAREHOUSE_POOL = "warehouse"
ANALYSIS_SESSIONS = 5  # the analyses look at the latest sessions of the features table
RAW = ("raw_bars", "raw_quotes", "raw_trades", "options_flow")


def _lookback(sessions: int) -> dg.TimeWindowPartitionMapping:
    return dg.TimeWindowPartitionMapping(
        start_offset=-sessions, allow_nonexistent_upstream_partitions=True
    )


_warehouse_table = {
    "io_manager_key": "warehouse_io_manager",
    "metadata": {"partition_column": "session"},
    "kinds": {"polars"},
}


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={name: dg.AssetIn(name) for name in RAW},
    pool=WAREHOUSE_POOL,
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description="One 1d bar per ticker and session, with the day's microstructure and options-flow totals.",
    **_warehouse_table,
)
def daily_bars(
    context: dg.AssetExecutionContext,
    raw_bars: pl.DataFrame,
    raw_quotes: pl.DataFrame,
    raw_trades: pl.DataFrame,
    options_flow: pl.DataFrame,
) -> dg.Output:
    daily = resample(minute_frame(raw_bars, raw_quotes, raw_trades, options_flow), "1d")
    daily = daily.select("session", pl.exclude("session"))
    return dg.Output(
        daily,
        metadata={
            "dagster/row_count": len(daily),
            "sessions": daily["session"].n_unique(),
            "preview": dg.MetadataValue.md(markdown_table(daily)),
        },
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        **{
            name: dg.AssetIn(name, partition_mapping=_lookback(MINUTE_HISTORY_SESSIONS))
            for name in RAW
        },
        "daily_bars": dg.AssetIn(partition_mapping=_lookback(DAILY_HISTORY_SESSIONS)),
    },
    required_resource_keys={"feature_cache"},
    pool=WAREHOUSE_POOL,
    code_version=catalogue_version(),
    # with the daemon's automation sensor on, a day's features follow its raw data
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Every feature of the registry on 1m, 5m, 15m, 1h and 1d bars, one row per ticker and "
        "1-minute bar, each timeframe joined as of the bar's completion (no look-ahead)."
    ),
    **_warehouse_table,
)
def features(
    context: dg.AssetExecutionContext,
    raw_bars: pl.DataFrame,
    raw_quotes: pl.DataFrame,
    raw_trades: pl.DataFrame,
    options_flow: pl.DataFrame,
    daily_bars: pl.DataFrame,
) -> dg.Output:
    sessions = sessions_for_window(context.partition_time_window)
    minute = minute_frame(raw_bars, raw_quotes, raw_trades, options_flow)
    table = compute_days(minute, daily_bars, sessions, catalogue())
    context.log.info(f"features for {sessions[0]} .. {sessions[-1]}: {len(table):,} rows")
    version = catalogue_version()
    cached = context.resources.feature_cache.write_latest(
        table.filter(pl.col("session") == sessions[-1]), version
    )
    columns = [c for c in table.columns if c not in ("session", "ticker", "ts")]
    null_share = table.select(pl.col(columns).null_count()).row(0)
    return dg.Output(
        table,
        metadata={
            "dagster/row_count": len(table),
            "features": len(columns),
            "sessions": len(sessions),
            "catalogue_version": version,
            "cached_tickers": cached,
            "feature_cache": context.resources.feature_cache.backend,
            "null_share": float(sum(null_share)) / max(1, len(table) * len(columns)),
            "preview": dg.MetadataValue.md(markdown_table(table.select(columns[:8]).head(5))),
        },
    )


@dg.asset(
    group_name=GROUP,
    io_manager_key="warehouse_io_manager",
    kinds={"polars"},
    code_version=catalogue_version(),
    description="Every feature column: name, family, timeframe, parameters, description, version.",
)
def feature_registry() -> dg.Output:
    registry = registry_frame()
    by_family = registry.group_by("family").len().sort("family")
    return dg.Output(
        registry,
        metadata={
            "dagster/row_count": len(registry),
            "families": dg.MetadataValue.json(dict(by_family.iter_rows())),
            "timeframes": ", ".join(registry["timeframe"].unique(maintain_order=True).to_list()),
            "catalogue_version": catalogue_version(),
            "registry": dg.MetadataValue.md(
                markdown_table(registry.drop("parameters"), max_rows=200)
            ),
        },
    )


def _latest_features(warehouse, sessions: int = ANALYSIS_SESSIONS) -> pl.DataFrame:
    summary = warehouse.partition_summary("features")
    if summary.is_empty():
        raise dg.Failure("the features table is empty: materialize features first")
    latest = summary["session"].sort().tail(sessions).to_list()
    return warehouse.read_window(
        "features", partition_column="session", start=latest[0], end=_next_day(latest[-1])
    )


def _next_day(day: date) -> date:
    return day + timedelta(days=1)


@dg.asset(
    group_name=GROUP,
    deps=[features],
    required_resource_keys={"warehouse"},
    io_manager_key="warehouse_io_manager",
    kinds={"polars"},
    description=f"Pearson correlation of every pair of features over the latest {ANALYSIS_SESSIONS} sessions.",
)
def feature_correlation(context: dg.AssetExecutionContext) -> dg.Output:
    table = _latest_features(context.resources.warehouse)
    corr = analysis.correlation(table)
    strong = corr.filter(
        (pl.col("feature_a") < pl.col("feature_b")) & (pl.col("corr").abs() > 0.95)
    )
    return dg.Output(
        corr,
        metadata={
            "dagster/row_count": len(corr),
            "sessions": table["session"].n_unique(),
            "pairs_above_0_95": len(strong),
            "heatmap": dg.MetadataValue.md(analysis.heatmap_markdown(corr)),
        },
    )


@dg.asset(
    group_name=GROUP,
    deps=[features, "raw_bars"],
    required_resource_keys={"warehouse"},
    io_manager_key="warehouse_io_manager",
    kinds={"polars"},
    description=(
        "Univariate information coefficient (Spearman) of each feature with the "
        f"{analysis.FORWARD_MINUTES}-minute forward return, over the latest sessions; "
        "model-based importances replace it once models exist."
    ),
)
def feature_importance(context: dg.AssetExecutionContext) -> dg.Output:
    warehouse = context.resources.warehouse
    table = _latest_features(warehouse)
    first, last = table["session"].min(), table["session"].max()
    bars = warehouse.read_window(
        "raw_bars", partition_column="session", start=first, end=_next_day(last)
    )
    ics = analysis.information_coefficients(table, analysis.forward_returns(bars))
    return dg.Output(
        ics,
        metadata={
            "dagster/row_count": len(ics),
            "top": dg.MetadataValue.md(markdown_table(ics, max_rows=15)),
            "chart": dg.MetadataValue.md(analysis.ic_bar_markdown(ics)),
        },
    )


feature_assets = [daily_bars, features, feature_registry, feature_correlation, feature_importance]
