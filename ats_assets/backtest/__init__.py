"""Backtest reports: each weekly model evaluated by the strategy engine on the following week."""
