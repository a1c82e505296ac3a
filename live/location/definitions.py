"""The ``live`` code location: live_trading_job, its assets, its schedule and failure alerts.

Loaded on its own (``dagster dev -m live.location.definitions``) or beside ``ats`` from
workspace.yaml. It shares the warehouse, model store and notifier with the ``ats`` location
and reads ``champion_model`` (materialized there) through the Dagster instance.
"""

import dagster as dg

from ats_resources.settings import Settings, build_resources
from live.location.assets import LIVE_SESSION_TAG, live_assets
from live.location.jobs import live_failure_alert_sensor, live_trading_job, live_trading_schedule

settings = Settings.from_env()

defs = dg.Definitions(
    assets=live_assets,
    jobs=[live_trading_job],
    schedules=[live_trading_schedule],
    sensors=[live_failure_alert_sensor],
    resources=build_resources(settings),
    executor=dg.in_process_executor,
)

__all__ = ["LIVE_SESSION_TAG", "defs"]
