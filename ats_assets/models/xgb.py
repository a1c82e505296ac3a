"""XGBoost on histogram trees, with a standard objective or a dollar-P&L surrogate.

The dollar objective treats the raw score f of a row as a position p = tanh(f) (long +1 ..
short -1, in units of the fixed position size) and minimises the negative of its net profit

    loss(f) = -(p * y - c * sqrt(p^2 + eps^2))

where y is the row's excess forward return and c its round-trip cost, both in basis points; the
square root is a smooth |p| so the cost term has a gradient at p = 0. Its gradient and Hessian with
respect to f are given in closed form below; the Hessian is floored so each Newton step stays a
descent step where the loss is locally concave. Both objectives stop early on the validation
rows' dollar profit (the common trading rule: trade the rows whose |score| is in the top
``trade_fraction``), keeping the best round.

``xgboost`` is imported inside the functions: the code location must load without it.
"""

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ats_assets.models import metrics
from ats_assets.models.dataset import BPS, Matrix

EPS = 0.1  # smoothing of |p| in the cost term, in position units
OBJECTIVES = ("dollar_pnl", "squared_error")


@dataclass(frozen=True)
class XGBoostParams:
    """Tree and training settings (rounds, depth, rates); ``device`` None picks CUDA when present."""

    objective: Literal["dollar_pnl", "squared_error"] = "dollar_pnl"
    max_depth: int = 3
    learning_rate: float = 0.1
    n_rounds: int = 300
    early_stopping_rounds: int = 40
    min_child_weight: float = 50.0
    reg_lambda: float = 10.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    trade_fraction: float = 0.1
    seed: int = 7
    device: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.max_depth < 1 or self.n_rounds < 1 or self.early_stopping_rounds < 1:
            raise ValueError("max_depth, n_rounds and early_stopping_rounds must be at least 1")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if not 0.0 < self.subsample <= 1.0 or not 0.0 < self.colsample_bytree <= 1.0:
            raise ValueError("subsample and colsample_bytree must be in (0, 1]")


def dollar_objective(score: np.ndarray, y: np.ndarray, cost: np.ndarray):
    """Gradient and Hessian of the dollar surrogate w.r.t. the raw score (see module docstring)."""
    p = np.tanh(score)
    dp = 1.0 - p * p  # dp/df
    root = np.sqrt(p * p + EPS * EPS)
    dloss_dp = -y + cost * p / root
    d2loss_dp2 = cost * EPS * EPS / root**3
    grad = dloss_dp * dp
    hess = d2loss_dp2 * dp * dp + dloss_dp * (-2.0 * p * dp)
    floor = 0.1 * max(float(np.mean(cost)), 1e-3) / EPS
    return grad, np.maximum(hess, floor * dp * dp + 1e-6)


def validation_dollars(score: np.ndarray, data: Matrix, fraction: float) -> float:
    """Net dollars per $1 position of trading the top ``fraction`` of |score| (the stop rule)."""
    threshold = metrics.trade_threshold(score, fraction)
    traded = np.abs(score) >= threshold
    side = np.sign(score[traded])
    return float(np.sum(side * data.fwd_return[traded] - data.cost_bps[traded] / BPS))


def pick_device(preferred: str | None = None) -> str:
    """ "cuda" when a CUDA device is visible to XGBoost (or asked for), else "cpu"."""
    if preferred:
        return preferred
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):
        return "cpu"
    try:
        xgb.train(
            {"device": "cuda", "tree_method": "hist", "verbosity": 0},
            xgb.DMatrix(np.zeros((2, 1)), label=np.zeros(2)),
            num_boost_round=1,
        )
    except Exception:  # no CUDA build or no device: XGBoost raises an XGBoostError
        return "cpu"
    return "cuda"


@dataclass
class XGBoostModel:
    """A trained booster and what it needs to predict: its columns and its best round."""

    booster: Any
    columns: tuple[str, ...]
    params: XGBoostParams
    best_iteration: int
    device: str
    history: list[float]  # validation dollars per $1 position, by round

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores of rows ``x`` (columns in ``self.columns`` order); higher = more bullish."""
        import xgboost as xgb

        matrix = xgb.DMatrix(np.asarray(x, dtype=np.float32), missing=np.nan)
        return self.booster.predict(
            matrix, iteration_range=(0, self.best_iteration + 1), output_margin=True
        ).astype(np.float64)

    def to_files(self) -> dict[str, bytes]:
        """XGBoost's own UBJSON model plus a JSON description (no pickle)."""
        meta = {
            "kind": "xgboost",
            "columns": list(self.columns),
            "params": asdict(self.params),
            "best_iteration": self.best_iteration,
            "device": self.device,
            "history": self.history,
        }
        raw = self.booster.save_raw(raw_format="ubj")
        return {"model.ubj": bytes(raw), "model.json": json.dumps(meta).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> "XGBoostModel":
        import xgboost as xgb

        meta = json.loads(files["model.json"])
        booster = xgb.Booster()
        booster.load_model(bytearray(files["model.ubj"]))
        booster.set_param({"device": "cpu"})
        params = XGBoostParams(**meta["params"])
        return cls(
            booster, tuple(meta["columns"]), params, meta["best_iteration"], "cpu", meta["history"]
        )


def fit_xgboost(train: Matrix, valid: Matrix, params: XGBoostParams) -> XGBoostModel:
    """Train on ``train``, stopping early on ``valid``'s dollar profit (rows in matrix columns)."""
    import xgboost as xgb

    device = pick_device(params.device)
    booster_params = {
        "tree_method": "hist",
        "device": device,
        "max_depth": params.max_depth,
        "eta": params.learning_rate,
        "min_child_weight": params.min_child_weight,
        "lambda": params.reg_lambda,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "seed": params.seed,
        "nthread": 0,
        "verbosity": 0,
        "disable_default_eval_metric": 1,
    }
    dtrain = xgb.DMatrix(train.x, label=train.target_bps, missing=np.nan)
    dvalid = xgb.DMatrix(valid.x, label=valid.target_bps, missing=np.nan)
    obj = None
    if params.objective == "dollar_pnl":
        booster_params["base_score"] = 0.0
        cost = train.cost_bps

        def obj(score: np.ndarray, _: Any) -> tuple[np.ndarray, np.ndarray]:
            return dollar_objective(score, train.target_bps, cost)
    else:
        booster_params["objective"] = "reg:squarederror"

    history: list[float] = []

    def dollars(score: np.ndarray, _: Any) -> tuple[str, float]:
        value = validation_dollars(
            np.asarray(score, dtype=np.float64), valid, params.trade_fraction
        )
        history.append(value)
        return "dollars", value

    stop = xgb.callback.EarlyStopping(
        rounds=params.early_stopping_rounds, metric_name="dollars", maximize=True, save_best=False
    )
    booster = xgb.train(
        booster_params,
        dtrain,
        num_boost_round=params.n_rounds,
        obj=obj,
        custom_metric=dollars,
        evals=[(dvalid, "valid")],
        callbacks=[stop],
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", len(history) - 1))
    booster.set_param({"device": "cpu"})
    return XGBoostModel(booster, train.columns, params, best, device, history)
