"""Backtest simulation over 1-minute bars: fills, costs, the event loop, metrics and reports."""
