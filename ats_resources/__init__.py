"""Dagster resources and I/O managers for ATS: market data sources, the warehouse, settings."""
