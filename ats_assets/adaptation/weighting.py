"""Re-weighting the ensemble's members on their recent realized performance.

Each member's information coefficient (Spearman, prediction against the realized excess return)
is measured per session on sessions the models never trained on. The target weights are
proportional to the members' exponentially weighted mean IC (half-life in sessions; members at
or below zero get nothing). The new weights shrink the target toward the ensemble's stored
(validation-based) weights, the more the fewer sessions there are: ``lam = n / (n + strength)``,
``w = (1 - lam) * prior + lam * target``; no member falls below ``floor`` and they sum to 1.
When no member has a positive IC there is nothing to prefer and the prior stands.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class WeightingSettings:
    sessions: int = 10  # recent out-of-sample sessions considered
    halflife: float = 3.0  # sessions
    strength: float = 5.0  # how many sessions the prior counts for
    floor: float = 0.05  # smallest weight a member keeps

    def __post_init__(self) -> None:
        if self.sessions < 1 or self.halflife <= 0 or self.strength < 0:
            raise ValueError("WeightingSettings: sessions >= 1, halflife > 0, strength >= 0")
        if not 0 <= self.floor < 1:
            raise ValueError("WeightingSettings: floor must be in [0, 1)")


def session_ics(scored: pl.DataFrame, members: list[str]) -> pl.DataFrame:
    """Per session and member: Spearman IC of the member's prediction column with
    ``excess_return``, and the row count. ``scored``: session, excess_return, one column per
    member."""
    if scored.is_empty():
        return pl.DataFrame(
            schema={"session": pl.Date, "member": pl.String, "ic": pl.Float64, "rows": pl.UInt32}
        )
    long = scored.unpivot(
        index=["session", "excess_return"], on=members, variable_name="member", value_name="p"
    )
    return (
        long.group_by("session", "member")
        .agg(
            ic=pl.corr("p", "excess_return", method="spearman").fill_nan(0.0).fill_null(0.0),
            rows=pl.len(),
        )
        .sort("session", "member")
    )


def reweight(
    prior: dict[str, float], ics: pl.DataFrame, settings: WeightingSettings = WeightingSettings()
) -> pl.DataFrame:
    """member, prior_weight, realized_ic (EW mean), sessions, target_weight, weight."""
    names = list(prior)
    sessions = sorted(set(ics["session"].to_list())) if not ics.is_empty() else []
    sessions = sessions[-settings.sessions :]
    n = len(sessions)
    age = {s: n - 1 - i for i, s in enumerate(sessions)}
    realized = {}
    for name in names:
        rows = ics.filter((pl.col("member") == name) & pl.col("session").is_in(sessions))
        if rows.is_empty():
            realized[name] = float("nan")
            continue
        decay = np.array([0.5 ** (age[s] / settings.halflife) for s in rows["session"]])
        realized[name] = float(np.average(rows["ic"].to_numpy(), weights=decay))
    positive = {k: max(v, 0.0) if v == v else 0.0 for k, v in realized.items()}
    total = sum(positive.values())
    target = {k: v / total for k, v in positive.items()} if total > 0 else dict(prior)
    lam = n / (n + settings.strength) if total > 0 else 0.0
    blended = np.array([(1 - lam) * prior[k] + lam * target[k] for k in names])
    weights = _floor_normalise(blended, settings.floor)
    return pl.DataFrame(
        {
            "member": names,
            "prior_weight": [float(prior[k]) for k in names],
            "realized_ic": [realized[k] for k in names],
            "sessions": [n] * len(names),
            "target_weight": [float(target[k]) for k in names],
            "weight": weights,
        }
    )


def _floor_normalise(weights: np.ndarray, floor: float) -> list[float]:
    """Weights summing to 1 with none below ``floor`` (members at the floor are fixed there and
    the rest share what remains in proportion)."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    floor = min(floor, 1.0 / len(w))
    fixed = np.zeros(len(w), dtype=bool)
    for _ in range(len(w)):
        low = (w < floor) & ~fixed
        if not low.any():
            break
        fixed |= low
        w[fixed] = floor
        free = ~fixed
        w[free] = w[free] / w[free].sum() * (1.0 - floor * fixed.sum())
    return [float(v) for v in w]
