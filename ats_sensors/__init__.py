"""Sensors and schedules: market-calendar schedules now; drift and run-failure sensors later."""
