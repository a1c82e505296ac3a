"""market_regime on a window with a planted regime change, and regime_drift_sensor reading it."""

import json
from dataclasses import replace
from datetime import date

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.assets import feature_assets
from ats_assets.market_data.assets import market_data_assets
from ats_assets.regime.assets import regime_assets
from ats_resources.market_data import SimulatedMarketResource
from ats_sensors.regime import regime_drift_sensor
from ats_sensors.retraining import RETRAINING_ASSETS, retraining_job

pytestmark = pytest.mark.slow

# The simulated world (seed 7, 40 names) leaves calm_trending on 2024-04-24; the detector, fitted
# on the 32 sessions up to 2024-04-25, declares the change on the 25th (a delay of one session).
CHANGE = date(2024, 4, 25)
SESSIONS = nyse_calendar().sessions_between(date(2024, 3, 11), CHANGE)
ASSETS = [*market_data_assets, *feature_assets, *regime_assets]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ats_resources.settings import Settings, build_resources

    settings = replace(
        Settings.from_env({}), data_dir=tmp_path_factory.mktemp("regime"), sim_tickers=40
    )
    resources = build_resources(settings)
    resources["market_data"] = resources["options_flow_source"] = SimulatedMarketResource(
        n_tickers=40
    )
    instance = dg.DagsterInstance.ephemeral()
    range_tags = {
        ASSET_PARTITION_RANGE_START_TAG: str(SESSIONS[0]),
        ASSET_PARTITION_RANGE_END_TAG: str(SESSIONS[-1]),
    }
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        tags=range_tags,
        selection=["group:market_data", "daily_bars"],
    )
    assert result.success
    yield resources, instance
    instance.dispose()


def _regime(world, day: date):
    resources, instance = world
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=instance,
        selection=["market_regime"],
        partition_key=str(day),
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def _evaluate(world, cursor=None):
    from ats_assets.definitions import defs

    resources, instance = world
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources={"notifier": resources["notifier"]},
    )
    return regime_drift_sensor.evaluate_tick(context), context


def test_the_day_before_the_change_is_skipped_with_the_statistic_and_threshold(world):
    metadata = _regime(world, SESSIONS[-2])
    assert metadata["change"].value is False
    result, _ = _evaluate(world)
    assert not result.run_requests
    assert "no regime change declared" in result.skip_message
    assert "no champion yet" in result.skip_message


def test_a_declared_change_requests_one_gpu_retraining_run_and_only_once(world):
    metadata = _regime(world, CHANGE)
    assert metadata["change"].value is True
    assert metadata["declared_regime"].value != "calm_trending"
    assert "data:image/png;base64," in metadata["regime_probabilities"].value

    first, _ = _evaluate(world)
    [request] = first.run_requests
    assert request.run_key == f"drift-{CHANGE}-regime"
    # Thursday 2024-04-25: the last complete model week is the week of 2024-04-15
    assert request.partition_key == "2024-04-15"
    k8s = json.loads(request.tags["dagster-k8s/config"])
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "regime changed calm_trending" in request.tags["ats/retraining_reason"]
    assert regime_drift_sensor.job_name == retraining_job.name
    assert set(retraining_job.selection.resolve(_graph())) == {
        dg.AssetKey(name) for name in RETRAINING_ASSETS
    }

    again, _ = _evaluate(world, cursor=first.cursor)
    assert not again.run_requests
    assert "already evaluated" in again.skip_message


def _graph():
    from ats_assets.definitions import defs

    return defs.resolve_asset_graph()
