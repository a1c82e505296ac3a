"""The retraining job and its weekly schedule on the trading calendar; automation conditions."""

import json
from datetime import UTC, datetime

import dagster as dg

from ats_sensors.retraining import RETRAINING_ASSETS, weekly_retraining_schedule


def _evaluate(when: datetime):
    return weekly_retraining_schedule(dg.build_schedule_context(scheduled_execution_time=when))


def test_saturday_retrains_the_week_that_just_ended_with_the_gpu_tags():
    # Saturday 2024-11-30 06:00 New York: the Thanksgiving week (4 sessions)
    request = _evaluate(datetime(2024, 11, 30, 11, 0, tzinfo=UTC))
    assert request.partition_key == "2024-11-25"
    assert request.run_key == "retrain-weekly-2024-11-25"
    k8s = json.loads(request.tags["dagster-k8s/config"])
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "4 sessions" in request.tags["ats/retraining_reason"]


def test_the_same_week_always_gets_the_same_run_key():
    first = _evaluate(datetime(2024, 12, 7, 11, 0, tzinfo=UTC))
    again = _evaluate(datetime(2024, 12, 7, 11, 0, tzinfo=UTC))
    assert first.run_key == again.run_key == "retrain-weekly-2024-12-02"


def test_the_code_location_holds_the_job_the_schedule_and_the_automation():
    from ats_assets.definitions import defs

    job = defs.resolve_job_def("retraining_job")
    assert {k.path[-1] for k in job.asset_layer.executable_asset_keys} == set(RETRAINING_ASSETS)
    assert defs.resolve_schedule_def("weekly_retraining_schedule").job_name == "retraining_job"
    graph = defs.resolve_asset_graph()
    for name in ("daily_bars", "features", "backtest_report"):
        assert graph.get(dg.AssetKey(name)).automation_condition is not None, name


def test_under_the_k8s_executor_only_the_training_steps_ask_for_a_gpu():
    from ats_sensors.retraining import run_tags

    assert "dagster-k8s/config" in run_tags("drift", env={})
    tags = run_tags("drift", env={"ATS_EXECUTOR": "k8s"})
    assert "dagster-k8s/config" not in tags and tags["ats/accelerator"] == "gpu"
