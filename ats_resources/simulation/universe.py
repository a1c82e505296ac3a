"""The simulated market's universe: synthetic tickers with sectors and per-name traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

SECTORS = (
    "Information Technology",
    "Health Care",
    "Financials",
    "Consumer Discretionary",
    "Communication Services",
    "Industrials",
    "Consumer Staples",
    "Energy",
    "Utilities",
    "Real Estate",
    "Materials",
)
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


@dataclass(frozen=True)
class Universe:
    """Per-ticker traits, all arrays aligned with ``tickers`` (sorted)."""

    tickers: np.ndarray  # str
    sector: np.ndarray  # int index into SECTORS
    beta: np.ndarray  # loading on the market factor
    idio_vol: np.ndarray  # daily idiosyncratic volatility (fraction)
    base_price: np.ndarray  # dollars; the level prices revert to
    daily_volume: np.ndarray  # shares per full session
    trade_size: np.ndarray  # average shares per trade
    spread_bps: np.ndarray  # typical quoted spread, basis points of the mid
    flow_rate: np.ndarray  # options-flow alerts per session

    def __len__(self) -> int:
        return len(self.tickers)

    def frame(self) -> pl.DataFrame:
        """``ticker``, ``sector`` and traits as a polars frame."""
        return pl.DataFrame(
            {
                "ticker": self.tickers.tolist(),
                "sector": [SECTORS[i] for i in self.sector],
                "beta": self.beta,
                "base_price": self.base_price,
                "daily_volume": self.daily_volume,
            }
        )


def _ticker_names(rng: np.random.Generator, n: int) -> np.ndarray:
    names: set[str] = set()
    while len(names) < n:
        length = int(rng.choice([3, 4], p=[0.4, 0.6]))
        names.add("".join(rng.choice(_LETTERS, size=length)))
    return np.array(sorted(names))


def build_universe(seed: int, n_tickers: int) -> Universe:
    """A deterministic universe of ``n_tickers`` names for ``seed``."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    tickers = _ticker_names(rng, n_tickers)
    return Universe(
        tickers=tickers,
        sector=rng.integers(0, len(SECTORS), size=n_tickers),
        beta=np.clip(rng.normal(1.0, 0.3, n_tickers), 0.3, 2.0),
        idio_vol=np.clip(rng.lognormal(np.log(0.014), 0.35, n_tickers), 0.005, 0.05),
        base_price=np.clip(rng.lognormal(np.log(60.0), 0.9, n_tickers), 5.0, 800.0),
        daily_volume=np.clip(rng.lognormal(np.log(2e6), 0.9, n_tickers), 2e5, 5e7),
        trade_size=np.clip(rng.lognormal(np.log(120.0), 0.3, n_tickers), 40.0, 400.0),
        spread_bps=np.clip(rng.lognormal(np.log(3.0), 0.5, n_tickers), 0.5, 30.0),
        flow_rate=np.clip(rng.lognormal(np.log(6.0), 0.6, n_tickers), 2.0, 40.0),
    )
