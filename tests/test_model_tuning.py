"""XGBoost tuning: bounded by trials and time, reproducible with a seed, never worse than base."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ats_assets.models import metrics
from ats_assets.models.dataset import Matrix, calibrate, score, to_matrix
from ats_assets.models.training import TrainingConfig, split
from ats_assets.models.tuning import TuningConfig, tune_xgboost, tuned_fit
from ats_assets.models.xgb import XGBoostParams, fit_xgboost

pytest.importorskip("optuna")
pytest.importorskip("xgboost")

TICKERS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
SESSIONS = 8
BARS = 75  # 5-minute decisions per ticker and session: 5 * 8 * 75 = 3000 rows
FEATURES = [f"f{i}" for i in range(6)]
CONFIG = TrainingConfig(validation_fraction=0.25, embargo_minutes=30, screen_features=40)
# small and quick: the search varies the tree shape, not the number of rounds
BASE = XGBoostParams(objective="squared_error", n_rounds=60, early_stopping_rounds=10, device="cpu")


def _rows(seed: int = 0) -> pl.DataFrame:
    """Rows with a planted relation: the forward return follows f0 and (f1 where f2 > 0)."""
    rng = np.random.default_rng(seed)
    records: dict[str, list] = {"session": [], "ticker": [], "ts": []}
    first = date(2024, 3, 4)
    for day in range(SESSIONS):
        session = first + timedelta(days=day)
        opening = datetime(session.year, session.month, session.day, 14, 30, tzinfo=UTC)
        for ticker in TICKERS:
            for bar in range(BARS):
                records["session"].append(session)
                records["ticker"].append(ticker)
                records["ts"].append(opening + timedelta(minutes=4 + 5 * bar))
    n = len(records["ts"])
    x = rng.standard_normal((n, len(FEATURES)))
    signal = 0.002 * x[:, 0] + 0.002 * x[:, 1] * (x[:, 2] > 0)
    fwd_return = signal + 0.002 * rng.standard_normal(n)
    cost_bps = rng.uniform(1.0, 4.0, n)
    frame = pl.DataFrame(records).with_columns(label_end=pl.col("ts") + pl.duration(minutes=31))
    return frame.with_columns(
        *[pl.Series(name, x[:, j]) for j, name in enumerate(FEATURES)],
        fwd_return=pl.Series(fwd_return),
        cost_bps=pl.Series(cost_bps),
        label_pnl=pl.Series(2500.0 * (fwd_return - cost_bps / 1e4)),
    )


@pytest.fixture(scope="module")
def data() -> Matrix:
    return to_matrix(_rows())


@pytest.fixture(scope="module")
def parts(data: Matrix) -> tuple[Matrix, Matrix]:
    return split(data, CONFIG)


def test_the_synthetic_set_is_what_the_tests_assume(data: Matrix, parts) -> None:
    train, valid = parts
    assert len(data) == 3000 and data.columns == tuple(FEATURES)
    assert len(np.unique(data.session)) == SESSIONS
    assert len(train) > 0 and len(valid) == 2 * len(TICKERS) * BARS


def test_tuning_runs_exactly_the_requested_trials(parts) -> None:
    train, valid = parts
    best, summary = tune_xgboost(train, valid, BASE, TuningConfig(trials=4, timeout_s=60.0))
    assert summary["trials"] == 4 and not summary["timed_out"]
    assert [t["number"] for t in summary["history"]] == [0, 1, 2, 3]
    assert summary["metric"] == "dollar_profit"
    assert summary["best_value"] == max(t["value"] for t in summary["history"])
    # the first trial is the base settings; the rest stay inside the search space
    assert summary["history"][0]["params"]["max_depth"] == BASE.max_depth
    for trial in summary["history"]:
        p = trial["params"]
        assert 2 <= p["max_depth"] <= 6 and 0.02 <= p["learning_rate"] <= 0.3
        assert 5 <= p["min_child_weight"] <= 500 and 0.1 <= p["reg_lambda"] <= 100
        assert 0.5 <= p["subsample"] <= 1.0 and 0.3 <= p["colsample_bytree"] <= 1.0
    # only the sampled fields change
    assert best.objective == BASE.objective and best.n_rounds == BASE.n_rounds
    assert best.early_stopping_rounds == BASE.early_stopping_rounds
    assert best.seed == BASE.seed and best.device == BASE.device
    assert best.max_depth == summary["best_params"]["max_depth"]
    assert best.learning_rate == summary["best_params"]["learning_rate"]


def test_the_same_seed_picks_the_same_settings(parts) -> None:
    train, valid = parts
    config = TuningConfig(trials=5, timeout_s=60.0, seed=11, objective_metric="ic")
    first, one = tune_xgboost(train, valid, BASE, config)
    second, two = tune_xgboost(train, valid, BASE, config)
    assert first == second
    assert one["best_value"] == two["best_value"]
    assert [t["params"] for t in one["history"]] == [t["params"] for t in two["history"]]


def test_the_tuned_model_validates_at_least_as_well_as_the_base(data: Matrix, parts) -> None:
    train, valid = parts
    base_model = fit_xgboost(train, valid, BASE)
    prediction = base_model.predict(valid.x)
    base_score = score(
        prediction,
        valid,
        threshold=metrics.trade_threshold(prediction, CONFIG.trade_fraction),
        position_dollars=CONFIG.position_dollars,
        calibration=calibrate(prediction, valid),
    )
    trained = tuned_fit(data, CONFIG, TuningConfig(trials=6, timeout_s=60.0), BASE)
    tuning = trained.details["tuning"]
    assert tuning["trials"] == 6
    assert tuning["history"][0]["value"] == pytest.approx(base_score["dollar_profit"])
    # training.fit refits the best settings on the same split: the same model, the same score
    assert trained.validation["dollar_profit"] == pytest.approx(tuning["best_value"])
    assert trained.validation["dollar_profit"] >= base_score["dollar_profit"] - 1e-6
    assert trained.validation["ic"] > 0.2  # the planted relation is learned
    assert trained.model.params.max_depth == tuning["best_params"]["max_depth"]


def test_tuned_fit_accepts_a_frame() -> None:
    trained = tuned_fit(_rows(1), CONFIG, TuningConfig(trials=1), BASE)
    assert trained.kind == "xgboost" and trained.details["tuning"]["trials"] == 1
    assert trained.columns == FEATURES


def test_a_timeout_stops_the_search_early(parts) -> None:
    train, valid = parts
    began = time.perf_counter()
    _, summary = tune_xgboost(train, valid, BASE, TuningConfig(trials=1000, timeout_s=0.5))
    assert time.perf_counter() - began < 10.0
    assert 1 <= summary["trials"] < 1000 and summary["timed_out"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trials": 0},
        {"trials": 2.5},
        {"timeout_s": 0.0},
        {"timeout_s": -1.0},
        {"objective_metric": "sharpe"},
    ],
)
def test_bad_settings_are_rejected(kwargs) -> None:
    with pytest.raises(ValueError):
        TuningConfig(**kwargs)


def test_bad_scoring_arguments_are_rejected(parts) -> None:
    train, valid = parts
    with pytest.raises(ValueError, match="trade_fraction"):
        tune_xgboost(train, valid, BASE, TuningConfig(trials=1), trade_fraction=0.0)
    with pytest.raises(ValueError, match="position_dollars"):
        tune_xgboost(train, valid, BASE, TuningConfig(trials=1), position_dollars=0.0)


def test_the_module_loads_without_optuna_or_xgboost() -> None:
    code = (
        "import sys; sys.modules['optuna'] = None; sys.modules['xgboost'] = None; "
        "import ats_assets.models.tuning"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
