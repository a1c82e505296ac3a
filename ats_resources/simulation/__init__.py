"""A deterministic simulated market: the embedded default market-data source (no dagster here)."""

from ats_resources.simulation.market import REGIMES, SimulatedMarket, SimulationConfig

__all__ = ["REGIMES", "SimulatedMarket", "SimulationConfig"]
