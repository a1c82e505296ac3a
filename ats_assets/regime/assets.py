"""``market_regime``: the day's market regime and drift against the champion's training window.

Per session D (daily partitions): the regime detector is fitted on the daily bars of the
``REGIME_LOOKBACK`` sessions up to D and filtered forward (so D's label uses sessions <= D); a
regime change is *declared* on D when the filtered labels settle on a new regime there (see
``detector.change_points``). Drift: the PSI and KS of the champion model's input features on D's
sampled rows against the rows it was trained on, and the decay of its IC on D's realized 30-minute
returns against its validation IC. ``regime_drift_sensor`` reads these figures.
"""

from datetime import timedelta

import dagster as dg
import polars as pl

from ats_assets.partitions import sessions_for_window, trading_day_partitions

GROUP = "regime"
REGIME_LOOKBACK = 120  # sessions of daily bars the detector is fitted and filtered on
MIN_SESSIONS = 30  # fewer sessions of history: no regime is reported
_FLOATS = ("psi_max", "psi_median", "psi_share_drifted", "ks_median", "realized_ic")
_FLOATS += ("validation_ic", "ic_decay")
_history = dg.TimeWindowPartitionMapping(
    start_offset=-REGIME_LOOKBACK, allow_nonexistent_upstream_partitions=True
)


def _regime(warehouse, day) -> tuple[dict, pl.DataFrame]:
    from ats_assets.regime.detector import RegimeDetector, change_points, market_daily_features

    daily = warehouse.read_window(
        "daily_bars",
        partition_column="session",
        start=day - timedelta(days=2 * REGIME_LOOKBACK),
        end=day + timedelta(days=1),
    )
    features = market_daily_features(daily).tail(REGIME_LOOKBACK)
    if len(features) < MIN_SESSIONS or features["session"][-1] != day:
        raise dg.Failure(
            f"market_regime {day} needs daily_bars for {day} and at least {MIN_SESSIONS} "
            f"sessions before it (found {len(features)}): materialize daily_bars first"
        )
    detected = RegimeDetector.fit(features).detect(features)
    changes = change_points(detected)
    today = detected.row(-1, named=True)
    change = changes.filter(pl.col("session") == day)
    declared = changes["to_regime"][-1] if len(changes) else today["regime"]
    return {
        **today,
        "declared_regime": declared,
        "change": len(change) > 0,
        "change_from": change["from_regime"][0] if len(change) else None,
    }, detected


def _drift(warehouse, store, day) -> dict:
    """Drift of D's feature rows against the champion's training rows; empty without a champion."""
    from ats_assets.models.labels import LabelSpec, sample_rows
    from ats_assets.models.serving import ModelServer, champion_as_of
    from ats_assets.regime.drift import drift_summary, feature_drift, performance_decay

    champion = champion_as_of(warehouse, day)
    if champion is None:
        return {}
    reference = warehouse.read_table("training_set").filter(
        pl.col("week") == pl.lit(champion["partition"]).str.to_date()
    )
    features = warehouse.read_window(
        "features", partition_column="session", start=day, end=day + timedelta(days=1)
    )
    current = sample_rows(features, LabelSpec())
    predictor = ModelServer(store).load(
        champion["asset"], champion["partition"], champion["model_version"]
    )
    columns = sorted({c for m in getattr(predictor, "members", [predictor]) for c in m.columns})
    summary = drift_summary(feature_drift(reference, current, columns))
    bars = warehouse.read_window(
        "raw_bars", partition_column="session", start=day, end=day + timedelta(days=1)
    ).select("ticker", "ts", "close")
    later = bars.with_columns(ts=pl.col("ts") - pl.duration(minutes=30)).rename({"close": "later"})
    realized = (
        predictor.predict(current)
        .join(bars, on=["ticker", "ts"])
        .join(later, on=["ticker", "ts"])
        .with_columns(ret=pl.col("later") / pl.col("close") - 1)
        .with_columns(excess=pl.col("ret") - pl.col("ret").mean().over("ts"))
    )
    realized_ic = float(realized.select(pl.corr("prediction", "excess")).item() or 0.0)
    ref, _ = store.load(champion["asset"], champion["partition"], champion["model_version"])
    validation_ic = float(ref.manifest.get("metrics", {}).get("ic", float("nan")))
    return {
        **summary,
        "champion": f"{champion['asset']}/{champion['partition']}",
        "realized_ic": realized_ic,
        "validation_ic": validation_ic,
        "ic_decay": performance_decay(realized_ic, validation_ic),
    }


def _probability_plot(detected: pl.DataFrame) -> str:
    import matplotlib

    from ats_assets.features.analysis import _png_markdown
    from ats_assets.regime.detector import PROBABILITY_COLUMNS

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.8))
    x = range(len(detected))
    bottom = [0.0] * len(detected)
    for column in PROBABILITY_COLUMNS:
        values = detected[column].to_list()
        ax.fill_between(
            x,
            bottom,
            [b + v for b, v in zip(bottom, values, strict=True)],
            label=column.removeprefix("p_"),
            step="mid",
            alpha=0.7,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ticks = list(range(0, len(detected), max(1, len(detected) // 6)))
    ax.set_xticks(ticks, [str(detected["session"][i]) for i in ticks], fontsize=7)
    ax.set_ylabel("filtered probability")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=7)
    return _png_markdown(fig)


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("daily_bars", partition_mapping=_history), dg.AssetDep("features")],
    required_resource_keys={"warehouse", "model_store"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "session"},
    kinds={"polars"},
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The session's market regime (label, probability, declared change) and drift of the "
        "champion's inputs and IC against its training window; read by regime_drift_sensor."
    ),
)
def market_regime(context: dg.AssetExecutionContext) -> dg.Output:
    warehouse = context.resources.warehouse
    rows, detected = [], None
    for day in sessions_for_window(context.partition_time_window):
        regime, detected = _regime(warehouse, day)
        drift = _drift(warehouse, context.resources.model_store, day)
        rows.append({**regime, **drift})
    from ats_assets.regime.detector import PROBABILITY_COLUMNS

    schema = {
        "session": pl.Date,
        "regime": pl.Utf8,
        "probability": pl.Float64,
        **dict.fromkeys(PROBABILITY_COLUMNS, pl.Float64),
        "declared_regime": pl.Utf8,
        "change": pl.Boolean,
        "change_from": pl.Utf8,
        "champion": pl.Utf8,
        **dict.fromkeys(_FLOATS, pl.Float64),
    }
    frame = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)
    last = rows[-1]
    figures = {
        k: dg.MetadataValue.float(float(v))
        for k, v in last.items()
        if isinstance(v, float) and k != "session"
    }
    return dg.Output(
        frame,
        metadata={
            "session": str(last["session"]),
            "regime": last["regime"],
            "declared_regime": last["declared_regime"],
            "change": bool(last["change"]),
            "change_from": last["change_from"] or "",
            "changes_in_window": int(frame["change"].sum()),
            "champion": last.get("champion", "none yet"),
            **figures,
            "regime_probabilities": dg.MetadataValue.md(_probability_plot(detected)),
        },
    )


regime_assets = [market_regime]
