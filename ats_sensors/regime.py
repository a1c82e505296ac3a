"""``regime_drift_sensor``: request a retraining run when the market regime changes or drifts.

Each tick reads the latest ``market_regime`` materialization. It requests ``retraining_job`` for
the last complete model week when the detector declared a regime change that session, or when
drift crosses a threshold (share of the champion's features with PSI above 0.25, or the decay of
its IC on realized returns); otherwise it skips and says which statistic was below which
threshold. One request per detected change (the run key names the session and the trigger), none
within the cooldown after the last one; each request also goes out as an alert (log, and Slack
when configured). The cursor is a small JSON object.
"""

import json
import os
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from ats_assets.core.calendar import nyse_calendar
from ats_assets.partitions import sessions_for_window, weekly_partitions
from ats_resources.notifier import NotifierResource
from ats_resources.settings import _float, _int
from ats_sensors.retraining import retraining_job, run_tags


@dataclass(frozen=True)
class DriftThresholds:
    psi_share: float = 0.30  # share of the champion's features with PSI > 0.25
    ic_decay: float = 1.0  # the whole validation IC lost on realized returns
    cooldown_sessions: int = 5

    @classmethod
    def from_env(cls, env=None) -> "DriftThresholds":
        env = os.environ if env is None else env
        return cls(
            psi_share=_float(env, "ATS_DRIFT_PSI_SHARE", cls.psi_share, 0.0),
            ic_decay=_float(env, "ATS_DRIFT_IC_DECAY", cls.ic_decay, 0.0),
            cooldown_sessions=_int(env, "ATS_RETRAIN_COOLDOWN_SESSIONS", cls.cooldown_sessions, 0),
        )


def model_week(session: date) -> str | None:
    """The last weekly model partition whose sessions all lie on or before ``session``."""
    monday = session - timedelta(days=session.weekday())
    for start in (monday, monday - timedelta(weeks=1)):
        key = start.isoformat()
        sessions = sessions_for_window(weekly_partitions.time_window_for_partition_key(key))
        if sessions and sessions[-1] <= session:
            return key
    return None


def _value(metadata, name, default=None):
    entry = metadata.get(name)
    return default if entry is None else entry.value


def triggers(metadata, thresholds: DriftThresholds) -> tuple[list[str], str]:
    """The triggers that fired (short codes) and a sentence stating each statistic and threshold."""
    fired, said = [], []
    if _value(metadata, "change", False):
        fired.append("regime")
        said.append(
            f"regime changed {_value(metadata, 'change_from')} -> "
            f"{_value(metadata, 'declared_regime')}"
        )
    else:
        said.append(f"no regime change declared (regime {_value(metadata, 'regime')})")
    share = _value(metadata, "psi_share_drifted")
    if share is None:
        said.append("no champion yet, so no feature drift")
    elif share >= thresholds.psi_share:
        fired.append("psi")
        said.append(f"PSI drift share {share:.2f} >= {thresholds.psi_share:.2f}")
    else:
        said.append(f"PSI drift share {share:.2f} < {thresholds.psi_share:.2f}")
    decay = _value(metadata, "ic_decay")
    if decay is not None and decay == decay:
        if decay >= thresholds.ic_decay:
            fired.append("decay")
            said.append(f"IC decay {decay:.2f} >= {thresholds.ic_decay:.2f}")
        else:
            said.append(f"IC decay {decay:.2f} < {thresholds.ic_decay:.2f}")
    return fired, "; ".join(said)


@dg.sensor(
    job=retraining_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Retrain when market_regime declares a regime change or drift crosses a threshold.",
)
def regime_drift_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    event = context.instance.get_latest_materialization_event(dg.AssetKey("market_regime"))
    if event is None or event.asset_materialization is None:
        return dg.SkipReason("market_regime has not been materialized yet")
    metadata = event.asset_materialization.metadata
    session = date.fromisoformat(_value(metadata, "session"))
    if cursor.get("session") == session.isoformat():
        return dg.SkipReason(f"market_regime {session} was already evaluated")
    thresholds = DriftThresholds.from_env()
    fired, why = triggers(metadata, thresholds)
    cursor["session"] = session.isoformat()
    if not fired:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(f"{session}: {why}")
    last = cursor.get("last_request")
    if last:
        since = len(nyse_calendar().sessions_between(date.fromisoformat(last), session)) - 1
        if since < thresholds.cooldown_sessions:
            context.update_cursor(json.dumps(cursor))
            return dg.SkipReason(
                f"{session}: {why}; but only {since} sessions since the last retraining request "
                f"({last}) < cooldown {thresholds.cooldown_sessions}"
            )
    week = model_week(session)
    if week is None:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(f"{session}: {why}; but no complete model week yet")
    cursor["last_request"] = session.isoformat()
    context.update_cursor(json.dumps(cursor))
    run_key = f"drift-{session.isoformat()}-{'-'.join(fired)}"
    notifier.notify(
        "error",
        f"Market drift on {session}: retraining week {week}",
        f"{why}. regime_drift_sensor requested retraining_job for the week of {week}.",
        key=f"drift:{session.isoformat()}",
        fields={"Run key": run_key, "Triggers": ", ".join(fired)},
    )
    return dg.RunRequest(run_key=run_key, partition_key=week, tags=run_tags(f"{session}: {why}"))
