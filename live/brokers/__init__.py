"""Brokers behind one interface (:class:`live.brokers.base.Broker`): simulated and Alpaca."""
