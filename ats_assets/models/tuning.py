"""Bounded, seeded hyperparameter search for the XGBoost model (optuna's TPE sampler).

Each trial samples the tree shape and regularisation (depth, learning rate, minimum child weight,
L2 penalty, row and column subsampling), keeps everything else of the base settings (objective,
seed, rounds, early stopping, device, stopping rule's trade fraction), fits on the training rows
with early stopping on the validation rows and scores the validation predictions with the common
trading rule (trade the top ``trade_fraction`` of |prediction|). The first trial is the base
settings themselves (clipped into the search ranges), so the best trial is never worse than the
base on the tuning metric. The search stops after ``trials`` trials or once ``timeout_s`` seconds
have passed (checked between trials); with the same seed and no timeout it picks the same
settings every time.

``optuna`` and ``xgboost`` are imported inside the functions: the code location must load without
them.
"""

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import polars as pl

from ats_assets.models import metrics, training
from ats_assets.models.dataset import Matrix, calibrate, score, screen_features, to_matrix
from ats_assets.models.training import TrainedModel, TrainingConfig
from ats_assets.models.xgb import XGBoostParams, fit_xgboost, pick_device

METRICS = ("dollar_profit", "ic")

# name: (low, high, log scale); integers are sampled as integers
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    "max_depth": (2, 6, False),
    "learning_rate": (0.02, 0.3, True),
    "min_child_weight": (5.0, 500.0, True),
    "reg_lambda": (0.1, 100.0, True),
    "subsample": (0.5, 1.0, False),
    "colsample_bytree": (0.3, 1.0, False),
}


@dataclass(frozen=True)
class TuningConfig:
    """How long to search (trials, seconds), its seed, and the validation metric it maximises."""

    trials: int = 20
    timeout_s: float = 120.0
    seed: int = 7
    objective_metric: str = "dollar_profit"  # or "ic"

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"trials must be an integer of at least 1, got {self.trials!r}")
        if not (isinstance(self.timeout_s, int | float) and self.timeout_s > 0):
            raise ValueError(
                f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}"
            )
        if self.objective_metric not in METRICS:
            raise ValueError(
                f"objective_metric must be one of {METRICS}, got {self.objective_metric!r}"
            )


def _base_trial(base: XGBoostParams) -> dict[str, float | int]:
    """The base settings as trial parameters, clipped into the search ranges."""
    values: dict[str, float | int] = {}
    for name, (low, high, _) in SEARCH_SPACE.items():
        value = min(max(getattr(base, name), low), high)
        values[name] = round(value) if name == "max_depth" else float(value)
    return values


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def tune_xgboost(
    train: Matrix,
    valid: Matrix,
    base: XGBoostParams,
    config: TuningConfig,
    *,
    position_dollars: float = 2500.0,
    trade_fraction: float = 0.1,
) -> tuple[XGBoostParams, dict[str, Any]]:
    """Search the XGBoost settings on ``train`` / ``valid`` (already column-screened matrices).

    Returns the best settings (``base`` with the sampled fields replaced) and a summary for
    metadata: ``trials`` run, ``best_value``, ``best_params``, ``seconds``, ``metric``,
    ``timed_out`` and ``history``, one ``{number, value, params, best_iteration}`` per finished
    trial. A trial
    whose metric is not finite (e.g. constant predictions have no IC) scores -inf for the search
    and None in the summary.
    """
    import optuna

    if position_dollars <= 0:
        raise ValueError(f"position_dollars must be positive, got {position_dollars}")
    if not 0.0 < trade_fraction <= 1.0:
        raise ValueError(f"trade_fraction must be in (0, 1], got {trade_fraction}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = pick_device(base.device)  # probe for CUDA once, not once per trial
    metric = config.objective_metric

    def objective(trial: "optuna.Trial") -> float:
        sampled: dict[str, Any] = {}
        for name, (low, high, log) in SEARCH_SPACE.items():
            if name == "max_depth":
                sampled[name] = trial.suggest_int(name, int(low), int(high))
            else:
                sampled[name] = trial.suggest_float(name, low, high, log=log)
        params = dataclasses.replace(base, device=device, **sampled)
        model = fit_xgboost(train, valid, params)
        prediction = model.predict(valid.x)
        result = score(
            prediction,
            valid,
            threshold=metrics.trade_threshold(prediction, trade_fraction),
            position_dollars=position_dollars,
            calibration=calibrate(prediction, valid),  # the same trading rule as training.fit
        )
        trial.set_user_attr("best_iteration", model.best_iteration)
        value = float(result[metric])
        return value if math.isfinite(value) else float("-inf")

    began = time.perf_counter()
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.enqueue_trial(_base_trial(base))
    study.optimize(objective, n_trials=config.trials, timeout=config.timeout_s)
    seconds = time.perf_counter() - began

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    best_params = {
        name: int(value) if name == "max_depth" else float(value)
        for name, value in best.params.items()
    }
    summary = {
        "trials": len(done),
        "trials_requested": config.trials,
        "timed_out": len(done) < config.trials,
        "best_value": _finite(best.value),
        "best_trial": best.number,
        "best_params": best_params,
        "seconds": seconds,
        "metric": metric,
        "seed": config.seed,
        "history": [
            {
                "number": t.number,
                "value": _finite(t.value),
                "params": dict(t.params),
                "best_iteration": t.user_attrs.get("best_iteration"),
            }
            for t in done
        ],
    }
    return dataclasses.replace(base, **best_params), summary


def tuned_fit(
    rows_or_matrix: pl.DataFrame | Matrix,
    config: TrainingConfig,
    tuning: TuningConfig,
    base: XGBoostParams | None = None,
) -> TrainedModel:
    """Tune XGBoost on the same purged split and screened columns ``training.fit`` uses, then fit
    the best settings with ``training.fit``; the search summary is in ``details["tuning"]``."""
    data = rows_or_matrix if isinstance(rows_or_matrix, Matrix) else to_matrix(rows_or_matrix)
    base = base or XGBoostParams(trade_fraction=config.trade_fraction)
    train, valid = training.split(data, config)
    columns = screen_features(train, config.screen_features)
    best, summary = tune_xgboost(
        training._columns(train, columns),
        training._columns(valid, columns),
        base,
        tuning,
        position_dollars=config.position_dollars,
        trade_fraction=config.trade_fraction,
    )
    trained = training.fit(data, "xgboost", config, best)
    trained.details["tuning"] = summary
    return trained
