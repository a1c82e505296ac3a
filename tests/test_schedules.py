"""The daily market-data schedule follows the trading calendar."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from ats_assets.partitions import trading_day_partitions
from ats_sensors.schedules import daily_market_data_schedule

NY = ZoneInfo("America/New_York")


def evaluate(moment: datetime):
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
        return daily_market_data_schedule(context)


def test_a_trading_day_requests_its_own_partition_after_the_close():
    request = evaluate(datetime(2024, 3, 5, 18, 15, tzinfo=NY))
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2024-03-05"
    assert request.run_key == "market-data-2024-03-05"


def test_the_requested_partition_already_exists_when_the_schedule_ticks():
    for moment in (
        datetime(2024, 7, 12, 18, 15, tzinfo=NY),
        datetime(2024, 12, 13, 18, 15, tzinfo=NY),
    ):
        request = evaluate(moment)
        keys = trading_day_partitions.get_partition_keys(current_time=moment)
        assert request.partition_key == keys[-1]


def test_an_early_close_day_is_ingested_with_its_close_recorded():
    request = evaluate(datetime(2024, 11, 29, 18, 15, tzinfo=NY))
    assert request.partition_key == "2024-11-29"
    assert request.tags["ats/session_close"] == "13:00 EST"


def test_an_exchange_holiday_skips_with_the_reason():
    skip = evaluate(datetime(2024, 7, 4, 18, 15, tzinfo=NY))
    assert isinstance(skip, dg.SkipReason)
    assert "2024-07-04 is not a trading session" in skip.skip_message


def test_the_schedule_ticks_on_weekday_evenings_in_new_york():
    assert daily_market_data_schedule.cron_schedule == "15 18 * * 1-5"
    assert daily_market_data_schedule.execution_timezone == "America/New_York"


def test_the_scheduled_job_runs_market_data_then_features():
    from ats_assets.definitions import defs

    job = defs.resolve_job_def(daily_market_data_schedule.job_name)
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {"raw_bars", "raw_bars_quarantine", "options_flow", "daily_bars", "features"} <= keys
    assert "feature_registry" not in keys  # unpartitioned assets run on their own
