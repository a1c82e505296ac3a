"""The ATS code location: every asset, check and resource, assembled in one place.

Loading it must stay light (no torch, no xgboost): tests/test_definitions.py checks this.
"""

from __future__ import annotations

import dagster as dg

from ats_assets.adaptation.assets import adaptation_assets
from ats_assets.backtest.assets import backtest_assets
from ats_assets.features.assets import feature_assets
from ats_assets.market_data.assets import market_data_assets
from ats_assets.models.assets import model_assets
from ats_assets.monitoring.assets import monitoring_assets
from ats_assets.regime.assets import regime_assets
from ats_resources.settings import Settings, build_resources
from ats_sensors.alerts import run_failure_alert_sensor
from ats_sensors.regime import regime_drift_sensor
from ats_sensors.retraining import retraining_job, weekly_retraining_schedule
from ats_sensors.schedules import (
    daily_market_data_schedule,
    daily_pipeline_job,
    metric_history_schedule,
    monitoring_job,
)

settings = Settings.from_env()


def executor() -> dg.ExecutorDefinition:
    """``ATS_EXECUTOR``: ``in_process`` (default: one process per run; DuckDB allows a single
    writer, and the steps are I/O-light) or ``k8s`` (Kubernetes: each step in its own pod, so the
    training steps' ``dagster-k8s/config`` tags put them on GPU nodes; needs dagster-k8s)."""
    import os

    choice = os.environ.get("ATS_EXECUTOR", "in_process").strip().lower() or "in_process"
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"ATS_EXECUTOR={choice!r}: expected in_process or k8s")


defs = dg.Definitions(
    assets=[
        *market_data_assets,
        *feature_assets,
        *model_assets,
        *backtest_assets,
        *regime_assets,
        *adaptation_assets,
        *monitoring_assets,
    ],
    jobs=[daily_pipeline_job, retraining_job, monitoring_job],
    schedules=[daily_market_data_schedule, weekly_retraining_schedule, metric_history_schedule],
    sensors=[run_failure_alert_sensor, regime_drift_sensor],
    resources=build_resources(settings),
    executor=executor(),
)
