"""The live trading session: a clock, a bar feed, the strategy engine and a broker, plain Python.

``runner.LiveSession`` drives :class:`~live.engine.strategy.StrategyEngine` bar by bar exactly as
the backtest's event loop does, with a broker behind :class:`~live.brokers.base.Broker` in place
of the simulation; the Dagster job that starts it lives in ``live.location``.
"""
