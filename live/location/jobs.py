"""``live_trading_job``, the schedule that starts it before the open, and failure alerts.

At most one session runs per account: the job's runs carry the ``ats/live-session`` tag, which
dagster.yaml's run queue limits to one at a time, and the session itself holds an exclusive lock
(``live.session.lock``), so even a run launched outside the queue refuses to start a second one.
"""

import dagster as dg

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar
from ats_sensors.alerts import run_failure_alert_sensor
from live.location.assets import LIVE_SESSION_TAG, live_assets

live_trading_job = dg.define_asset_job(
    "live_trading_job",
    selection=dg.AssetSelection.assets(*live_assets),
    tags={LIVE_SESSION_TAG: "account"},
    description=(
        "A trading day: the champion model in force traded by the strategy engine through the "
        "broker (ATS_TRADING_MODE: simulated by default), then the day's performance. Replay a "
        "past day with the default config; the schedule trades today in real time."
    ),
)

REALTIME = {"ops": {"live_trading_session": {"config": {"replay": False}}}}


@dg.schedule(
    job=live_trading_job,
    cron_schedule="20 9 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Before the open on trading days: today's real-time session (ends after the close).",
)
def live_trading_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(EXCHANGE_TZ).date()
    if not nyse_calendar().is_session(day):
        return dg.SkipReason(f"{day} is not a trading session (exchange holiday): no trading")
    return dg.RunRequest(
        run_key=f"live-{day.isoformat()}", partition_key=day.isoformat(), run_config=REALTIME
    )


live_failure_alert_sensor = run_failure_alert_sensor
