"""Market-data acquisition: raw bars, quotes and options flow, daily-partitioned and validated."""
