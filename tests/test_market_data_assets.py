"""Materializing the market-data assets with the real DuckDB warehouse in a temporary folder."""

from datetime import date

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ats_assets.definitions import defs
from ats_assets.market_data.assets import market_data_assets
from ats_resources.market_data import SimulatedMarketResource

TABLES = ("raw_bars", "raw_quotes", "options_flow")


def materialize(
    resources: dict, instance: dg.DagsterInstance, first: str, last: str | None = None, **kw
):
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last or first}
    return dg.materialize(
        market_data_assets, resources=resources, instance=instance, tags=tags, **kw
    )


def row_counts(resources: dict) -> dict[str, int]:
    return {t: resources["warehouse"].stats(t).rows for t in TABLES}


def test_the_code_location_holds_the_three_market_data_assets():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(TABLES) <= keys


def test_a_partition_materializes_every_ticker_into_duckdb(resources, instance):
    result = materialize(resources, instance, "2024-03-05")
    assert result.success
    bars = resources["warehouse"].read_table("raw_bars")
    assert bars["ticker"].n_unique() >= 150
    assert bars["session"].unique().to_list() == [date(2024, 3, 5)]
    assert len(bars) == bars["ticker"].n_unique() * 390
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_rematerializing_a_partition_keeps_row_count(resources, instance):
    materialize(resources, instance, "2024-03-05")
    first = row_counts(resources)
    materialize(resources, instance, "2024-03-05")
    assert row_counts(resources) == first
    assert (
        resources["warehouse"]
        .read_table("raw_bars")
        .select(pl.struct("ticker", "ts").is_duplicated().sum())
        .item()
        == 0
    )


def test_a_range_runs_as_one_run_and_writes_each_session(resources, instance):
    result = materialize(resources, instance, "2024-11-26", "2024-12-02")
    assert result.success
    summary = resources["warehouse"].partition_summary("raw_bars")
    assert summary["session"].to_list() == [
        date(2024, 11, 26),
        date(2024, 11, 27),
        date(2024, 11, 29),
        date(2024, 12, 2),
    ]
    early = summary.filter(pl.col("session") == date(2024, 11, 29))
    assert early["rows"].item() == early["tickers"].item() * 210


def test_materialization_metadata_describes_the_partition(resources, instance):
    result = materialize(resources, instance, "2024-03-05")
    [mat] = [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("raw_bars")
    ]
    metadata = mat.materialization.metadata
    assert metadata["dagster/row_count"].value == metadata["rows_written"].value > 0
    assert metadata["tickers"].value >= 150
    assert "preview" in metadata and "first_ts" in metadata
    assert metadata["warehouse_table"].value == "raw_bars"


class CrossedQuotesMarket(SimulatedMarketResource):
    """The simulated market with one crossed quote and one out-of-session bar: a vendor's bad prints."""

    def quotes(self, symbols, start, end):
        frame = super().quotes(symbols, start, end)
        return frame.with_columns(
            bid=pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("ask") + 1.0)
            .otherwise(pl.col("bid"))
        )


def test_a_crossed_quote_fails_its_blocking_check(resources, instance):
    resources = {**resources, "market_data": CrossedQuotesMarket()}
    result = materialize(resources, instance, "2024-03-05", raise_on_error=False)
    failed = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }
    assert set(failed) == {("raw_quotes", "bid_not_above_ask")}
    assert failed[("raw_quotes", "bid_not_above_ask")].metadata["failed_rows"].value == 1
    assert failed[("raw_quotes", "bid_not_above_ask")].severity == dg.AssetCheckSeverity.ERROR


def test_every_check_is_blocking():
    for asset in market_data_assets:
        assert asset.check_specs and all(spec.blocking for spec in asset.check_specs)


@pytest.mark.parametrize("asset", market_data_assets, ids=lambda a: a.key.to_user_string())
def test_assets_use_single_run_backfills_and_the_warehouse_pool(asset):
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert asset.node_def.pool == "warehouse"
