"""Stop-loss levels: an initial stop some ATRs from entry that trails the peak and never loosens."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from live.engine.types import side_of


def initial_stop(
    direction: ArrayLike, entry: ArrayLike, atr: ArrayLike, multiple: ArrayLike
) -> np.ndarray:
    """Stop price (dollars): ``multiple`` ATRs below entry for longs, above for shorts.

    ``entry`` and ``atr`` in dollars, ``multiple`` in ATRs. Flat tickers get NaN."""
    side = side_of(direction)
    distance = np.asarray(multiple, dtype=np.float64) * np.asarray(atr, dtype=np.float64)
    stop = np.asarray(entry, dtype=np.float64) - side * distance
    return np.where(side != 0, stop, np.nan)


def trail_stop(
    direction: ArrayLike,
    stop: ArrayLike,
    peak: ArrayLike,
    atr: ArrayLike,
    trail_multiple: ArrayLike,
) -> np.ndarray:
    """The stop (dollars) after trailing ``trail_multiple`` ATRs behind the peak; never loosens.

    Longs: max(stop, peak - k * atr); shorts: min(stop, peak + k * atr). A NaN ATR or peak keeps
    the stop (a widening ATR must not pull it back); a NaN stop takes the trailing level.
    Flat tickers get NaN."""
    side = side_of(direction)
    stop = np.asarray(stop, dtype=np.float64)
    distance = np.asarray(trail_multiple, dtype=np.float64) * np.asarray(atr, dtype=np.float64)
    peak = np.asarray(peak, dtype=np.float64)
    # fmax/fmin ignore the NaN trailing level that a NaN ATR or peak produces
    long_stop = np.fmax(stop, peak - distance)
    short_stop = np.fmin(stop, peak + distance)
    return np.where(side > 0, long_stop, np.where(side < 0, short_stop, np.nan))


def stop_hit(direction: ArrayLike, stop: ArrayLike, high: ArrayLike, low: ArrayLike) -> np.ndarray:
    """True where this bar reached the stop: long low <= stop, short high >= stop (dollars).

    Flat tickers and NaN inputs give False."""
    side = side_of(direction)
    stop = np.asarray(stop, dtype=np.float64)
    long_hit = np.asarray(low, dtype=np.float64) <= stop
    short_hit = np.asarray(high, dtype=np.float64) >= stop
    return np.asarray(((side > 0) & long_hit) | ((side < 0) & short_hit))
