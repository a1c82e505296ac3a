"""Fit one model kind on a training set: purged split, feature screening, fit, validation metrics.

Also the two validators shown beside every model: a walk-forward validator (rolling purged folds
across the training window) and a cross-timeframe validator (how much each timeframe's features
predict on their own). Both use the squared-error XGBoost settings, which fit in seconds.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ats_assets.features.definition import TIMEFRAMES
from ats_assets.models import metrics
from ats_assets.models.dataset import (
    Matrix,
    calibrate,
    column_index,
    score,
    screen_features,
    to_matrix,
)
from ats_assets.models.neural import NeuralConfig, NeuralModel, fit_neural
from ats_assets.models.splits import holdout_split, walk_forward_splits
from ats_assets.models.xgb import XGBoostModel, XGBoostParams, fit_xgboost


@dataclass(frozen=True)
class TrainingConfig:
    """How a training set is split and judged (fractions, minutes, dollars, feature counts)."""

    validation_fraction: float = 0.25
    embargo_minutes: int = 30
    screen_features: int = 40
    trade_fraction: float = 0.1
    position_dollars: float = 2500.0
    walk_forward_folds: int = 3


@dataclass
class TrainedModel:
    """A fitted model with its inputs, trading threshold and validation metrics."""

    kind: str  # "xgboost" | "lstm" | "attention"
    model: Any  # XGBoostModel | NeuralModel
    columns: list[str]
    threshold: float  # |prediction| at which a row trades (top trade_fraction on validation)
    scale: float  # standard deviation of the validation predictions
    calibration: float  # expected excess return (bps) per unit of prediction, from validation
    validation: dict[str, float]
    device: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def predict(self, data: Matrix) -> np.ndarray:
        x = data.x[:, column_index(data, self.columns)]
        if self.kind == "xgboost":
            return self.model.predict(x)
        return self.model.predict(x, data.group)


def split(data: Matrix, config: TrainingConfig) -> tuple[Matrix, Matrix]:
    """Train and validation rows: whole validation sessions last, train purged and embargoed."""
    parts = holdout_split(
        data.ts,
        data.label_end,
        validation_fraction=config.validation_fraction,
        embargo=np.timedelta64(config.embargo_minutes, "m"),
        session=data.session,
    )
    return data.take(parts.train), data.take(parts.validation)


def _columns(data: Matrix, columns: list[str]) -> Matrix:
    index = column_index(data, columns)
    return dataclasses.replace(data, x=data.x[:, index], columns=tuple(columns))


def fit(
    rows: pl.DataFrame | Matrix,
    kind: str,
    config: TrainingConfig,
    params: XGBoostParams | NeuralConfig | None = None,
) -> TrainedModel:
    """Fit ``kind`` on a labelled training set and score it on its purged validation sessions."""
    began = time.perf_counter()
    data = rows if isinstance(rows, Matrix) else to_matrix(rows)
    train, valid = split(data, config)
    columns = screen_features(train, config.screen_features)
    train, valid = _columns(train, columns), _columns(valid, columns)
    if kind == "xgboost":
        params = params or XGBoostParams(trade_fraction=config.trade_fraction)
        model: XGBoostModel | NeuralModel = fit_xgboost(train, valid, params)
        prediction = model.predict(valid.x)
        details = {"best_iteration": model.best_iteration, "objective": params.objective}
    elif kind in ("lstm", "attention"):
        params = params or NeuralConfig(architecture=kind)
        if params.architecture != kind:
            raise ValueError(f"a {kind} model needs architecture={kind!r}")
        model = fit_neural(
            train.x,
            train.group,
            train.target_bps,
            valid.x,
            valid.group,
            valid.target_bps,
            config=params,
            feature_names=columns,
        )
        prediction = model.predict(valid.x, valid.group)
        details = {"best_epoch": model.best_epoch, "epochs_run": model.epochs_run}
    else:
        raise ValueError(f"unknown model kind {kind!r}; use xgboost, lstm or attention")
    threshold = metrics.trade_threshold(prediction, config.trade_fraction)
    calibration = calibrate(prediction, valid)
    validation = score(
        prediction,
        valid,
        threshold=threshold,
        position_dollars=config.position_dollars,
        calibration=calibration,
    )
    return TrainedModel(
        kind=kind,
        model=model,
        columns=columns,
        threshold=threshold,
        scale=float(np.std(prediction)) or 1.0,
        calibration=calibration,
        validation=validation,
        device=model.device,
        seconds=time.perf_counter() - began,
        details={**details, "train_rows": len(train), "validation_rows": len(valid)},
    )


_QUICK = XGBoostParams(
    objective="squared_error", n_rounds=120, early_stopping_rounds=20, learning_rate=0.1
)


def _quick_score(train: Matrix, valid: Matrix, config: TrainingConfig) -> tuple[int, dict]:
    """A quick XGBoost on the screened features of ``train``, scored on ``valid``: the yardstick
    the walk-forward and cross-timeframe tables share. Returns (features used, metrics)."""
    columns = screen_features(train, config.screen_features)
    model = fit_xgboost(_columns(train, columns), _columns(valid, columns), _QUICK)
    prediction = model.predict(_columns(valid, columns).x)
    threshold = metrics.trade_threshold(prediction, config.trade_fraction)
    return len(columns), score(
        prediction, valid, threshold=threshold, position_dollars=config.position_dollars
    )


def walk_forward(data: Matrix, config: TrainingConfig) -> pl.DataFrame:
    """Rolling purged folds across the window: train on earlier sessions, score the next ones."""
    sessions = np.unique(data.session)
    validation_sessions = max(1, len(sessions) // (config.walk_forward_folds + 2))
    folds = walk_forward_splits(
        data.ts,
        data.label_end,
        train_sessions=len(sessions) - validation_sessions * config.walk_forward_folds,
        validation_sessions=validation_sessions,
        embargo=np.timedelta64(config.embargo_minutes, "m"),
        session=data.session,
        max_folds=config.walk_forward_folds,
    )
    records = []
    for number, fold in enumerate(folds, start=1):
        _, result = _quick_score(data.take(fold.train), data.take(fold.validation), config)
        records.append(
            {
                "fold": number,
                "validation_start": str(fold.validation_start)[:10],
                "train_rows": len(fold.train),
                "purged": fold.purged,
                **{k: result[k] for k in ("ic", "rank_ic", "hit_rate", "dollar_profit")},
            }
        )
    return pl.DataFrame(records)


def cross_timeframe(data: Matrix, config: TrainingConfig) -> pl.DataFrame:
    """Validation IC of a model given only one timeframe's features, per timeframe."""
    train, valid = split(data, config)
    records = []
    for timeframe in TIMEFRAMES:
        columns = [c for c in data.columns if c.endswith(f"_{timeframe}")]
        if not columns:
            continue
        used, result = _quick_score(_columns(train, columns), _columns(valid, columns), config)
        records.append(
            {
                "timeframe": timeframe,
                "features": used,
                **{k: result[k] for k in ("ic", "rank_ic", "dollar_profit")},
            }
        )
    return pl.DataFrame(records)
