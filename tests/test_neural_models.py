"""Sequence models: windows per ticker, learning a planted relation, determinism and storage."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from ats_assets.models.metrics import pearson
from ats_assets.models.neural import (
    NeuralConfig,
    NeuralModel,
    build_sequences,
    fit_neural,
    pick_device,
)

TICKERS = 24
ROWS_PER_TICKER = 160
TRAIN_ROWS_PER_TICKER = 120  # the rest of each ticker's rows validate
FEATURES = [f"f{i}" for i in range(6)]
LAG = 2  # rows: the target depends on feature f0 this many rows back in the same ticker
SMALL = NeuralConfig(
    sequence_length=6,
    hidden_size=16,
    heads=2,
    dropout=0.0,
    epochs=6,
    batch_size=128,
    learning_rate=3e-3,
    patience=3,
)


def _planted(seed: int = 0) -> dict[str, np.ndarray]:
    """Rows sorted by (ticker, ts); y = f0 two rows earlier in the same ticker, plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(TICKERS, ROWS_PER_TICKER, len(FEATURES))).astype(np.float32)
    y = np.full((TICKERS, ROWS_PER_TICKER), np.nan)
    y[:, LAG:] = 0.01 * x[:, :-LAG, 0] + 0.005 * rng.normal(size=(TICKERS, ROWS_PER_TICKER - LAG))
    group = np.repeat(np.arange(TICKERS), ROWS_PER_TICKER).reshape(TICKERS, ROWS_PER_TICKER)
    t, v = slice(None, TRAIN_ROWS_PER_TICKER), slice(TRAIN_ROWS_PER_TICKER, None)
    flat = lambda a, part: a[:, part].reshape(-1, *a.shape[2:])  # noqa: E731
    return {
        "x_train": flat(x, t),
        "group_train": flat(group, t),
        "y_train": flat(y, t),
        "x_valid": flat(x, v),
        "group_valid": flat(group, v),
        "y_valid": flat(y, v),
    }


def _fit(config: NeuralConfig, data: dict[str, np.ndarray] | None = None) -> NeuralModel:
    return fit_neural(**(data or _planted()), config=config, feature_names=FEATURES, device="cpu")


@pytest.fixture(scope="module", params=["lstm", "attention"])
def trained(request: pytest.FixtureRequest) -> NeuralModel:
    return _fit(replace(SMALL, architecture=request.param))


def test_sequences_are_left_padded_with_zeros_within_each_ticker() -> None:
    x = np.arange(1, 11, dtype=np.float32).reshape(5, 2)  # rows 1..5 -> [2i-1, 2i]
    group = np.array([3, 3, 3, 8, 8])
    sequences = build_sequences(x, group, 3)
    assert sequences.shape == (5, 3, 2)
    np.testing.assert_array_equal(sequences[0], [[0, 0], [0, 0], [1, 2]])
    np.testing.assert_array_equal(sequences[2], [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(sequences[3], [[0, 0], [0, 0], [7, 8]])  # no row of ticker 3
    np.testing.assert_array_equal(sequences[4], [[0, 0], [7, 8], [9, 10]])


def test_sequences_reject_rows_not_sorted_by_ticker() -> None:
    with pytest.raises(ValueError, match="sorted by ticker"):
        build_sequences(np.zeros((3, 1), np.float32), np.array([0, 1, 0]), 2)


def test_model_learns_a_lagged_relation_within_a_ticker(trained: NeuralModel) -> None:
    data = _planted()
    prediction = trained.predict(data["x_valid"], data["group_valid"])
    assert prediction.dtype == np.float64
    assert pearson(prediction, data["y_valid"]) > 0.3
    assert trained.history[trained.best_epoch - 1]["valid_ic"] > 0.3
    assert trained.epochs_run == len(trained.history) <= SMALL.epochs


def test_predictions_are_in_target_units(trained: NeuralModel) -> None:
    data = _planted()
    prediction = trained.predict(data["x_valid"], data["group_valid"])
    target_std = np.nanstd(data["y_train"])
    assert trained.target_scale == pytest.approx(target_std, rel=1e-6)
    assert 0.2 * target_std < np.std(prediction) < 2 * target_std


@pytest.mark.parametrize("architecture", ["lstm", "attention"])
def test_training_twice_with_the_same_seed_on_cpu_gives_identical_predictions(
    architecture: str,
) -> None:
    import torch

    config = replace(SMALL, architecture=architecture, epochs=2, dropout=0.1)
    data = _planted()
    first, second = _fit(config), _fit(config)
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is restored
    np.testing.assert_array_equal(
        first.predict(data["x_valid"], data["group_valid"]),
        second.predict(data["x_valid"], data["group_valid"]),
    )
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]


def test_saved_files_round_trip_to_identical_predictions(trained: NeuralModel) -> None:
    import torch

    files = trained.to_files()
    state = torch.load(io.BytesIO(files["state.pt"]), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    meta = json.loads(files["config.json"])
    assert meta["feature_names"] == FEATURES and meta["best_epoch"] == trained.best_epoch
    loaded = NeuralModel.from_files(files)
    data = _planted()
    np.testing.assert_array_equal(
        loaded.predict(data["x_valid"], data["group_valid"]),
        trained.predict(data["x_valid"], data["group_valid"]),
    )
    assert loaded.config == trained.config and loaded.history == trained.history


def test_missing_inputs_do_not_produce_missing_predictions() -> None:
    data = _planted()
    rng = np.random.default_rng(1)
    for name in ("x_train", "x_valid"):
        x = data[name].copy()
        x[rng.random(x.shape) < 0.1] = np.nan
        x[:, 5] = np.nan  # a feature never observed
        x[3, 1] = np.inf
        data[name] = x
    model = _fit(replace(SMALL, epochs=1), data)
    prediction = model.predict(data["x_valid"], data["group_valid"])
    assert np.isfinite(prediction).all()


def test_training_stops_at_the_time_budget() -> None:
    model = _fit(replace(SMALL, epochs=50, max_seconds=1e-6))
    assert model.epochs_run == 1 and model.best_epoch == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"architecture": "gru"},
        {"sequence_length": 0},
        {"hidden_size": -1},
        {"architecture": "attention", "hidden_size": 30, "heads": 4},
        {"dropout": 1.0},
        {"learning_rate": 0.0},
        {"weight_decay": -1e-4},
        {"patience": 0},
        {"batch_size": 2.5},
        {"max_seconds": 0.0},
    ],
)
def test_a_bad_config_raises_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        NeuralConfig(**bad)


def test_pick_device_is_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv("ATS_DEVICE", raising=False)
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == "cpu"
    monkeypatch.setenv("ATS_DEVICE", "cpu")
    assert pick_device() == "cpu"


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, ats_assets.models.neural; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("architecture", ["lstm", "attention"])
def test_predicting_chosen_rows_equals_predicting_all_of_them(architecture):
    """Live trading predicts only the latest row per ticker, the earlier rows as history."""
    import numpy as np

    from ats_assets.models.neural import NeuralConfig, fit_neural

    rng = np.random.default_rng(4)
    x = rng.normal(size=(240, 5)).astype(np.float32)
    group = np.repeat(np.arange(4), 60)
    y = x[:, 0] * 0.5 + rng.normal(scale=0.1, size=240)
    config = NeuralConfig(architecture=architecture, epochs=1, sequence_length=6, hidden_size=8)
    model = fit_neural(x, group, y, x, group, y, config, [f"f{i}" for i in range(5)], "cpu")
    everything = model.predict(x, group)
    latest = np.array([59, 119, 179, 239])
    np.testing.assert_allclose(model.predict(x, group, rows=latest), everything[latest], rtol=1e-5)
