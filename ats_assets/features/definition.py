"""What a feature is: a named, parameterised polars expression in a family, with a version.

A feature's ``build(**params)`` returns one ``pl.Expr`` evaluated over a *bar frame* of one
timeframe, sorted by ``ticker`` then ``ts``, with these columns:

- ``ticker``, ``session`` (date), ``ts`` (bar open, UTC), ``minute_of_session`` (0 = the open)
- ``open``, ``high``, ``low``, ``close``, ``volume``, ``vwap``, ``trade_count``
- microstructure, aggregated over the bar: ``quoted_spread`` (mean ask - bid, dollars),
  ``quoted_spread_bps`` (mean, of the mid), ``quote_imbalance`` (mean (bid_size - ask_size) /
  (bid_size + ask_size)), ``buy_volume`` / ``sell_volume`` (trade volume above / below the
  quote mid), ``effective_spread_bps`` (volume-weighted 2 |price - mid| / mid), ``trades``
- options flow, summed over the bar: ``call_premium``, ``put_premium``, ``bullish_premium``,
  ``bearish_premium`` (dollars), ``sweep_count``, ``net_sweep_count`` (bullish minus bearish
  sweeps), ``flow_count``

Every window must stay inside one ticker: use ``.over("ticker")`` (or ``.over("ticker",
"session")`` for things that restart each session). An expression may only look backwards
(no ``shift(-k)``): the value at a bar uses that bar and earlier ones. The feature's column is
``{name}_{timeframe}``; its version is a hash of its name, family, parameters and the source
of its builder, so changing a definition changes the version.
"""

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

FAMILIES = (
    "price",
    "volume",
    "volatility",
    "momentum",
    "trend",
    "pattern",
    "microstructure",
    "options_flow",
)
TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")


@dataclass(frozen=True)
class Feature:
    name: str  # unique within the catalogue, e.g. "rsi_14"
    family: str
    build: Callable[..., pl.Expr]
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    timeframes: tuple[str, ...] = TIMEFRAMES
    warmup_bars: int = 0  # bars needed before the value is meaningful

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"feature {self.name}: unknown family {self.family!r}")
        unknown = set(self.timeframes) - set(TIMEFRAMES)
        if unknown:
            raise ValueError(f"feature {self.name}: unknown timeframe(s) {sorted(unknown)}")

    def expr(self) -> pl.Expr:
        return self.build(**self.params)

    def column(self, timeframe: str) -> str:
        return f"{self.name}_{timeframe}"

    @property
    def version(self) -> str:
        """12 hex digits that change whenever the definition changes."""
        try:
            source = inspect.getsource(self.build)
        except (OSError, TypeError):
            source = repr(self.build)
        payload = json.dumps(
            {
                "name": self.name,
                "family": self.family,
                "params": dict(self.params),
                "source": source,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]
