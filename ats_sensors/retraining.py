"""Retraining: the job that retrains one model week, and its weekly schedule on the calendar.

``retraining_job`` materializes a week's training set, the three models, the ensemble and the
champion decision (the training steps carry the GPU tags and pool). The schedule runs it every
Saturday 06:00 New York time for the week that just ended, when that week had sessions; the
drift sensor (``regime_drift_sensor``) requests the same job when the market changes.
Backtests follow the models by declarative automation: ``backtest_report`` W runs once week
W+1's features exist.
"""

from datetime import timedelta

import dagster as dg

from ats_assets.core.calendar import EXCHANGE_TZ
from ats_assets.models.assets import GPU_TAGS
from ats_assets.partitions import sessions_for_window, weekly_partitions

RETRAINING_ASSETS = (
    "training_set",
    "xgboost_model",
    "lstm_model",
    "attention_model",
    "ensemble_model",
    "champion_model",
)

retraining_job = dg.define_asset_job(
    "retraining_job",
    selection=dg.AssetSelection.assets(*RETRAINING_ASSETS),
    description=(
        "Retrain one model week: training set, XGBoost, LSTM, attention, ensemble, champion "
        "decision. Requested weekly by schedule and on market drift by regime_drift_sensor."
    ),
)


def run_tags(reason: str, env=None) -> dict[str, str]:
    """Run tags of a retraining request: the GPU request for Kubernetes and why it runs.

    With ``ATS_EXECUTOR=k8s`` each step runs in its own pod and the training steps carry the GPU
    request themselves; the run's own pod then must not hold a GPU it never uses (on a one-GPU
    node pool it would keep the training pods from being scheduled)."""
    import json
    import os

    env = os.environ if env is None else env
    tags = {
        "ats/accelerator": GPU_TAGS["ats/accelerator"],
        "ats/retraining_reason": reason,
    }
    if (env.get("ATS_EXECUTOR") or "").strip().lower() != "k8s":
        tags["dagster-k8s/config"] = json.dumps(GPU_TAGS["dagster-k8s/config"])
    return tags


@dg.schedule(
    job=retraining_job,
    cron_schedule="0 6 * * 6",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Saturday morning: retrain on the week that just ended (skipped without sessions).",
)
def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext):
    saturday = context.scheduled_execution_time.astimezone(EXCHANGE_TZ).date()
    monday = saturday - timedelta(days=5)
    key = monday.isoformat()
    window = weekly_partitions.time_window_for_partition_key(key)
    sessions = sessions_for_window(window)
    if not sessions:
        return dg.SkipReason(f"the week of {key} had no trading sessions: nothing to retrain")
    return dg.RunRequest(
        run_key=f"retrain-weekly-{key}",
        partition_key=key,
        tags=run_tags(f"weekly schedule: week of {key} ({len(sessions)} sessions)"),
    )
