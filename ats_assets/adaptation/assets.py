"""Adaptation assets: the champion ensemble's weights, the strategy's thresholds, importance drift.

- ``ensemble_weights`` (daily): the champion ensemble's members re-weighted on their realized IC
  over the recent sessions they never trained on (``weighting.py``). Session D's weights are
  computed after D's close; the live job trading D+1 uses them (``adapted_weights``).
- ``strategy_parameters`` (weekly): the previous week's model traded on week W by the strategy
  engine for the current thresholds and each one-step neighbour inside fixed bounds
  (``tuner.py``); the chosen parameters apply from week W+1 (``backtest_report`` W, which trades
  W+1, and the live job), so they are never chosen on the sessions they trade.
- ``feature_importance_history`` (weekly): week W's XGBoost gain shares per feature and their
  drift against the previous week's (``importance.py``).
"""

from dataclasses import fields, replace
from datetime import date, timedelta

import dagster as dg
import polars as pl

from ats_assets.core.tables import markdown_table
from ats_assets.partitions import sessions_for_window, trading_day_partitions, weekly_partitions

GROUP = "adaptation"
WEIGHT_SESSIONS = 10
_recent = dg.TimeWindowPartitionMapping(
    start_offset=-(WEIGHT_SESSIONS - 1), allow_nonexistent_upstream_partitions=True
)
_previous_week = dg.TimeWindowPartitionMapping(
    start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
)
_selection_lookback = dg.TimeWindowPartitionMapping(
    start_offset=-4, end_offset=0, allow_nonexistent_upstream_partitions=True
)


# -- ensemble weights --------------------------------------------------------------------------
class EnsembleWeightsConfig(dg.Config):
    sessions: int = WEIGHT_SESSIONS  # recent out-of-sample sessions considered
    halflife: float = 3.0  # sessions
    strength: float = 5.0  # sessions the stored (validation) weights count for
    floor: float = 0.05  # smallest weight a member keeps


def _member_scores(warehouse, ensemble, names: list[str], day: date) -> pl.DataFrame:
    """session, ticker, ts, excess_return and each member's prediction on ``day``'s rows."""
    from ats_assets.models.dataset import with_excess_return
    from ats_assets.models.labels import LabelSpec, label_rows, sample_rows

    spec = LabelSpec()
    span = {"partition_column": "session", "start": day, "end": day + timedelta(days=1)}
    rows = sample_rows(warehouse.read_window("features", **span), spec)
    bars = warehouse.read_window("raw_bars", **span)
    labelled = with_excess_return(label_rows(rows, bars, spec))
    if labelled.is_empty():
        return pl.DataFrame()
    scored = labelled.select("session", "ticker", "ts", "excess_return")
    for name, member in zip(names, ensemble.members, strict=True):
        predicted = member.predict(labelled).select(
            "ticker", "ts", pl.col("prediction").alias(name)
        )
        scored = scored.join(predicted, on=["ticker", "ts"], how="inner")
    return scored


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        dg.AssetDep("champion_model"),
        dg.AssetDep("features", partition_mapping=_recent),
        dg.AssetDep("raw_bars", partition_mapping=_recent),
    ],
    required_resource_keys={"warehouse", "model_store"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "session"},
    kinds={"polars"},
    code_version="1",
    description=(
        "The champion ensemble's member weights after the session, re-weighted on each member's "
        "realized IC over recent sessions it never trained on; the live job trades the next "
        "session with them."
    ),
)
def ensemble_weights(context: dg.AssetExecutionContext, config: EnsembleWeightsConfig) -> dg.Output:
    warehouse, store = context.resources.warehouse, context.resources.model_store
    frames, last = [], {}
    for day in sessions_for_window(context.partition_time_window):
        frame, last = _weights_of(warehouse, store, day, config)
        context.log.info(f"ensemble_weights {day}: {last['reason']}")
        frames.append(frame)
    frame = pl.concat(frames)
    return dg.Output(
        frame,
        metadata={
            **{k: v for k, v in last.items() if k != "table"},
            "table": dg.MetadataValue.md(markdown_table(last["table"])),
        },
    )


_WEIGHT_SCHEMA = {
    "session": pl.Date,
    "champion": pl.String,
    "member": pl.String,
    "prior_weight": pl.Float64,
    "realized_ic": pl.Float64,
    "sessions": pl.Int64,
    "target_weight": pl.Float64,
    "weight": pl.Float64,
}


def _weights_of(warehouse, store, day: date, config: EnsembleWeightsConfig):
    """Session ``day``'s weights of the champion in force on it, and metadata."""
    from ats_assets.adaptation.weighting import WeightingSettings, reweight, session_ics
    from ats_assets.models.serving import ModelServer, champion_as_of, member_names

    champion = champion_as_of(warehouse, day)
    if champion is None:
        raise dg.Failure(
            f"ensemble_weights {day}: no champion model is in force yet; "
            "materialize champion_model first"
        )
    key = (champion["asset"], champion["partition"], champion["model_version"])
    label = f"{key[0]}/{key[1]}@{key[2]}"
    names = member_names(store, *key)
    if not names:
        frame = pl.DataFrame(
            [{"session": day, "champion": label, "member": key[0], "prior_weight": 1.0,
              "realized_ic": None, "sessions": 0, "target_weight": 1.0, "weight": 1.0}],
            schema=_WEIGHT_SCHEMA,
        )  # fmt: skip
        meta = {"champion": label, "reason": "the champion is a single model"}
        return frame, {**meta, "table": frame.drop("session", "champion")}
    ref, _ = store.load(*key)
    prior = {name: float(ref.manifest["weights"][name]) for name in names}
    train_end = date.fromisoformat(ref.manifest["train_end"])
    available = warehouse.partition_summary("features")["session"].to_list()
    sessions = sorted(d for d in available if train_end < d <= day)[-config.sessions :]
    ensemble = ModelServer(store).load(*key)
    parts = [_member_scores(warehouse, ensemble, names, d) for d in sessions]
    parts = [p for p in parts if not p.is_empty()]
    ics = session_ics(pl.concat(parts) if parts else pl.DataFrame(), names)
    settings = WeightingSettings(config.sessions, config.halflife, config.strength, config.floor)
    weights = reweight(prior, ics, settings)
    frame = weights.with_columns(session=pl.lit(day), champion=pl.lit(label)).select(
        list(_WEIGHT_SCHEMA)
    )
    reason = (
        f"{len(sessions)} out-of-sample session(s) after {train_end}"
        if sessions
        else f"no session after the training window's end ({train_end}): stored weights kept"
    )
    return frame, {
        "champion": label,
        "reason": reason,
        "weights": dg.MetadataValue.json(dict(zip(names, weights["weight"], strict=True))),
        "session_ics": dg.MetadataValue.md(markdown_table(ics, max_rows=30)),
        "table": frame.drop("session", "champion"),
    }


def adapted_weights(warehouse, champion: dict, day: date) -> tuple[dict[str, float] | None, str]:
    """The latest ``ensemble_weights`` of ``champion`` computed before ``day`` (weights, why)."""
    if "ensemble_weights" not in warehouse.tables():
        return None, "stored weights (ensemble_weights never materialized)"
    label = f"{champion['asset']}/{champion['partition']}@{champion['model_version']}"
    rows = warehouse.read_table("ensemble_weights").filter(
        (pl.col("session") < day) & (pl.col("champion") == label)
    )
    if rows.is_empty() or rows["realized_ic"].fill_nan(None).is_null().all():
        return None, f"stored weights (no ensemble_weights of {label} before {day})"
    latest = rows.filter(pl.col("session") == rows["session"].max())
    weights = dict(zip(latest["member"], latest["weight"], strict=True))
    return weights, f"ensemble_weights of {latest['session'][0]}"


# -- strategy parameters -----------------------------------------------------------------------
class StrategyParametersConfig(dg.Config):
    model_asset: str = "ensemble_model"
    holding_sessions: int = 2  # the model week's last sessions: holding period and first focus
    min_improvement: float = 50.0  # dollars over the week a move must gain
    min_trades: int = 20  # a move needs this many trades in the week


def _settings_values(settings) -> dict[str, float]:
    from ats_assets.adaptation.tuner import TUNED

    return {b.name: float(getattr(settings, b.name)) for b in TUNED}


@dg.asset(
    group_name=GROUP,
    partitions_def=weekly_partitions,
    deps=[
        dg.AssetDep("ensemble_model", partition_mapping=_previous_week),
        dg.AssetDep("features"),
        dg.AssetDep("raw_bars"),
        dg.AssetDep("daily_bars", partition_mapping=_selection_lookback),
    ],
    required_resource_keys={"warehouse", "model_store", "market_data"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "week"},
    kinds={"polars"},
    code_version="1",
    description=(
        "The strategy thresholds for the following weeks: the previous week's model traded on "
        "this week with the current thresholds and each one-step move inside fixed bounds; the "
        "best move is taken only when it gains enough. Every candidate is recorded."
    ),
)
def strategy_parameters(
    context: dg.AssetExecutionContext, config: StrategyParametersConfig
) -> dg.Output:
    from ats_assets.adaptation.tuner import TUNED, TunerSettings, tune
    from ats_assets.backtest import evaluation
    from ats_assets.core.calendar import nyse_calendar
    from ats_assets.models.labels import LabelSpec
    from ats_assets.models.serving import ModelServer
    from live.engine.settings import ExecutionCosts, StrategySettings

    resources = context.resources
    warehouse = resources.warehouse
    window = context.partition_time_window
    week = window.start.date()
    model_week = (week - timedelta(weeks=1)).isoformat()
    sessions = sessions_for_window(window)
    available = set(warehouse.partition_summary("features")["session"].to_list())
    missing = [d for d in sessions if d not in available]
    if not sessions or missing:
        raise dg.Failure(
            f"strategy_parameters {week} trades week {week}'s sessions; features are missing for "
            f"{missing or 'every session'}: materialize features (and raw_bars) first"
        )
    previous_sessions = sessions_for_window(
        dg.TimeWindow(window.start - timedelta(weeks=1), window.end - timedelta(weeks=1))
    )
    holding_sessions = [d for d in previous_sessions if d in available][-config.holding_sessions :]
    base = StrategySettings.from_env()
    current, since = tuned_parameters(warehouse, week)
    current = current or _settings_values(base)
    predictor = ModelServer(resources.model_store).load(config.model_asset, model_week)
    inputs = evaluation.prepare(warehouse, predictor, sessions, holding_sessions, base, LabelSpec())
    calendar = nyse_calendar()
    panel = evaluation.test_panel(
        warehouse, inputs, {d: calendar.session_close(d) for d in sessions}
    )
    sectors = dict(resources.market_data.universe().select("ticker", "sector").iter_rows())
    costs = ExecutionCosts.from_env()

    def evaluate(params: dict[str, float]) -> dict:
        settings = replace(base, **params)
        settings.validate()
        holding = evaluation.holding_period(warehouse, inputs.before, settings)
        result = evaluation.run_on_panel(
            panel, replace(inputs, holding=holding), sectors, settings, costs,
            strategy_id=f"tune-{model_week}",
        )  # fmt: skip
        trades = result.trades
        return {
            "pnl": float(trades["pnl"].sum()) if trades.height else 0.0,
            "trades": trades.height,
            "fees": float(trades["fees"].sum()) if trades.height else 0.0,
        }

    chosen, reason, records = tune(
        current, evaluate, TunerSettings(config.min_improvement, config.min_trades)
    )
    context.log.info(f"strategy_parameters {week}: {reason}")
    frame = pl.DataFrame(records).with_columns(
        week=pl.lit(week),
        model=pl.lit(f"{config.model_asset}/{model_week}"),
        selected=pl.Series([all(r[b.name] == chosen[b.name] for b in TUNED) for r in records]),
        reason=pl.lit(reason),
    )
    frame = frame.select("week", "model", "move", *(b.name for b in TUNED), "pnl", "trades",
                         "fees", "selected", "reason")  # fmt: skip
    bounds = pl.DataFrame(
        [{"parameter": b.name, "low": b.low, "high": b.high, "step": b.step,
          "before": current[b.name], "after": chosen[b.name]} for b in TUNED]
    )  # fmt: skip
    return dg.Output(
        frame,
        metadata={
            "reason": reason,
            "parameters": dg.MetadataValue.json(chosen),
            "started_from": since,
            "model": f"{config.model_asset}/{model_week}",
            "window": f"{sessions[0]} .. {sessions[-1]}",
            "candidates": dg.MetadataValue.md(markdown_table(frame.drop("week", "reason"))),
            "bounds": dg.MetadataValue.md(markdown_table(bounds)),
        },
    )


def tuned_parameters(warehouse, before_week: date) -> tuple[dict[str, float] | None, str]:
    """The parameters ``strategy_parameters`` chose in the latest week before ``before_week``."""
    from ats_assets.adaptation.tuner import TUNED

    if "strategy_parameters" not in warehouse.tables():
        return None, "settings (strategy_parameters never materialized)"
    rows = warehouse.read_table("strategy_parameters").filter(
        (pl.col("week") < before_week) & pl.col("selected")
    )
    if rows.is_empty():
        return None, f"settings (no strategy_parameters before {before_week})"
    row = rows.sort("week").row(-1, named=True)
    return {b.name: float(row[b.name]) for b in TUNED}, f"strategy_parameters {row['week']}"


def apply_tuned(settings, warehouse, before_week: date):
    """``settings`` with the tuned thresholds in force before ``before_week`` (and why)."""
    known = {f.name for f in fields(settings)}
    params, why = tuned_parameters(warehouse, before_week)
    if not params:
        return settings, why
    return replace(settings, **{k: v for k, v in params.items() if k in known}), why


# -- feature importance ------------------------------------------------------------------------
def _history_plot(history: pl.DataFrame, top: int = 8) -> str:
    import matplotlib

    from ats_assets.features.analysis import _png_markdown

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = history.filter(pl.col("week") == history["week"].max())
    leaders = last.sort("rank").head(top)["feature"].to_list()
    fig, ax = plt.subplots(figsize=(8, 3))
    for feature in leaders:
        rows = history.filter(pl.col("feature") == feature).sort("week")
        ax.plot(rows["week"].to_list(), rows["importance"].to_list(), marker="o", label=feature)
    ax.set_ylabel("share of total gain")
    ax.legend(fontsize=6, loc="upper left")
    fig.autofmt_xdate()
    return _png_markdown(fig)


@dg.asset(
    group_name=GROUP,
    partitions_def=weekly_partitions,
    deps=["xgboost_model"],
    required_resource_keys={"warehouse", "model_store"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "week"},
    kinds={"polars"},
    code_version="1",
    description=(
        "Each feature's share of the week's XGBoost model gain, its rank and rank change against "
        "the previous week; drift figures (rank correlation, top-20 overlap) as metadata."
    ),
)
def feature_importance_history(context: dg.AssetExecutionContext) -> dg.Output:
    from ats_assets.adaptation.importance import gain_shares, importance_drift
    from ats_assets.models.serving import ModelServer

    warehouse = context.resources.warehouse
    week = context.partition_time_window.start.date()
    model = ModelServer(context.resources.model_store).load("xgboost_model", context.partition_key)
    gains = model.model.booster.get_score(importance_type="total_gain")
    columns = list(model.columns)
    # boosters trained on plain arrays name features f0, f1, ... in column order
    named = {columns[int(k[1:])] if k[1:].isdigit() else k: v for k, v in gains.items()}
    current = gain_shares(named, columns)
    earlier = (
        warehouse.read_table("feature_importance_history").filter(pl.col("week") < week)
        if "feature_importance_history" in warehouse.tables()
        else pl.DataFrame()
    )
    if earlier.is_empty():
        previous, drift = None, {}
    else:
        previous = earlier.filter(pl.col("week") == earlier["week"].max())
        drift = importance_drift(current, previous)
    frame = current.with_columns(week=pl.lit(week))
    if previous is not None:
        frame = frame.join(
            previous.select("feature", previous_rank="rank"), on="feature", how="left"
        )
    else:
        frame = frame.with_columns(previous_rank=pl.lit(None, dtype=pl.Int64))
    frame = frame.with_columns(rank_change=pl.col("previous_rank") - pl.col("rank")).select(
        "week", "feature", "importance", "rank", "previous_rank", "rank_change"
    )
    history = pl.concat(
        [earlier.select(frame.columns), frame] if not earlier.is_empty() else [frame]
    )
    metadata = {
        "dagster/row_count": frame.height,
        "top": dg.MetadataValue.md(markdown_table(frame.head(15))),
        "weeks_tracked": history["week"].n_unique(),
        "history": dg.MetadataValue.md(_history_plot(history)),
    }
    if drift:
        metadata |= {
            "rank_correlation": dg.MetadataValue.float(drift["rank_correlation"]),
            "top20_overlap": dg.MetadataValue.float(drift["top_overlap"]),
            "entered_top20": ", ".join(drift["entered_top"]) or "none",
            "left_top20": ", ".join(drift["left_top"]) or "none",
        }
    return dg.Output(frame, metadata=metadata)


adaptation_assets = [ensemble_weights, strategy_parameters, feature_importance_history]
