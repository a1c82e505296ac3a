"""Sequence models (an LSTM, a small transformer) over per-ticker feature windows that predict a forward return."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ats_assets.models.metrics import pearson

# torch is imported inside functions only: the Dagster code location imports this module at load.

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import torch
    from torch import nn

ARCHITECTURES = ("lstm", "attention")
FEATURE_CLIP = 8.0  # standard deviations of a training feature
TARGET_CLIP = 5.0  # standard deviations of the training target
GRADIENT_CLIP = 1.0  # global gradient norm
PREDICT_BATCH = 8192  # sequences per forward pass when predicting
STANDARDISE_CHUNK = 65_536  # rows standardised at a time (bounds temporary memory)


@dataclass(frozen=True)
class NeuralConfig:
    """Architecture and training settings. ``sequence_length`` is in rows (sampled bars),
    ``max_seconds`` is wall-clock seconds of training, ``dropout`` a fraction."""

    architecture: str = "lstm"
    sequence_length: int = 12
    hidden_size: int = 32
    layers: int = 1
    heads: int = 4
    dropout: float = 0.1
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    seed: int = 7
    max_seconds: float = 180.0

    def __post_init__(self) -> None:
        counts = ("sequence_length", "hidden_size", "layers", "heads", "epochs", "batch_size")
        rules = {
            f"{name} must be a positive integer": _positive_int(getattr(self, name))
            for name in (*counts, "patience")
        }
        rules |= {
            f"architecture must be one of {ARCHITECTURES}": self.architecture in ARCHITECTURES,
            "hidden_size must be divisible by heads": self.architecture != "attention"
            or (_positive_int(self.heads) and self.hidden_size % self.heads == 0),
            "dropout must be a fraction in [0, 1)": 0.0 <= self.dropout < 1.0,
            "learning_rate must be positive": self.learning_rate > 0.0,
            "weight_decay must be non-negative": self.weight_decay >= 0.0,
            "seed must be an integer": isinstance(self.seed, int),
            "max_seconds must be positive": self.max_seconds > 0.0,
        }
        problems = [rule for rule, ok in rules.items() if not ok]
        if problems:
            raise ValueError(f"bad NeuralConfig {self}: " + "; ".join(problems))


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def sequence_index(group: np.ndarray, sequence_length: int) -> np.ndarray:
    """Row numbers of each row's window, shape (rows, sequence_length), oldest first.

    Positions before the ticker's first row hold ``rows`` (one past the last row), which indexes
    a zero padding row appended to the feature matrix. Raises ValueError when a ticker's rows
    are not contiguous (the input must be sorted by ticker, then time).
    """
    group = np.asarray(group)
    if group.ndim != 1:
        raise ValueError(f"group must be one-dimensional, not shape {group.shape}")
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be at least 1, not {sequence_length}")
    rows = len(group)
    starts = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1] if rows else np.zeros(0, int)
    if len(starts) != len(np.unique(group)):
        raise ValueError("rows must be sorted by ticker: a ticker's rows are not contiguous")
    position = np.arange(rows) - np.repeat(starts, np.diff(np.r_[starts, rows]))
    lags = np.arange(sequence_length - 1, -1, -1)
    index = np.arange(rows)[:, None] - lags[None, :]
    return np.where(lags[None, :] <= position[:, None], index, rows)


def build_sequences(x: np.ndarray, group: np.ndarray, sequence_length: int) -> np.ndarray:
    """Windows of ``sequence_length`` rows ending at each row, shape (rows, length, features),
    oldest first, left-padded with zeros where the ticker's history is shorter."""
    x = np.asarray(x)
    if x.ndim != 2 or len(x) != len(group):
        raise ValueError(f"x must be (rows, features) with one group per row, not {x.shape}")
    padded = np.concatenate([x, np.zeros((1, x.shape[1]), dtype=x.dtype)])
    return padded[sequence_index(group, sequence_length)]


def pick_device(preferred: str | None = None) -> str:
    """The torch device to train on: "cuda" when a GPU is available, unless ``preferred`` (or
    the ``ATS_DEVICE`` environment variable) says "cpu"."""
    choice = (preferred or os.environ.get("ATS_DEVICE") or "").strip().lower()
    if choice and choice != "cpu" and not choice.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:n]', not {choice!r}")
    if choice == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return choice if choice.startswith("cuda:") else "cuda"


class NeuralModel:
    """A trained sequence model: ``predict`` maps feature rows to forward returns (fractions).

    ``history`` holds one entry per epoch: ``train_loss`` (Huber loss on the standardised
    target), ``valid_ic`` (Pearson correlation of predictions and validation targets) and
    ``seconds`` (wall clock). ``best_epoch`` (1-based) is the epoch whose weights were kept.
    """

    def __init__(
        self,
        network: nn.Module,
        config: NeuralConfig,
        feature_names: Sequence[str],
        device: str,
        history: list[dict[str, float]],
        best_epoch: int,
        epochs_run: int,
    ) -> None:
        self.network = network
        self.config = config
        self.feature_names = list(feature_names)
        self.device = device
        self.history = history
        self.best_epoch = best_epoch
        self.epochs_run = epochs_run

    @property
    def target_mean(self) -> float:
        """Training target mean, in target units (a fraction)."""
        return float(self.network.target_mean)

    @property
    def target_scale(self) -> float:
        """Training target standard deviation, in target units (a fraction)."""
        return float(self.network.target_scale)

    def predict(
        self,
        x: np.ndarray,
        group: np.ndarray,
        device: str | None = None,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Predicted target per row (float64, target units); ``device`` defaults to the CPU.

        ``rows`` (indices): predict only these rows, each still with its earlier rows in ``x``
        as history (live trading predicts the latest row of each ticker)."""
        _check_rows(x, group, self.feature_names)
        standard = _predict_standardised(
            self.network, x, group, self.config.sequence_length, device or "cpu", rows
        )
        return standard * self.target_scale + self.target_mean

    def to_files(self) -> dict[str, bytes]:
        """``state.pt`` (the state dict: tensors only) and ``config.json`` (settings, history)."""
        import torch

        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.network.state_dict().items()}, buffer)
        meta = {
            "config": asdict(self.config),
            "feature_names": self.feature_names,
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "device": self.device,
        }
        return {"state.pt": buffer.getvalue(), "config.json": json.dumps(meta).encode()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], device: str = "cpu") -> NeuralModel:
        """Rebuild a model saved by ``to_files``; the state loads with ``weights_only=True``."""
        import torch

        meta = json.loads(files["config.json"])
        config = NeuralConfig(**meta["config"])
        network = _build_network(config, len(meta["feature_names"]))
        state = torch.load(io.BytesIO(files["state.pt"]), map_location=device, weights_only=True)
        network.load_state_dict(state)
        network.to(device).eval()
        keys = ("feature_names", "device", "history", "best_epoch", "epochs_run")
        return cls(network, config, *(meta[k] for k in keys))


def fit_neural(
    x_train: np.ndarray,
    group_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    group_valid: np.ndarray,
    y_valid: np.ndarray,
    config: NeuralConfig,
    feature_names: Sequence[str],
    device: str | None = None,
) -> NeuralModel:
    """Train on (x_train, y_train), early-stopping on the validation IC; keep the best epoch.

    ``x`` is (rows, features) sorted by (ticker, ts) with ``group`` the ticker code per row; ``y``
    is the forward return per row (a fraction; NaN rows are not trained on but still serve as
    history). Seeded and deterministic on the CPU; bfloat16 autocast on CUDA.
    """
    import torch

    device = pick_device(device)
    _check_rows(x_train, group_train, feature_names)
    _check_rows(x_valid, group_valid, feature_names)
    y_train = np.asarray(y_train, dtype=np.float64)
    y_valid = np.asarray(y_valid, dtype=np.float64)
    if len(y_train) != len(x_train) or len(y_valid) != len(x_valid):
        raise ValueError("y must have one value per row of x")
    train_rows = np.flatnonzero(np.isfinite(y_train))
    if len(train_rows) < 2 or np.isfinite(y_valid).sum() < 2:
        raise ValueError("need at least 2 finite targets in both training and validation")

    deadline = time.monotonic() + config.max_seconds
    with _seeded(config.seed, device):
        network = _build_network(config, x_train.shape[1])
        _set_moments(network, x_train, y_train[train_rows])
        network.to(device)
        with torch.no_grad():
            rows = _standardised_rows(network, x_train, device)
        index = torch.from_numpy(sequence_index(group_train, config.sequence_length)).to(device)
        scaled = (np.nan_to_num(y_train) - float(network.target_mean)) / float(network.target_scale)
        target = torch.from_numpy(np.clip(scaled, -TARGET_CLIP, TARGET_CLIP).astype(np.float32))
        target = target.to(device)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        shuffle = np.random.default_rng(config.seed)
        history: list[dict[str, float]] = []
        best_ic, best_epoch, best_state, stale = -np.inf, 0, {}, 0
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.monotonic()
            order = torch.from_numpy(shuffle.permutation(train_rows)).to(device)
            batches = (
                order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)
            )
            loss = _train_epoch(network, optimizer, rows, index, target, batches, deadline)
            valid = _predict_standardised(
                network, x_valid, group_valid, config.sequence_length, device
            )
            ic = pearson(valid, y_valid)
            seconds = time.monotonic() - epoch_started
            history.append({"epoch": epoch, "train_loss": loss, "valid_ic": ic, "seconds": seconds})
            if ic > best_ic:
                best_ic, best_epoch, stale = ic, epoch, 0
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                stale += 1
            if time.monotonic() > deadline or stale >= config.patience:
                break
    network.load_state_dict(best_state)
    network.to("cpu").eval()
    return NeuralModel(network, config, feature_names, device, history, best_epoch, len(history))


def _train_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    rows: torch.Tensor,
    index: torch.Tensor,
    target: torch.Tensor,
    batches: Iterable[torch.Tensor],
    deadline: float,
) -> float:
    """One pass over the shuffled batches (row numbers), stopping early at ``deadline``
    (``time.monotonic`` seconds); returns the mean Huber loss in target standard deviations."""
    import torch

    network.train()
    losses = []
    for batch in batches:
        with _autocast(str(rows.device)):
            output = network(rows[index[batch]])
        loss = torch.nn.functional.huber_loss(output.float(), target[batch], delta=1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), GRADIENT_CLIP)
        optimizer.step()
        losses.append(loss.detach())
        if time.monotonic() > deadline:
            break
    return float(torch.stack(losses).mean())


@contextlib.contextmanager
def _seeded(seed: int, device: str) -> Iterator[None]:
    """Seed torch without disturbing the caller's random state; deterministic kernels on the CPU
    (CUDA would need ``CUBLAS_WORKSPACE_CONFIG``), with the caller's setting restored after."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    on_cuda = device.startswith("cuda")
    rng_devices = [torch.device(device).index or torch.cuda.current_device()] if on_cuda else []
    try:
        torch.use_deterministic_algorithms(not on_cuda or deterministic, warn_only=warn_only)
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _set_moments(network: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    """Store the training features' and target's mean and standard deviation in the buffers;
    features ignore missing values (an all-missing feature gets mean 0, a constant one std 1)."""
    import torch

    clean = np.where(np.isfinite(x), x, np.nan)
    with warnings.catch_warnings():  # an all-NaN column has no mean: handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(clean, axis=0, dtype=np.float64))
        std = np.nanstd(clean, axis=0, dtype=np.float64)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    network.feature_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    network.feature_std.copy_(torch.from_numpy(std.astype(np.float32)))
    network.target_mean.fill_(float(np.mean(y)))
    network.target_scale.fill_(float(np.std(y)) or 1.0)


def _check_rows(x: np.ndarray, group: np.ndarray, feature_names: Sequence[str]) -> None:
    if np.ndim(x) != 2 or np.shape(x)[1] != len(feature_names):
        raise ValueError(f"x must be (rows, {len(feature_names)} features), not {np.shape(x)}")
    if len(group) != len(x):
        raise ValueError(f"group has {len(group)} rows, x has {len(x)}")


def _standardised_rows(network: nn.Module, x: np.ndarray, device: str) -> torch.Tensor:
    """Standardised, clipped feature rows with a zero padding row appended, on ``device``."""
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    chunks = [
        network.standardise(torch.from_numpy(x[start : start + STANDARDISE_CHUNK]).to(device))
        for start in range(0, len(x), STANDARDISE_CHUNK)
    ]
    chunks.append(torch.zeros((1, x.shape[1]), device=device))
    return torch.cat(chunks)


def _predict_standardised(
    network: nn.Module,
    x: np.ndarray,
    group: np.ndarray,
    sequence_length: int,
    device: str,
    only: np.ndarray | None = None,
) -> np.ndarray:
    """Network output per row (or per row of ``only``), in standard deviations of the training
    target (float64)."""
    import torch

    network.to(device).eval()
    with torch.inference_mode():
        rows = _standardised_rows(network, x, device)
        windows = sequence_index(group, sequence_length)
        if only is not None:
            windows = windows[only]
        index = torch.from_numpy(np.ascontiguousarray(windows)).to(device)
        outputs = []
        for start in range(0, len(index), PREDICT_BATCH):
            with _autocast(device):
                outputs.append(network(rows[index[start : start + PREDICT_BATCH]]).float())
    if not outputs:
        return np.zeros(0)
    return torch.cat(outputs).cpu().numpy().astype(np.float64)


def _autocast(device: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _build_network(config: NeuralConfig, n_features: int) -> nn.Module:
    return _network_classes()[config.architecture](config, n_features)


@functools.cache
def _network_classes() -> dict[str, type]:
    """The torch modules, defined on first use so that importing this module needs no torch."""
    import torch
    from torch import nn

    class SequenceNetwork(nn.Module):
        """Holds the standardisation (feature and target moments) as buffers of the state dict."""

        def __init__(self, n_features: int) -> None:
            super().__init__()
            self.register_buffer("feature_mean", torch.zeros(n_features))
            self.register_buffer("feature_std", torch.ones(n_features))
            self.register_buffer("target_mean", torch.zeros(()))
            self.register_buffer("target_scale", torch.ones(()))

        def standardise(self, x: torch.Tensor) -> torch.Tensor:
            z = (x - self.feature_mean) / self.feature_std
            z = torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
            return z.clamp(-FEATURE_CLIP, FEATURE_CLIP)

    class LSTMNetwork(SequenceNetwork):
        """LSTM over the window; the last layer's final hidden state feeds a linear head."""

        def __init__(self, config: NeuralConfig, n_features: int) -> None:
            super().__init__(n_features)
            between_layers = config.dropout if config.layers > 1 else 0.0
            self.lstm = nn.LSTM(
                n_features,
                config.hidden_size,
                config.layers,
                batch_first=True,
                dropout=between_layers,
            )
            self.dropout = nn.Dropout(config.dropout)
            self.head = nn.Linear(config.hidden_size, 1)

        def forward(self, sequences: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(sequences)
            return self.head(self.dropout(hidden[-1])).squeeze(-1)

    class AttentionNetwork(SequenceNetwork):
        """Input projection + learned positions -> transformer encoder -> last and mean pool."""

        def __init__(self, config: NeuralConfig, n_features: int) -> None:
            super().__init__(n_features)
            width = config.hidden_size
            self.project = nn.Linear(n_features, width)
            self.position = nn.Parameter(torch.randn(config.sequence_length, width) * 0.02)
            layer = nn.TransformerEncoderLayer(
                width,
                config.heads,
                dim_feedforward=4 * width,
                dropout=config.dropout,
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(width)
            self.head = nn.Linear(2 * width, 1)

        def forward(self, sequences: torch.Tensor) -> torch.Tensor:
            hidden = self.project(sequences) + self.position[-sequences.shape[1] :]
            hidden = self.norm(self.encoder(hidden))
            pooled = torch.cat([hidden[:, -1], hidden.mean(dim=1)], dim=-1)
            return self.head(pooled).squeeze(-1)

    return {"lstm": LSTMNetwork, "attention": AttentionNetwork}
