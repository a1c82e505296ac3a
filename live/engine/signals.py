"""Entry signals on a bar close: long, short or nothing per ticker, from expected return vs cost."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from live.engine.settings import StrategySettings


def entry_signals(
    expected_bps: ArrayLike,
    confidence: ArrayLike,
    cost_bps: ArrayLike,
    settings: StrategySettings,
    tradable: ArrayLike | None = None,
) -> np.ndarray:
    """+1 (enter long), -1 (enter short) or 0 per ticker, as int8.

    ``expected_bps``: the models' expected return over the holding period (bps, signed);
    ``confidence``: their confidence (0.5 at the trading threshold); ``cost_bps``: the round-trip
    cost (bps). A signal needs |expected| strictly above ``cost_multiple`` * cost and confidence at
    least ``min_confidence``; shorts only if ``allow_short``. NaN anywhere, or ``tradable`` False,
    gives 0.
    """
    expected = np.asarray(expected_bps, dtype=np.float64)
    hurdle = settings.cost_multiple * np.asarray(cost_bps, dtype=np.float64)
    confident = np.asarray(confidence, dtype=np.float64) >= settings.min_confidence
    if tradable is not None:
        confident = confident & np.asarray(tradable, dtype=bool)
    # comparisons with NaN are False, so a missing input never makes a signal
    long = confident & (expected > hurdle)
    short = confident & (expected < -hurdle) & settings.allow_short
    return np.asarray(long.astype(np.int8) - short.astype(np.int8))


def signal_strength(expected_bps: ArrayLike, cost_bps: ArrayLike) -> np.ndarray:
    """Edge over cost in multiples of the cost: (|expected| - cost) / cost, at least 0.

    Ranks candidates when there are more signals than room. Both inputs in bps; NaN in either
    gives 0 (no known edge). A cost of 0 or less divides by 1 bp instead, so a free trade ranks by
    its expected return rather than as infinite.
    """
    expected = np.abs(np.asarray(expected_bps, dtype=np.float64))
    cost = np.asarray(cost_bps, dtype=np.float64)
    per = np.where(cost > 0, cost, 1.0)
    strength = np.clip((expected - np.maximum(cost, 0.0)) / per, 0.0, None)
    return np.asarray(np.nan_to_num(strength, nan=0.0))
