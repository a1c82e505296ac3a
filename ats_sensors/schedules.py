"""Market-calendar schedules.

``daily_market_data_schedule`` runs the day's pipeline (market data, then daily bars and features)
every weekday at 18:15 New York time,
after the regular close (16:00, or 13:00 on an early close) and after the day's partition exists
(see ats_assets/partitions.py); on exchange holidays it skips with the reason. It starts stopped:
turn it on in the UI (Automation) or with ``dagster schedule start daily_market_data_schedule``.
"""

import dagster as dg

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar

daily_pipeline_job = dg.define_asset_job(
    "daily_pipeline_job",
    selection=dg.AssetSelection.groups("market_data")
    | dg.AssetSelection.assets("daily_bars", "features"),
    description=(
        "A trading day's pipeline: raw bars, quotes, trades and options flow (with quarantines), "
        "then daily bars and features (which also refresh the live feature cache)."
    ),
)


@dg.schedule(
    job=daily_pipeline_job,
    cron_schedule="15 18 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="After the close on trading days: the day's market-data partition.",
)
def daily_market_data_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(EXCHANGE_TZ).date()
    calendar = nyse_calendar()
    if not calendar.is_session(day):
        return dg.SkipReason(
            f"{day} is not a trading session (exchange holiday): nothing to ingest"
        )
    close = calendar.session_close(day).astimezone(EXCHANGE_TZ)
    return dg.RunRequest(
        run_key=f"market-data-{day.isoformat()}",
        partition_key=day.isoformat(),
        tags={"ats/session_close": close.strftime("%H:%M %Z")},
    )


monitoring_job = dg.define_asset_job(
    "monitoring_job",
    selection=dg.AssetSelection.assets("metric_history"),
    description="The day's exported metrics (trading, models, pipeline) stored as time series.",
)


@dg.schedule(
    job=monitoring_job,
    cron_schedule="0 23 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Late on trading days (after the session, the daily pipeline and market_regime): "
    "the day's metric_history partition.",
)
def metric_history_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(EXCHANGE_TZ).date()
    if not nyse_calendar().is_session(day):
        return dg.SkipReason(f"{day} is not a trading session (exchange holiday): no metrics")
    return dg.RunRequest(run_key=f"metric-history-{day.isoformat()}", partition_key=day.isoformat())
