"""What every model trains on: the feature matrix, the target, the screened inputs, and one scorer.

The target is the *excess* forward return (the row's forward return minus the mean of every
ticker's at the same decision time, in basis points, winsorised): the market's common move is
noise to a stock-picking model and dominates raw returns. Information coefficients are measured
against the excess return; dollar profit is measured on the raw return of the traded position,
after each row's round-trip cost.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from ats_assets.models import metrics
from ats_assets.models.labels import feature_columns

BPS = 1e4
WINSOR_SIGMAS = 5.0


def with_excess_return(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with ``excess_return``: fwd_return minus the cross-sectional mean at its ts."""
    return rows.with_columns(
        excess_return=pl.col("fwd_return") - pl.col("fwd_return").mean().over("ts")
    )


@dataclass(frozen=True)
class Matrix:
    """Rows of a training set as arrays, in the frame's (ticker, ts) order."""

    x: np.ndarray  # float32 (rows, features); NaN where a feature is unknown
    target_bps: np.ndarray  # excess forward return, basis points, winsorised
    excess_return: np.ndarray  # fraction
    fwd_return: np.ndarray  # fraction
    cost_bps: np.ndarray  # round-trip cost, basis points of the position
    ts: np.ndarray  # datetime64 decision time
    label_end: np.ndarray  # datetime64
    session: np.ndarray  # datetime64[D]
    group: np.ndarray  # int ticker code
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray) -> "Matrix":
        return Matrix(
            **{
                name: getattr(self, name)[index]
                for name in (
                    "x",
                    "target_bps",
                    "excess_return",
                    "fwd_return",
                    "cost_bps",
                    "ts",
                    "label_end",
                    "session",
                    "group",
                )
            },
            columns=self.columns,
        )


def to_matrix(rows: pl.DataFrame, columns: list[str] | tuple[str, ...] | None = None) -> Matrix:
    """Arrays of a labelled training-set frame (see ``labels.training_rows``)."""
    if "excess_return" not in rows.columns:
        rows = with_excess_return(rows)
    rows = rows.sort("ticker", "ts")
    columns = tuple(columns or feature_columns(rows))
    excess = rows["excess_return"].to_numpy().astype(np.float64)
    scale = float(np.nanstd(excess)) * BPS or 1.0
    target = np.clip(excess * BPS, -WINSOR_SIGMAS * scale, WINSOR_SIGMAS * scale)
    x = rows.select(pl.col(list(columns)).cast(pl.Float32).fill_null(float("nan"))).to_numpy()
    return Matrix(
        x=np.ascontiguousarray(x, dtype=np.float32),
        target_bps=target,
        excess_return=excess,
        fwd_return=rows["fwd_return"].to_numpy().astype(np.float64),
        cost_bps=rows["cost_bps"].to_numpy().astype(np.float64),
        ts=rows["ts"].dt.replace_time_zone(None).to_numpy(),
        label_end=rows["label_end"].dt.replace_time_zone(None).to_numpy(),
        session=rows["session"].to_numpy().astype("datetime64[D]"),
        group=rows["ticker"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64),
        columns=columns,
    )


def screen_features(data: Matrix, k: int) -> list[str]:
    """The ``k`` columns with the largest |Spearman IC| against the target on ``data`` (training
    rows only, so the choice never sees validation data); ties keep catalogue order."""
    if k >= len(data.columns):
        return list(data.columns)
    scores = [abs(metrics.spearman(data.x[:, j], data.target_bps)) for j in range(data.x.shape[1])]
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return [data.columns[j] for j in sorted(order)]


def column_index(data: Matrix, columns: list[str]) -> np.ndarray:
    lookup = {c: j for j, c in enumerate(data.columns)}
    missing = [c for c in columns if c not in lookup]
    if missing:
        raise KeyError(f"the training set lacks feature columns {missing[:5]}")
    return np.array([lookup[c] for c in columns], dtype=np.int64)


def calibrate(prediction: np.ndarray, data: Matrix) -> float:
    """Basis points of excess return per unit of prediction (least squares through the origin,
    on validation rows): turns any model's score into an expected return to weigh against cost."""
    p = np.nan_to_num(np.asarray(prediction, dtype=np.float64))
    denominator = float(np.dot(p, p))
    return float(np.dot(p, data.target_bps) / denominator) if denominator > 0 else 0.0


def cost_aware(prediction: np.ndarray, data: Matrix, calibration: float) -> np.ndarray:
    """``prediction`` where its expected return (bps) covers the row's round-trip cost, else 0."""
    expected = calibration * np.asarray(prediction, dtype=np.float64)
    return np.where(np.abs(expected) >= data.cost_bps, prediction, 0.0)


def score(
    prediction: np.ndarray,
    data: Matrix,
    *,
    threshold: float,
    position_dollars: float,
    calibration: float | None = None,
) -> dict[str, float]:
    """Out-of-sample metrics of ``prediction`` on ``data``.

    IC, rank IC, per-session IC and its t statistic against the excess return; hit rate, trades,
    dollar profit (``position_dollars`` per trade, after each row's cost) and the long/short
    Sharpe on the raw forward return of the traded rows: those with |prediction| >= ``threshold``,
    or, given a ``calibration``, those whose expected return covers their cost.
    """
    correlations = metrics.evaluate(
        prediction, data.excess_return, data.ts, session=data.session, threshold=threshold
    )
    traded = prediction if calibration is None else cost_aware(prediction, data, calibration)
    dollars = metrics.evaluate(
        traded,
        data.fwd_return,
        data.ts,
        session=data.session,
        threshold=threshold if calibration is None else 0.0,
        cost_bps=data.cost_bps,
        position_dollars=position_dollars,
    )
    return {
        **{k: correlations[k] for k in ("rows", "ic", "rank_ic", "ic_mean", "ic_tstat")},
        **{
            k: dollars[k]
            for k in (
                "hit_rate",
                "trades",
                "dollar_profit",
                "profit_per_trade",
                "long_short_sharpe",
            )
        },
        "threshold": float(threshold),
    }
