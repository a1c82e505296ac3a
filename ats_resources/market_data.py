"""Market-data sources: the interface the assets call, and the simulated market behind it.

A source serves the universe and, for a list of tickers and a time range, 1-minute bars, NBBO
quotes, trades and options-flow alerts as polars frames with UTC timestamps, in the columns of
``ats_assets.market_data.specs`` (without ``session``). Each call returns :class:`Fetched`: the
rows, plus the tickers that failed for good and why. Vendor clients (Polygon, Alpaca, Unusual
Whales) implement the same methods; tests can hand in any object that does.
"""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol, runtime_checkable

import dagster as dg
import polars as pl
from pydantic import Field

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar
from ats_resources.simulation.market import SimulatedDay, SimulationConfig, simulated_market
from ats_resources.vendors.collect import Fetched


@runtime_checkable
class MarketData(Protocol):
    """Bars, quotes and trades for a universe of tickers."""

    def universe(self) -> pl.DataFrame:
        """``ticker`` and ``sector`` of every name the source serves."""
        ...

    def bars(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        """1-minute bars labelled by open time with ``start <= ts < end``."""
        ...

    def quotes(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        """NBBO quotes with ``start <= ts < end``."""
        ...

    def trades(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        """Trade prints with ``start <= ts < end``."""
        ...


@runtime_checkable
class OptionsFlowData(Protocol):
    """Options-flow alerts (unusual options activity)."""

    def options_flow(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        """Alerts with ``start <= ts < end``; premium in dollars, size in contracts."""
        ...


class SimulatedMarketResource(dg.ConfigurableResource):
    """The embedded default source: a deterministic simulated market (see ats_resources.simulation)."""

    seed: int = Field(default=7, description="World seed: equal seeds give identical data.")
    n_tickers: int = Field(default=200, ge=1, description="Universe size (tickers).")
    planted_signal: bool = Field(
        default=True, description="Options-flow sentiment leads the next hour's drift."
    )
    signal_strength_bps: float = Field(
        default=8.0,
        ge=0.0,
        description="Planted drift per informed alert, basis points over 60 minutes.",
    )

    def _market(self):
        return simulated_market(
            SimulationConfig(
                seed=self.seed,
                n_tickers=self.n_tickers,
                planted_signal=self.planted_signal,
                signal_strength_bps=self.signal_strength_bps,
            )
        )

    def universe(self) -> pl.DataFrame:
        return self._market().universe.frame().select("ticker", "sector")

    def regime_path(self, start: date, end: date) -> pl.DataFrame:
        """Ground truth: the simulated regime of each session in ``[start, end]``."""
        return self._market().regime_path(start, end)

    def planted_events(self, day: date) -> pl.DataFrame:
        """Ground truth: which alerts of ``day`` were informed and the drift planted after them."""
        return self._market().planted_events(day)

    def _days(self, start: datetime, end: datetime) -> list[SimulatedDay]:
        first, last = start.astimezone(EXCHANGE_TZ).date(), end.astimezone(EXCHANGE_TZ).date()
        sessions = nyse_calendar().sessions_between(first, last)
        return [self._market().day(d) for d in sessions]

    def _select(self, kind: str, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        frames = [getattr(day, kind) for day in self._days(start, end)]
        if not frames:
            return Fetched(pl.DataFrame())
        frame = pl.concat(frames).filter(
            pl.col("ticker").is_in(list(symbols)) & (pl.col("ts") >= start) & (pl.col("ts") < end)
        )
        return Fetched(frame)

    def bars(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self._select("bars", symbols, start, end)

    def quotes(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self._select("quotes", symbols, start, end)

    def trades(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self._select("trades", symbols, start, end)

    def options_flow(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self._select("options_flow", symbols, start, end)
