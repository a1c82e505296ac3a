"""The feature assets materialized with the real DuckDB warehouse: look-back, identity, analyses."""

from datetime import date

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.assets import feature_assets
from ats_assets.features.registry import catalogue_version, registry_frame
from ats_assets.market_data.assets import market_data_assets
from ats_resources.market_data import SimulatedMarketResource

SESSIONS = nyse_calendar().sessions_between(date(2024, 3, 1), date(2024, 3, 13))
TARGETS = SESSIONS[-3:]


def run(resources, instance, selection, first: date | None = None, last: date | None = None):
    tags = (
        {
            ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
        }
        if first
        else {}
    )
    result = dg.materialize(
        [*market_data_assets, *feature_assets],
        resources=resources,
        instance=instance,
        tags=tags,
        selection=selection,
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Market data and daily bars for nine sessions, then features for the last three."""
    from dataclasses import replace

    from ats_resources.settings import Settings, build_resources

    settings = replace(
        Settings.from_env({}), data_dir=tmp_path_factory.mktemp("wh"), sim_tickers=20
    )
    resources = build_resources(settings)
    resources["market_data"] = resources["options_flow_source"] = SimulatedMarketResource(
        n_tickers=20
    )
    with dg.DagsterInstance.ephemeral() as instance:
        run(resources, instance, ["group:market_data", "daily_bars"], SESSIONS[0], SESSIONS[-1])
        result = run(resources, instance, ["features"], TARGETS[0], TARGETS[-1])
        run(resources, instance, ["feature_registry", "feature_correlation", "feature_importance"])
        yield resources, instance, result


def test_features_hold_every_minute_of_every_target_session(built):
    resources, _, _ = built
    summary = resources["warehouse"].partition_summary("features")
    assert summary["session"].to_list() == TARGETS
    assert summary["rows"].to_list() == [20 * 390] * 3


def test_a_session_materialized_alone_equals_the_same_session_in_the_backfill(built):
    resources, instance, _ = built
    warehouse = resources["warehouse"]
    day = TARGETS[1]
    window = {"partition_column": "session", "start": day, "end": TARGETS[2]}
    in_backfill = warehouse.read_window("features", **window)
    run(resources, instance, ["features"], day, day)
    alone = warehouse.read_window("features", **window)
    assert_frame_equal(alone, in_backfill)


def test_features_read_their_look_back_from_earlier_partitions(built):
    resources, _, _ = built
    table = resources["warehouse"].read_window(
        "features", partition_column="session", start=TARGETS[0], end=TARGETS[1]
    )
    # the overnight gap of the first target session needs the previous session's close
    assert table["overnight_gap_1m"].null_count() == 0
    # and daily indicators need earlier daily bars
    assert table["log_return_1_1d"].null_count() == 0


def test_the_feature_asset_code_version_follows_the_catalogue():
    [features] = [a for a in feature_assets if a.key == dg.AssetKey("features")]
    assert features.code_versions_by_key[features.key] == catalogue_version()


def test_the_registry_table_lists_every_feature_column(built):
    resources, _, _ = built
    assert_frame_equal(resources["warehouse"].read_table("feature_registry"), registry_frame())


def test_correlation_and_importance_come_with_plots(built):
    resources, _, _ = built
    warehouse = resources["warehouse"]
    corr = warehouse.read_table("feature_correlation")
    assert corr.filter(pl.col("feature_a") == pl.col("feature_b"))["corr"].drop_nulls().round(
        6
    ).unique().to_list() == [1.0]
    importance = warehouse.read_table("feature_importance")
    assert importance["feature"].n_unique() == len(registry_frame())
    assert importance["ic"].drop_nulls().abs().max() <= 1.0


def test_the_latest_vectors_are_cached_after_features_materialize(built):
    resources, _, result = built
    mats = [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("features")
    ]
    assert mats[-1].materialization.metadata["cached_tickers"].value == 20
    cache = resources["feature_cache"]
    tickers = SimulatedMarketResource(n_tickers=20).universe()["ticker"].to_list()
    vectors = cache.read_latest(tickers, catalogue_version())
    assert len(vectors) == 20
    assert all(v["session"] == str(TARGETS[-1]) for v in vectors.values())
