"""The strategy engine: selection, signals, exits, sizing, risk and orders. No dagster import."""
