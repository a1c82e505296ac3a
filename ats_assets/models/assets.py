"""Weekly model assets: the training set, four models, the registry and the champion.

Week W's ``training_set`` draws the daily ``features`` (and ``raw_bars`` for the labels) of the
``TRAINING_WEEKS`` weeks ending with W through a partition mapping, so the UI shows which days
every model learned from. Each model stores its artifact in the model store (sha256-verified) and
records its validation metrics as metadata. ``champion_model`` promotes week W's ensemble only
when it beats the current champion on W's validation sessions by a configurable margin.
"""

import json
import os
import time
from datetime import date, timedelta

import dagster as dg
import polars as pl

from ats_assets.core.tables import markdown_table
from ats_assets.features.registry import catalogue_version
from ats_assets.models import metrics
from ats_assets.models.dataset import calibrate, score, to_matrix, with_excess_return
from ats_assets.models.labels import LabelSpec, feature_columns, training_rows
from ats_assets.partitions import sessions_for_window, weekly_partitions
from ats_resources.settings import _int

GROUP = "models"
# Read once at import: it shapes the partition mapping (lineage) as well as the training window.
TRAINING_WEEKS = _int(os.environ, "ATS_TRAINING_WEEKS", 4, 1)
CHUNK_SESSIONS = 5  # features are read a few sessions at a time and sampled, to bound memory
GPU_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {
            "node_selector": {"ats/accelerator": "nvidia-gpu"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    },
    "ats/accelerator": "gpu",
}
GPU_POOL = "gpu"
MODEL_ASSETS = ("xgboost_model", "lstm_model", "attention_model")


def _training_window(window: dg.TimeWindow) -> list[date]:
    start = window.start - timedelta(weeks=TRAINING_WEEKS - 1)
    return sessions_for_window(dg.TimeWindow(start, window.end))


class TrainingSetConfig(dg.Config):
    """Sampling and labelling of training rows (minutes, dollars, basis points)."""

    sample_minutes: int = 5
    horizon_minutes: int = 30
    position_dollars: float = 2500.0  # MAX_POSITION_SIZE
    fee_bps: float = 0.5


_lookback = dg.TimeWindowPartitionMapping(
    start_offset=-(TRAINING_WEEKS - 1), allow_nonexistent_upstream_partitions=True
)


@dg.asset(
    group_name=GROUP,
    partitions_def=weekly_partitions,
    deps=[
        dg.AssetDep("features", partition_mapping=_lookback),
        dg.AssetDep("raw_bars", partition_mapping=_lookback),
    ],
    required_resource_keys={"warehouse"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "week"},
    pool="warehouse",
    kinds={"polars"},
    code_version="1",
    description=(
        f"Features of the {TRAINING_WEEKS} weeks ending with the partition's week, sampled every "
        "5 minutes, with forward return, excess return, cost and net dollar P&L labels."
    ),
)
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig) -> dg.Output:
    warehouse = context.resources.warehouse
    spec = LabelSpec(
        sample_minutes=config.sample_minutes,
        horizon_minutes=config.horizon_minutes,
        position_dollars=config.position_dollars,
        fee_bps=config.fee_bps,
    )
    sessions = _training_window(context.partition_time_window)
    available = set(warehouse.partition_summary("features")["session"].to_list())
    week_sessions = sessions_for_window(context.partition_time_window)
    if not week_sessions or any(d not in available for d in week_sessions):
        raise dg.Failure(
            f"features are missing for the week of {context.partition_key}: materialize features "
            f"for {week_sessions[0] if week_sessions else '?'} .. "
            f"{week_sessions[-1] if week_sessions else '?'} first"
        )
    # Earlier weeks of the look-back may be missing (history starts later): train on what
    # exists, and say so in the metadata.
    missing = [d for d in sessions if d not in available]
    sessions = [d for d in sessions if d in available]
    parts = []
    for i in range(0, len(sessions), CHUNK_SESSIONS):
        chunk = sessions[i : i + CHUNK_SESSIONS]
        window = {"partition_column": "session", "start": chunk[0], "end": chunk[-1] + timedelta(1)}
        features = warehouse.read_window("features", **window)
        bars = warehouse.read_window("raw_bars", **window)
        parts.append(training_rows(features, bars, spec))
    week = context.partition_time_window.start.date()
    rows = with_excess_return(pl.concat(parts)).with_columns(week=pl.lit(week))
    return dg.Output(
        rows.select("week", pl.exclude("week")),
        metadata={
            "dagster/row_count": len(rows),
            "tickers": rows["ticker"].n_unique(),
            "sessions": len(sessions),
            "sessions_missing_from_lookback": len(missing),
            "training_window": f"{sessions[0]} .. {sessions[-1]}",
            "features": len(feature_columns(rows)),
            "feature_version": catalogue_version(),
            "mean_cost_bps": float(rows["cost_bps"].mean()),
            "fwd_return_std_bps": float(rows["fwd_return"].std() * 1e4),
        },
    )


class ModelConfig(dg.Config):
    """Split, screening and judging of a model (fractions, minutes, features, dollars)."""

    validation_fraction: float = 0.25
    embargo_minutes: int = 30
    screen_features: int = 40
    trade_fraction: float = 0.1
    position_dollars: float = 2500.0


class XGBoostConfig(ModelConfig):
    objective: str = "dollar_pnl"  # or "squared_error"
    max_depth: int = 3
    learning_rate: float = 0.1
    n_rounds: int = 300
    tune: bool = False  # optuna search before the final fit
    tuning_trials: int = 20
    tuning_timeout_s: float = 120.0
    walk_forward_folds: int = 3
    cross_timeframe: bool = True


class NeuralModelConfig(ModelConfig):
    sequence_length: int = 12
    hidden_size: int = 32
    epochs: int = 6
    max_seconds: float = 90.0
    seed: int = 7


def _training_config(config: ModelConfig, folds: int = 3):
    from ats_assets.models.training import TrainingConfig

    return TrainingConfig(
        validation_fraction=config.validation_fraction,
        embargo_minutes=config.embargo_minutes,
        screen_features=config.screen_features,
        trade_fraction=config.trade_fraction,
        position_dollars=config.position_dollars,
        walk_forward_folds=folds,
    )


def _store_model(
    context, trained, training_rows_: pl.DataFrame, extra: dict
) -> dg.MaterializeResult:
    from ats_assets.models.serving import serving_files

    sessions = training_rows_["session"]
    manifest = {
        "kind": trained.kind,
        "feature_version": catalogue_version(),
        "code_version": context.assets_def.code_versions_by_key.get(context.asset_key),
        "train_start": str(sessions.min()),
        "train_end": str(sessions.max()),
        "metrics": trained.validation,
        "device": trained.device,
        "duration_s": trained.seconds,
        "columns": trained.columns,
        "details": trained.details,
    }
    stored = context.resources.model_store.save(
        asset=context.asset_key.path[-1],
        partition=context.partition_key,
        files=serving_files(trained),
        manifest=manifest,
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": stored.model_version,
            "sha256": stored.sha256,
            "path": stored.path,
            "device": trained.device,
            "duration_s": round(trained.seconds, 2),
            "training_window": f"{sessions.min()} .. {sessions.max()}",
            "feature_version": catalogue_version(),
            **{f"validation_{k}": float(v) for k, v in trained.validation.items()},
            "details": dg.MetadataValue.json(trained.details),
            **extra,
        }
    )


_model_asset = {
    "group_name": GROUP,
    "partitions_def": weekly_partitions,
    "required_resource_keys": {"model_store"},
    "pool": GPU_POOL,
    "op_tags": GPU_TAGS,
    "kinds": {"python"},
}


@dg.asset(
    **_model_asset,
    code_version="1",
    description="Histogram gradient-boosted trees with a dollar-P&L objective (or squared error), "
    "early-stopped on validation dollars; walk-forward and cross-timeframe validation.",
)
def xgboost_model(
    context: dg.AssetExecutionContext, config: XGBoostConfig, training_set: pl.DataFrame
) -> dg.MaterializeResult:
    from ats_assets.models import training
    from ats_assets.models.xgb import XGBoostParams

    settings = _training_config(config, config.walk_forward_folds)
    params = XGBoostParams(
        objective=config.objective,  # type: ignore[arg-type]
        max_depth=config.max_depth,
        learning_rate=config.learning_rate,
        n_rounds=config.n_rounds,
        trade_fraction=config.trade_fraction,
    )
    data = to_matrix(training_set)
    if config.tune:
        from ats_assets.models.tuning import TuningConfig, tuned_fit

        trained = tuned_fit(
            data,
            settings,
            TuningConfig(trials=config.tuning_trials, timeout_s=config.tuning_timeout_s),
            params,
        )
    else:
        trained = training.fit(data, "xgboost", settings, params)
    extra: dict = {}
    if config.walk_forward_folds:
        folds = training.walk_forward(data, settings)
        extra["walk_forward"] = dg.MetadataValue.md(markdown_table(folds))
        extra["walk_forward_mean_ic"] = float(folds["ic"].mean())
    if config.cross_timeframe:
        extra["cross_timeframe"] = dg.MetadataValue.md(
            markdown_table(training.cross_timeframe(data, settings))
        )
    return _store_model(context, trained, training_set, extra)


def _neural(context, kind: str, config: NeuralModelConfig, rows: pl.DataFrame):
    from ats_assets.models import training
    from ats_assets.models.neural import NeuralConfig

    params = NeuralConfig(
        architecture=kind,
        sequence_length=config.sequence_length,
        hidden_size=config.hidden_size,
        epochs=config.epochs,
        max_seconds=config.max_seconds,
        seed=config.seed,
    )
    trained = training.fit(to_matrix(rows), kind, _training_config(config), params)
    return _store_model(context, trained, rows, {})


@dg.asset(
    **_model_asset,
    code_version="1",
    description="LSTM over each ticker's last 12 sampled feature rows (torch; bf16 autocast on CUDA).",
)
def lstm_model(
    context: dg.AssetExecutionContext, config: NeuralModelConfig, training_set: pl.DataFrame
) -> dg.MaterializeResult:
    return _neural(context, "lstm", config, training_set)


@dg.asset(
    **_model_asset,
    code_version="1",
    description="Transformer encoder over each ticker's last 12 sampled feature rows (torch).",
)
def attention_model(
    context: dg.AssetExecutionContext, config: NeuralModelConfig, training_set: pl.DataFrame
) -> dg.MaterializeResult:
    return _neural(context, "attention", config, training_set)


def _validation_rows(rows: pl.DataFrame, config: ModelConfig):
    from ats_assets.models.training import split

    return split(to_matrix(rows), _training_config(config))[1]


def _frame(matrix) -> pl.DataFrame:
    """A features frame (ids + columns) from a validation matrix, for the predictors."""
    frame = pl.DataFrame(matrix.x, schema=list(matrix.columns), orient="row")
    return frame.with_columns(
        # zero-padded codes sort like the matrix's (ticker, ts) order
        ticker=pl.Series([f"{code:06d}" for code in matrix.group]),
        ts=pl.Series(matrix.ts),
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=weekly_partitions,
    deps=list(MODEL_ASSETS),
    required_resource_keys={"model_store"},
    kinds={"python"},
    code_version="1",
    description="Weighted average of the three models' scaled predictions; weights from their "
    "validation IC; confidence from agreement.",
)
def ensemble_model(
    context: dg.AssetExecutionContext, config: ModelConfig, training_set: pl.DataFrame
) -> dg.MaterializeResult:
    from ats_assets.models.serving import (
        ENSEMBLE_FILE,
        EnsemblePredictor,
        ModelServer,
        ensemble_weights,
    )

    began = time.perf_counter()
    store, week = context.resources.model_store, context.partition_key
    server = ModelServer(store)
    valid = _validation_rows(training_set, config)
    frame = _frame(valid)
    members, refs, ics = [], [], {}
    for asset in MODEL_ASSETS:
        ref, _ = store.load(asset, week)
        predictor = server.load(asset, week)
        members.append(predictor)
        refs.append(
            {
                "asset": asset,
                "partition": week,
                "model_version": ref.model_version,
                "sha256": ref.sha256,
            }
        )
        ics[asset] = ref.manifest["metrics"]["ic"]
    weights = ensemble_weights(ics)
    ensemble = EnsemblePredictor(members, [weights[a] for a in MODEL_ASSETS], threshold=0.0)
    _, combined, _ = ensemble.raw_with_agreement(frame)
    ensemble.threshold = metrics.trade_threshold(combined, config.trade_fraction)
    ensemble.calibration = calibrate(combined, valid)
    validation = score(
        combined,
        valid,
        threshold=ensemble.threshold,
        position_dollars=config.position_dollars,
        calibration=ensemble.calibration,
    )
    meta = {
        "members": refs,
        "weights": ensemble.weights,
        "threshold": ensemble.threshold,
        "calibration": ensemble.calibration,
    }
    sessions = training_set["session"]
    stored = store.save(
        asset="ensemble_model",
        partition=week,
        files={ENSEMBLE_FILE: json.dumps(meta).encode()},
        manifest={
            "kind": "ensemble",
            "feature_version": catalogue_version(),
            "code_version": "1",
            "train_start": str(sessions.min()),
            "train_end": str(sessions.max()),
            "metrics": validation,
            "device": "cpu",
            "duration_s": time.perf_counter() - began,
            "weights": weights,
        },
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": stored.model_version,
            "sha256": stored.sha256,
            "weights": dg.MetadataValue.json(weights),
            **{f"validation_{k}": float(v) for k, v in validation.items()},
        }
    )


class ChampionConfig(ModelConfig):
    """Promotion rule: the challenger must beat the champion by this many dollars."""

    min_improvement_dollars: float = 0.0


@dg.asset(
    group_name=GROUP,
    partitions_def=weekly_partitions,
    deps=[ensemble_model],
    required_resource_keys={"model_store", "warehouse"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "week"},
    kinds={"polars"},
    code_version="1",
    description="Which model trades: week W's ensemble replaces the champion only when it makes "
    "more dollars on W's validation sessions (unseen by the champion) by the configured margin.",
)
def champion_model(
    context: dg.AssetExecutionContext, config: ChampionConfig, training_set: pl.DataFrame
) -> dg.Output:
    from ats_assets.models.serving import ModelServer

    week = context.partition_time_window.start.date()
    store, warehouse = context.resources.model_store, context.resources.warehouse
    server = ModelServer(store)
    valid = _validation_rows(training_set, config)
    frame = _frame(valid)

    def dollars(asset: str, partition: str, version: str | None) -> float:
        predictor = server.load(asset, partition, version)
        prediction = predictor.predict(frame)["prediction"].to_numpy()
        result = score(
            prediction,
            valid,
            threshold=predictor.threshold,
            position_dollars=config.position_dollars,
            calibration=predictor.calibration,
        )
        return result["dollar_profit"]

    challenger_ref, _ = store.load("ensemble_model", context.partition_key)
    challenger = dollars("ensemble_model", context.partition_key, challenger_ref.model_version)
    previous = (
        warehouse.read_table("champion_model").filter(pl.col("week") < week).sort("week")
        if "champion_model" in warehouse.tables()
        else pl.DataFrame()
    )
    current = previous.tail(1).row(0, named=True) if len(previous) else None
    if current is None or current["model_version"] is None:
        promoted = challenger > 0
        champion_dollars = None
        reason = (
            f"first champion: validation profit ${challenger:,.2f} > $0"
            if promoted
            else f"no champion: the challenger loses ${-challenger:,.2f} on validation"
        )
    else:
        champion_dollars = dollars(current["asset"], current["partition"], current["model_version"])
        margin = challenger - champion_dollars
        promoted = margin > config.min_improvement_dollars
        reason = (
            f"challenger ${challenger:,.2f} vs champion ${champion_dollars:,.2f} on {week}'s "
            f"validation sessions: margin ${margin:,.2f} "
            f"{'>' if promoted else '<='} required ${config.min_improvement_dollars:,.2f}"
        )
    chosen = (
        {
            "asset": "ensemble_model",
            "partition": context.partition_key,
            "model_version": challenger_ref.model_version,
            "sha256": challenger_ref.sha256,
        }
        if promoted
        else {k: current[k] for k in ("asset", "partition", "model_version", "sha256")}
        if current
        else {"asset": None, "partition": None, "model_version": None, "sha256": None}
    )
    row = pl.DataFrame(
        [
            {
                "week": week,
                **chosen,
                "promoted": promoted,
                "reason": reason,
                "challenger_dollars": challenger,
                "champion_dollars": champion_dollars,
            }
        ],
        schema={
            "week": pl.Date,
            "asset": pl.String,
            "partition": pl.String,
            "model_version": pl.String,
            "sha256": pl.String,
            "promoted": pl.Boolean,
            "reason": pl.String,
            "challenger_dollars": pl.Float64,
            "champion_dollars": pl.Float64,
        },
    )
    context.log.info(reason)
    return dg.Output(
        row,
        metadata={
            "champion": f"{chosen['asset']}/{chosen['partition']}@{chosen['model_version']}",
            "promoted": promoted,
            "reason": reason,
            "challenger_dollars": challenger,
            "champion_dollars": champion_dollars if champion_dollars is not None else float("nan"),
            "sha256": chosen["sha256"] or "",
        },
    )


@dg.asset(
    group_name=GROUP,
    deps=[*MODEL_ASSETS, ensemble_model],
    required_resource_keys={"model_store"},
    io_manager_key="warehouse_io_manager",
    kinds={"polars"},
    description="Every stored model version: asset, partition, model and feature versions, code "
    "version, training window, metrics, device, duration, sha256.",
)
def model_registry(context: dg.AssetExecutionContext) -> dg.Output:
    registry = context.resources.model_store.registry()
    return dg.Output(
        registry,
        metadata={
            "dagster/row_count": len(registry),
            "registry": dg.MetadataValue.md(
                markdown_table(registry.drop("metrics", "path"), max_rows=50)
            ),
        },
    )


model_assets = [
    training_set,
    xgboost_model,
    lstm_model,
    attention_model,
    ensemble_model,
    champion_model,
    model_registry,
]
