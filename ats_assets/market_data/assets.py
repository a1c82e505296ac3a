"""The raw market-data assets, one trading-day partition holding every ticker of the universe.

Each table is a multi-asset of two outputs: the clean rows (``raw_bars``) and the rows that broke
a validation rule (``raw_bars_quarantine``, with the rule names). It fetches its window session by
session, validates, and reports one blocking asset check per rule (the count of quarantined rows),
a coverage check (every session has rows) and a ``tickers_fetched`` check naming the tickers the
source failed to deliver. When more than ``max_failed_ticker_fraction`` of the universe fails, the
partition fails and nothing is written.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from ats_assets.core.calendar import nyse_calendar
from ats_assets.core.tables import markdown_table
from ats_assets.core.validation import RuleOutcome, Validated, validate
from ats_assets.market_data.specs import MARKET_DATA_SPECS, MarketDataSpec, conform
from ats_assets.partitions import sessions_for_window, trading_day_partitions

WAREHOUSE_POOL = "warehouse"
COVERAGE_CHECK = "covers_every_session"
TICKERS_CHECK = "tickers_fetched"


class MarketDataConfig(dg.Config):
    """Run configuration shared by the market-data assets."""

    max_failed_ticker_fraction: float = (
        0.05  # fail the partition above this share of failed tickers
    )


def _rule_check(spec: MarketDataSpec, outcome: RuleOutcome) -> dg.AssetCheckResult:
    metadata: dict[str, object] = {
        "quarantined_rows": outcome.failed_rows,
        "checked_rows": outcome.total_rows,
        "rule": outcome.rule.description,
        "quarantine_table": spec.quarantine,
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


def _frame_metadata(frame: pl.DataFrame, sessions: list[date]) -> dict[str, object]:
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


def fetch_window(
    spec: MarketDataSpec, source: object, symbols: list[str], sessions: list[date]
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rows of every session (in arrival order, conformed) and the tickers that failed, with why."""
    calendar = nyse_calendar()
    frames, failures = [], {}
    for day in sessions:
        session = calendar.session(day)
        fetched = getattr(source, spec.method)(symbols, session.open, session.close)
        frames.append(conform(fetched.frame, spec, day))
        for ticker, error in fetched.failures.items():
            failures.setdefault(ticker, f"{day}: {error}")
    return pl.concat(frames), failures


def build_market_data_asset(spec: MarketDataSpec) -> dg.AssetsDefinition:
    """A daily-partitioned multi-asset for ``spec``: clean rows, quarantine, blocking checks."""
    rule_names = [r.name for r in spec.rules_for(())]
    check_specs = [
        dg.AssetCheckSpec(name, asset=spec.name, blocking=True, description=rule.description)
        for name, rule in zip(rule_names, spec.rules_for(()), strict=True)
    ] + [
        dg.AssetCheckSpec(
            COVERAGE_CHECK,
            asset=spec.name,
            blocking=True,
            description="every session of the window has rows",
        ),
        dg.AssetCheckSpec(
            TICKERS_CHECK,
            asset=spec.name,
            blocking=True,
            description="the source delivered every ticker of the universe",
        ),
    ]
    shared = {
        "io_manager_key": "warehouse_io_manager",
        "metadata": {"partition_column": "session"},
        "kinds": {"polars"},
        "code_version": "2",
    }

    @dg.multi_asset(
        name=f"{spec.name}_ingest",
        outs={
            spec.name: dg.AssetOut(description=spec.description, **shared),
            spec.quarantine: dg.AssetOut(
                description=f"Rows of {spec.name} that broke a validation rule, with the rule names.",
                **shared,
            ),
        },
        group_name="market_data",
        partitions_def=trading_day_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys={"market_data", spec.source},
        check_specs=check_specs,
        pool=WAREHOUSE_POOL,
    )
    def ingest(
        context: dg.AssetExecutionContext, config: MarketDataConfig
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        sessions = sessions_for_window(context.partition_time_window)
        symbols = context.resources.market_data.universe()["ticker"].to_list()
        frame, failures = fetch_window(
            spec, getattr(context.resources, spec.source), symbols, sessions
        )
        failed_share = len(failures) / max(1, len(symbols))
        if failed_share > config.max_failed_ticker_fraction:
            raise dg.Failure(
                description=(
                    f"{spec.name}: {len(failures)} of {len(symbols)} tickers failed ({failed_share:.0%} > "
                    f"max_failed_ticker_fraction {config.max_failed_ticker_fraction:.0%}); nothing was written. "
                    f"First failure: {next(iter(failures.values()))}"
                ),
                metadata={"failed_tickers": ", ".join(sorted(failures))},
            )
        validated: Validated = validate(
            frame, spec.rules_for(symbols), bounds=nyse_calendar().bounds_frame(sessions)
        )
        per_rule = {o.rule.name: o.failed_rows for o in validated.outcomes if o.failed_rows}
        yield dg.Output(
            validated.clean,
            output_name=spec.name,
            metadata={
                **_frame_metadata(validated.clean, sessions),
                "quarantined_rows": len(validated.quarantined),
                "quarantined_by_rule": dg.MetadataValue.json(per_rule),
                "failed_tickers": ", ".join(sorted(failures)) or "none",
            },
        )
        yield dg.Output(
            validated.quarantined,
            output_name=spec.quarantine,
            metadata={
                "dagster/row_count": len(validated.quarantined),
                "by_rule": dg.MetadataValue.json(per_rule),
            },
        )
        for outcome in validated.outcomes:
            yield _rule_check(spec, outcome)
        empty = sorted(set(sessions) - set(validated.clean["session"].unique().to_list()))
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
        yield dg.AssetCheckResult(
            asset_key=spec.name,
            check_name=TICKERS_CHECK,
            passed=not failures,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "failed_tickers": ", ".join(sorted(failures)) or "none",
                "failures": dg.MetadataValue.md(
                    "\n".join(f"- **{t}**: {e}" for t, e in sorted(failures.items())) or "none"
                ),
                "universe": len(symbols),
            },
        )

    return ingest


market_data_assets = [build_market_data_asset(spec) for spec in MARKET_DATA_SPECS]
