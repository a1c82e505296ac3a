"""The raw market-data assets, one trading-day partition holding every ticker of the universe.

Each asset fetches its window session by session from its source, conforms the columns, and
reports one blocking asset check per validity rule plus a coverage check (every session present).
"""

import warnings
from collections.abc import Iterator

import dagster as dg
import polars as pl

from ats_assets.core.calendar import nyse_calendar
from ats_assets.core.tables import markdown_table
from ats_assets.core.validation import RuleOutcome, evaluate
from ats_assets.market_data.specs import MARKET_DATA_SPECS, MarketDataSpec, conform
from ats_assets.partitions import sessions_for_window, trading_day_partitions

WAREHOUSE_POOL = "warehouse"
COVERAGE_CHECK = "covers_every_session"


def _check_result(spec: MarketDataSpec, outcome: RuleOutcome) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        "failed_rows": outcome.failed_rows,
        "total_rows": outcome.total_rows,
        "rule": outcome.rule.description,
    }
    if not outcome.passed:
        metadata["sample"] = dg.MetadataValue.md(markdown_table(outcome.sample))
    return dg.AssetCheckResult(
        asset_key=spec.name,
        check_name=outcome.rule.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _materialization_metadata(
    frame: pl.DataFrame, spec: MarketDataSpec, sessions: list
) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/row_count": len(frame),
        "tickers": frame["ticker"].n_unique(),
        "sessions": len(sessions),
        "first_session": str(sessions[0]),
        "last_session": str(sessions[-1]),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
        ),
    }
    if len(frame):
        metadata["first_ts"] = frame["ts"].min().isoformat()
        metadata["last_ts"] = frame["ts"].max().isoformat()
        metadata["preview"] = dg.MetadataValue.md(markdown_table(frame))
    return metadata


def build_market_data_asset(spec: MarketDataSpec) -> dg.AssetsDefinition:
    """A daily-partitioned asset for ``spec``, with its blocking validity checks."""
    check_specs = [
        dg.AssetCheckSpec(rule.name, asset=spec.name, blocking=True, description=rule.description)
        for rule in spec.rules
    ] + [
        dg.AssetCheckSpec(
            COVERAGE_CHECK,
            asset=spec.name,
            blocking=True,
            description="every session of the window has rows",
        )
    ]

    @dg.asset(
        name=spec.name,
        description=spec.description,
        group_name="market_data",
        partitions_def=trading_day_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="warehouse_io_manager",
        required_resource_keys={"market_data", spec.source},
        check_specs=check_specs,
        metadata={"partition_column": "session"},
        kinds={"polars"},
        pool=WAREHOUSE_POOL,
        code_version="1",
    )
    def market_data_asset(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        calendar = nyse_calendar()
        sessions = sessions_for_window(context.partition_time_window)
        symbols = context.resources.market_data.universe()["ticker"].to_list()
        source = getattr(context.resources, spec.source)
        frames = []
        for day in sessions:
            s = calendar.session(day)
            raw = getattr(source, spec.method)(symbols, s.open, s.close)
            frames.append(conform(raw, spec, day))
            context.log.debug(f"{spec.name} {day}: {len(raw)} rows")
        frame = pl.concat(frames).sort("ticker", "ts")
        outcomes = evaluate(frame, spec.rules, bounds=calendar.bounds_frame(sessions))

        yield dg.Output(frame, metadata=_materialization_metadata(frame, spec, sessions))
        for outcome in outcomes:
            yield _check_result(spec, outcome)
        empty = sorted(set(sessions) - set(frame["session"].unique().to_list()))
        yield dg.AssetCheckResult(
            asset_key=spec.name,
            check_name=COVERAGE_CHECK,
            passed=not empty,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "sessions": len(sessions),
                "sessions_without_rows": ", ".join(map(str, empty)) or "none",
            },
        )

    return market_data_asset


with warnings.catch_warnings():
    # BackfillPolicy is marked beta; single-run backfills are what the CLI's --partition-range needs.
    warnings.simplefilter("ignore", dg.BetaWarning)
    raw_bars, raw_quotes, options_flow = (
        build_market_data_asset(spec) for spec in MARKET_DATA_SPECS
    )
market_data_assets = [raw_bars, raw_quotes, options_flow]
