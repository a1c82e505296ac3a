"""Peak detector: tracks each position's most favourable price and exits on a retracement from it.

Call ``update_peak`` with the bar first, then ``peak_exit`` on the same bar's close.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from live.engine.settings import StrategySettings
from live.engine.types import side_of


def update_peak(
    direction: ArrayLike, peak: ArrayLike, high: ArrayLike, low: ArrayLike
) -> np.ndarray:
    """The most favourable price (dollars) since entry, including this bar.

    Longs: the highest high; shorts: the lowest low. A NaN peak (a new position) starts from the
    bar; a NaN bar (no trade this minute) keeps the peak. Flat tickers get NaN.
    """
    side = side_of(direction)
    peak = np.asarray(peak, dtype=np.float64)
    # fmax/fmin ignore a NaN on one side, which gives both the initialisation and the no-bar case
    long_peak = np.fmax(peak, np.asarray(high, dtype=np.float64))
    short_peak = np.fmin(peak, np.asarray(low, dtype=np.float64))
    return np.where(side > 0, long_peak, np.where(side < 0, short_peak, np.nan))


def peak_exit(
    direction: ArrayLike,
    entry: ArrayLike,
    peak: ArrayLike,
    close: ArrayLike,
    atr: ArrayLike,
    settings: StrategySettings,
) -> np.ndarray:
    """True where a position should exit because it gave back enough of its best move.

    Armed once the favourable move from ``entry`` to ``peak`` reaches ``peak_min_gain_atr`` ATRs;
    then exits when ``close`` is ``peak_retrace_atr`` ATRs or more back from the peak. Prices and
    ``atr`` in dollars. Flat tickers, NaN inputs and a non-positive ATR give False.
    """
    side = side_of(direction)
    peak = np.asarray(peak, dtype=np.float64)
    atr = np.asarray(atr, dtype=np.float64)
    gain = (peak - np.asarray(entry, dtype=np.float64)) * side
    retrace = (peak - np.asarray(close, dtype=np.float64)) * side
    armed = gain >= settings.peak_min_gain_atr * atr
    # an ATR of 0 would arm and exit at once on any tick; comparisons with NaN are False
    return np.asarray(
        (side != 0) & (atr > 0) & armed & (retrace >= settings.peak_retrace_atr * atr)
    )
