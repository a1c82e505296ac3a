"""ATS live trading: the strategy engine (shared by backtests and live trading) and the live job.

``live.engine`` and ``live.backtest`` are plain Python (numpy and polars, never dagster), so the
same engine runs inside the backtest assets and the live execution job.
"""
