"""The position sizer: whole shares that risk a fixed fraction of equity to the stop, within caps."""

from __future__ import annotations

import math
from dataclasses import dataclass

from live.engine.settings import StrategySettings

# A quotient such as 2500 / 25.0 or 200 / (10.30 - 10.20) can land a hair below the whole number it
# means (1999.99999999997); flooring that would lose a share to float noise.
_FLOOR_EPSILON = 1e-9


@dataclass(frozen=True)
class Size:
    """``shares`` to trade (whole, >= 0) and ``binding``: the limit that set them.

    ``binding`` is "risk", "max_position" or "buying_power"; when no size can be computed it is a
    reason instead ("invalid_equity", "invalid_price", "invalid_stop", "zero_stop_distance",
    "invalid_buying_power") and ``shares`` is 0."""

    shares: int
    binding: str


def whole_shares(dollars: float, per_share: float) -> int:
    """Whole shares that fit in ``dollars`` at ``per_share`` dollars each (> 0); never negative."""
    if dollars <= 0:
        return 0
    return math.floor(dollars / per_share + _FLOOR_EPSILON)


def position_size(
    equity: float,
    entry_price: float,
    stop_price: float,
    settings: StrategySettings,
    buying_power: float | None = None,
) -> Size:
    """Shares for one entry at ``entry_price`` with its protective stop at ``stop_price`` (dollars).

    The smallest of: ``settings.risk_percentage`` of ``equity`` (dollars) lost if the stop is hit,
    ``settings.max_position_size`` dollars of notional, and ``buying_power`` dollars when given
    (``None`` or +inf: no limit). Ties name the earlier of risk, max_position, buying_power."""
    if not math.isfinite(equity) or equity <= 0:
        return Size(0, "invalid_equity")
    if not math.isfinite(entry_price) or entry_price <= 0:
        return Size(0, "invalid_price")
    if not math.isfinite(stop_price) or stop_price < 0:
        return Size(0, "invalid_stop")
    distance = abs(entry_price - stop_price)
    if distance == 0:
        return Size(0, "zero_stop_distance")
    if buying_power is not None and (math.isnan(buying_power) or buying_power == -math.inf):
        return Size(0, "invalid_buying_power")

    limits = [
        ("risk", whole_shares(settings.risk_percentage * equity, distance)),
        ("max_position", whole_shares(settings.max_position_size, entry_price)),
    ]
    if buying_power is not None and buying_power != math.inf:
        limits.append(("buying_power", whole_shares(buying_power, entry_price)))
    # min keeps the first of equal values, so ties follow the list's order
    binding, shares = min(limits, key=lambda limit: limit[1])
    return Size(shares, binding)
