"""Profit targets: a fixed level some ATRs beyond entry, and whether a bar reached it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from live.engine.types import side_of


def profit_target(
    direction: ArrayLike, entry: ArrayLike, atr: ArrayLike, multiple: ArrayLike
) -> np.ndarray:
    """Target price (dollars): ``multiple`` ATRs above entry for longs, below for shorts.

    ``entry`` and ``atr`` in dollars, ``multiple`` in ATRs. Flat tickers get NaN."""
    side = side_of(direction)
    distance = np.asarray(multiple, dtype=np.float64) * np.asarray(atr, dtype=np.float64)
    target = np.asarray(entry, dtype=np.float64) + side * distance
    return np.where(side != 0, target, np.nan)


def target_hit(
    direction: ArrayLike, target: ArrayLike, high: ArrayLike, low: ArrayLike
) -> np.ndarray:
    """True where this bar reached the target: long high >= target, short low <= target (dollars).

    Flat tickers and NaN inputs give False."""
    side = side_of(direction)
    target = np.asarray(target, dtype=np.float64)
    long_hit = np.asarray(high, dtype=np.float64) >= target
    short_hit = np.asarray(low, dtype=np.float64) <= target
    return np.asarray(((side > 0) & long_hit) | ((side < 0) & short_hit))
