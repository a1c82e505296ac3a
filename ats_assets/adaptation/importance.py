"""The feature-importance tracker: how a week's model importances moved against earlier weeks.

Importance of a feature in week W: its share of the XGBoost model's total gain (sums to 1).
Drift between two weeks: the Spearman correlation of the two importance vectors over the union
of features (a feature missing from a week counts 0), how many of the top ``top`` features are
shared, and which entered or left the top.
"""

import numpy as np
import polars as pl


def gain_shares(gains: dict[str, float], columns: list[str]) -> pl.DataFrame:
    """feature, importance (share of total gain; 0 for columns the booster never split on), rank."""
    values = np.array([float(gains.get(c, 0.0)) for c in columns])
    total = values.sum()
    share = values / total if total > 0 else values
    frame = pl.DataFrame({"feature": columns, "importance": share})
    return frame.with_columns(
        rank=pl.col("importance").rank(method="ordinal", descending=True).cast(pl.Int64)
    ).sort("rank")


def importance_drift(current: pl.DataFrame, previous: pl.DataFrame, top: int = 20) -> dict:
    """Figures comparing two ``gain_shares`` frames."""
    both = current.select("feature", now="importance").join(
        previous.select("feature", before="importance"), on="feature", how="full", coalesce=True
    )
    both = both.fill_null(0.0)
    rho = both.select(pl.corr("now", "before", method="spearman")).item()
    now_top = set(current.sort("rank").head(top)["feature"])
    before_top = set(previous.sort("rank").head(top)["feature"])
    return {
        "rank_correlation": float(rho) if rho is not None and rho == rho else float("nan"),
        "top_overlap": len(now_top & before_top) / max(len(now_top), 1),
        "entered_top": sorted(now_top - before_top),
        "left_top": sorted(before_top - now_top),
    }
