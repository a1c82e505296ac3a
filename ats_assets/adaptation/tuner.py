"""A bounded, recorded tuner of the strategy's thresholds.

Each update evaluates the current parameters and every one-step neighbour (one parameter moved
one step up or down, inside its hard bounds) on the same out-of-sample window, and moves to the
best neighbour only when it makes at least ``min_improvement`` dollars more than the current
parameters with at least ``min_trades`` trades. So one update moves one parameter by one step
at most, parameters never leave their bounds, and every candidate's figures are kept.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    name: str  # a live.engine.settings.StrategySettings field
    low: float
    high: float
    step: float

    def clip(self, value: float) -> float:
        return round(min(max(value, self.low), self.high), 10)


TUNED = (
    Bound("cost_multiple", 0.5, 3.0, 0.25),
    Bound("min_confidence", 0.5, 0.8, 0.05),
    Bound("stop_atr_multiple", 1.0, 4.0, 0.5),
    Bound("target_atr_multiple", 2.0, 8.0, 1.0),
)


@dataclass(frozen=True)
class TunerSettings:
    min_improvement: float = 50.0  # dollars over the evaluation window
    min_trades: int = 20


def start_point(current: dict[str, float], bounds=TUNED) -> dict[str, float]:
    """``current`` clipped into the bounds (a value set outside them is pulled back in)."""
    return {b.name: b.clip(float(current[b.name])) for b in bounds}


def neighbours(current: dict[str, float], bounds=TUNED) -> list[tuple[str, dict[str, float]]]:
    """("current", current) then ("name+"/"name-", one-step moves) that stay inside the bounds."""
    out = [("current", dict(current))]
    for b in bounds:
        for sign, label in ((1, "+"), (-1, "-")):
            value = b.clip(current[b.name] + sign * b.step)
            if value != current[b.name]:
                out.append((f"{b.name}{label}", {**current, b.name: value}))
    return out


def tune(
    current: dict[str, float],
    evaluate: Callable[[dict[str, float]], dict],
    settings: TunerSettings = TunerSettings(),
    bounds=TUNED,
) -> tuple[dict[str, float], str, list[dict]]:
    """(chosen parameters, reason, one record per candidate). ``evaluate(params)`` returns at
    least ``pnl`` (dollars) and ``trades``."""
    current = start_point(current, bounds)
    records = []
    for move, params in neighbours(current, bounds):
        result = evaluate(params)
        records.append({"move": move, **params, **result})
    base = records[0]
    eligible = [r for r in records[1:] if r["trades"] >= settings.min_trades]
    best = max(eligible, key=lambda r: r["pnl"], default=None)
    if best is None:
        return current, f"no neighbour had {settings.min_trades}+ trades: parameters kept", records
    gain = best["pnl"] - base["pnl"]
    if gain < settings.min_improvement:
        reason = (
            f"best move {best['move']} gains ${gain:,.2f} < ${settings.min_improvement:,.2f}: "
            "parameters kept"
        )
        return current, reason, records
    chosen = {b.name: best[b.name] for b in bounds}
    reason = (
        f"moved {best['move']}: ${best['pnl']:,.2f} vs ${base['pnl']:,.2f} "
        f"(+${gain:,.2f}, {best['trades']} trades)"
    )
    return chosen, reason, records
