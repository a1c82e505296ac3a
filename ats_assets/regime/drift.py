"""Drift statistics of a current window against a reference (the champion's training window).

Per feature: the population stability index (PSI) on the reference's decile bins and the
two-sample Kolmogorov-Smirnov statistic. Conventional reading of PSI: < 0.1 stable, 0.1-0.25 a
moderate shift, > 0.25 a significant shift. Prediction-performance decay compares the champion's
information coefficient on realized labels of the current window with its validation IC.
"""

import numpy as np
import polars as pl

PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin, so that the logarithm stays finite


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (NaN-free parts).

    Bins are the reference's quantiles (ties merged), open at both ends; NaN when either side has
    fewer than ``bins`` finite values."""
    ref, cur = _finite(reference), _finite(current)
    if len(ref) < bins or len(cur) < bins:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    e = np.maximum(expected / len(ref), PSI_FLOOR)
    a = np.maximum(actual / len(cur), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    ref, cur = np.sort(_finite(reference)), np.sort(_finite(current))
    if not len(ref) or not len(cur):
        return float("nan")
    grid = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, grid, side="right") / len(ref)
    cdf_cur = np.searchsorted(cur, grid, side="right") / len(cur)
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def feature_drift(
    reference: pl.DataFrame, current: pl.DataFrame, columns: list[str]
) -> pl.DataFrame:
    """PSI and KS per feature column (present in both frames), largest PSI first."""
    rows = []
    for column in columns:
        if column not in reference.columns or column not in current.columns:
            continue
        ref = reference[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        cur = current[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        rows.append({"feature": column, "psi": psi(ref, cur), "ks": ks(ref, cur)})
    frame = pl.DataFrame(rows, schema={"feature": pl.Utf8, "psi": pl.Float64, "ks": pl.Float64})
    return frame.sort("psi", descending=True, nulls_last=True)


def drift_summary(drift: pl.DataFrame, psi_threshold: float = 0.25) -> dict[str, float]:
    """The figures a sensor reads: the largest and median PSI, the share of features above
    ``psi_threshold``, and the median KS."""
    psi_values = drift["psi"].drop_nans().drop_nulls()
    if psi_values.is_empty():
        return {"psi_max": 0.0, "psi_median": 0.0, "psi_share_drifted": 0.0, "ks_median": 0.0}
    return {
        "psi_max": float(psi_values.max()),
        "psi_median": float(psi_values.median()),
        "psi_share_drifted": float((psi_values > psi_threshold).mean()),
        "ks_median": float(drift["ks"].drop_nans().drop_nulls().median() or 0.0),
    }


def performance_decay(realized_ic: float, validation_ic: float) -> float:
    """How much of the validation IC is lost on realized labels: 0 = as validated, 1 = all of it
    (more than 1 when the sign flips); NaN without a positive validation IC."""
    if not np.isfinite(validation_ic) or validation_ic <= 0 or not np.isfinite(realized_ic):
        return float("nan")
    return float(1.0 - realized_ic / validation_ic)
