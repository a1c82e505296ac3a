"""One way to load any stored model and predict with a confidence, for backtests and live trading.

A stored model is a set of files verified against its sha256 by the model store; ``serving.json``
says what kind it is, its input columns, its trading threshold and its prediction scale. The
ensemble's files name its members (asset, partition, model version, sha256), which are loaded and
verified in turn.

Each prediction comes with ``expected_bps``: the excess return it implies, calibrated on
validation rows, to weigh against a trade's cost.

Confidence, in [0, 1): for one model |p| / (|p| + threshold), so a prediction at the trading
threshold has confidence 0.5; for the ensemble that figure times the weighted share of members
that agree with the ensemble's sign.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ats_assets.models.labels import IDS

SERVING_FILE = "serving.json"
ENSEMBLE_FILE = "ensemble.json"


def serving_files(trained: Any) -> dict[str, bytes]:
    """The files that store a ``training.TrainedModel``: the model's own plus ``serving.json``."""
    meta = {
        "kind": trained.kind,
        "columns": trained.columns,
        "threshold": trained.threshold,
        "scale": trained.scale,
        "calibration": trained.calibration,
    }
    return {**trained.model.to_files(), SERVING_FILE: json.dumps(meta).encode()}


def rows_to_arrays(
    frame: pl.DataFrame, columns: list[str]
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Ids (session, ticker, ts) sorted by ticker and ts, the feature matrix and ticker codes."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(
            f"the feature rows lack model inputs {missing[:5]} (feature version mismatch?)"
        )
    frame = frame.sort("ticker", "ts")
    x = frame.select(pl.col(columns).cast(pl.Float32).fill_null(float("nan"))).to_numpy()
    group = frame["ticker"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    ids = frame.select([c for c in IDS if c in frame.columns])
    return ids, np.ascontiguousarray(x, dtype=np.float32), group


def _select(ids: pl.DataFrame, at: Any) -> tuple[pl.DataFrame, np.ndarray | None]:
    """(the ids of the rows at ``at``, their indices); all rows and None without ``at``."""
    if at is None:
        return ids, None
    rows = np.flatnonzero((ids["ts"] == at).to_numpy())
    return ids[rows], rows


def _confidence(prediction: np.ndarray, threshold: float) -> np.ndarray:
    magnitude = np.abs(prediction)
    return magnitude / (magnitude + max(threshold, 1e-12))


@dataclass
class Predictor:
    """One loaded model."""

    kind: str
    model: Any
    columns: list[str]
    threshold: float
    scale: float
    calibration: float = 0.0  # expected excess return (bps) per unit of prediction

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> "Predictor":
        meta = json.loads(files[SERVING_FILE])
        if meta["kind"] == "xgboost":
            from ats_assets.models.xgb import XGBoostModel

            model: Any = XGBoostModel.from_files(files)
        else:
            from ats_assets.models.neural import NeuralModel

            model = NeuralModel.from_files(files)
        return cls(
            meta["kind"],
            model,
            meta["columns"],
            meta["threshold"],
            meta["scale"],
            meta.get("calibration", 0.0),
        )

    def raw(self, x: np.ndarray, group: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Scores of every row, or of the rows at indices ``rows`` (the others as history)."""
        if self.kind == "xgboost":
            return self.model.predict(x if rows is None else x[rows])
        return self.model.predict(x, group, rows=rows)

    def predict(self, frame: pl.DataFrame, at: Any = None) -> pl.DataFrame:
        """Per row (sorted by ticker, ts): prediction, confidence and whether it would trade;
        with ``at``, only the rows whose ``ts`` is ``at``.

        Sequence models read each ticker's earlier rows in ``frame`` as history, so pass the
        recent sampled rows of every ticker, not only the latest."""
        ids, x, group = rows_to_arrays(frame, self.columns)
        ids, rows = _select(ids, at)
        prediction = self.raw(x, group, rows)
        return ids.with_columns(
            prediction=pl.Series(prediction),
            expected_bps=pl.Series(prediction * self.calibration),
            confidence=pl.Series(_confidence(prediction, self.threshold)),
            trade=pl.Series(np.abs(prediction) >= self.threshold),
        )


@dataclass
class EnsemblePredictor:
    """Members' predictions in units of their own validation scale, averaged with weights."""

    members: list[Predictor]
    weights: list[float]
    threshold: float
    calibration: float = 0.0  # expected excess return (bps) per unit of prediction

    def raw_with_agreement(
        self, frame: pl.DataFrame, at: Any = None
    ) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
        columns = sorted({c for m in self.members for c in m.columns})
        ids, x, group = rows_to_arrays(frame, columns)
        ids, rows = _select(ids, at)
        index = {c: j for j, c in enumerate(columns)}
        scaled = np.stack(
            [
                m.raw(np.ascontiguousarray(x[:, [index[c] for c in m.columns]]), group, rows)
                / m.scale
                for m in self.members
            ]
        )
        weights = np.asarray(self.weights)[:, None]
        combined = (weights * scaled).sum(axis=0)
        agreement = (weights * (np.sign(scaled) == np.sign(combined)[None, :])).sum(axis=0)
        return ids, combined, agreement

    def predict(self, frame: pl.DataFrame, at: Any = None) -> pl.DataFrame:
        ids, combined, agreement = self.raw_with_agreement(frame, at)
        return ids.with_columns(
            prediction=pl.Series(combined),
            expected_bps=pl.Series(combined * self.calibration),
            confidence=pl.Series(agreement * _confidence(combined, self.threshold)),
            agreement=pl.Series(agreement),
            trade=pl.Series(np.abs(combined) >= self.threshold),
        )


def ensemble_weights(validation_ic: dict[str, float]) -> dict[str, float]:
    """Weights proportional to each member's positive validation IC (equal if none is positive)."""
    positive = {k: max(v, 0.0) for k, v in validation_ic.items()}
    total = sum(positive.values())
    if total <= 0:
        return {k: 1.0 / len(validation_ic) for k in validation_ic}
    return {k: v / total for k, v in positive.items()}


class ModelServer:
    """Loads registry models from a model store (verifying sha256) and predicts for many tickers."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def load(
        self,
        asset: str,
        partition: str,
        model_version: str | None = None,
        weights: dict[str, float] | None = None,
    ) -> Predictor | EnsemblePredictor:
        """The stored model; for an ensemble, ``weights`` (member asset -> weight) replace the
        stored ones, e.g. the ``ensemble_weights`` asset's re-weighting on realized returns."""
        _, files = self.store.load(asset, partition, model_version)
        if ENSEMBLE_FILE not in files:
            return Predictor.from_files(files)
        meta = json.loads(files[ENSEMBLE_FILE])
        members = []
        for member in meta["members"]:
            ref, member_files = self.store.load(
                member["asset"], member["partition"], member["model_version"]
            )
            if ref.sha256 != member["sha256"]:
                raise RuntimeError(
                    f"ensemble member {member['asset']}/{member['partition']} has sha256 "
                    f"{ref.sha256[:12]}, the ensemble was built with {member['sha256'][:12]}: "
                    "re-materialize ensemble_model"
                )
            members.append(Predictor.from_files(member_files))
        chosen = meta["weights"]
        if weights is not None:
            names = [m["asset"] for m in meta["members"]]
            if set(weights) != set(names):
                raise ValueError(f"ensemble weights name {sorted(weights)}, members are {names}")
            chosen = [float(weights[name]) for name in names]
        return EnsemblePredictor(members, chosen, meta["threshold"], meta.get("calibration", 0.0))


def member_names(store: Any, asset: str, partition: str, model_version: str | None = None):
    """The member assets of a stored ensemble, in weight order (empty for a single model)."""
    _, files = store.load(asset, partition, model_version)
    if ENSEMBLE_FILE not in files:
        return []
    return [m["asset"] for m in json.loads(files[ENSEMBLE_FILE])["members"]]


def champion_as_of(warehouse: Any, day: Any) -> dict | None:
    """The ``champion_model`` row in force on session ``day``: the latest one decided in an
    earlier week (week W's champion is trained through W and trades from W+1), as asset,
    partition, model_version, sha256, week; None when there is none."""
    from datetime import timedelta

    if "champion_model" not in warehouse.tables():
        return None
    monday = day - timedelta(days=day.weekday())
    rows = warehouse.read_table("champion_model").filter(
        (pl.col("week") < monday) & pl.col("partition").is_not_null()
    )
    return rows.sort("week").row(-1, named=True) if len(rows) else None
