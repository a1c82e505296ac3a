"""Live trading as assets: one session per trading day, and its performance.

``live_trading_session`` (daily) runs the day's session and writes what happened to the
warehouse: ``live_orders`` (every decision handed to the broker or refused, with its fate),
``live_fills``, ``live_positions`` (snapshots), ``live_account`` (equity snapshots) and
``live_events`` (kill switch, reconciliations, broker errors). ``live_trading_performance``
(daily) turns them into P&L, attribution and an execution-quality analysis.
"""

import os
from datetime import timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from ats_assets.core.tables import markdown_table
from ats_assets.partitions import live_day_partitions

GROUP = "live"
TABLES = ("live_orders", "live_fills", "live_positions", "live_account", "live_events")
LIVE_SESSION_TAG = "ats/live-session"  # dagster.yaml limits runs with this tag to one


class LiveSessionConfig(dg.Config):
    """How to run the day: ``replay`` a past day (bars from the warehouse) at ``speed`` market
    minutes per second (0: as fast as possible), or trade it in real time."""

    replay: bool = True
    speed: float = 0.0
    holding_sessions: int = 2  # sessions before the day behind the focus list and holding period
    notify_fills: bool = True
    # Overrides of the strategy settings (live.engine.settings.StrategySettings field names)
    strategy: dict[str, float] = Field(default_factory=dict)


def _notifier(context):
    notifier = context.resources.notifier

    def notify(severity: str, title: str, text: str) -> None:
        notifier.notify(severity, title, text, run_id=context.run.run_id)

    return notify


@dg.multi_asset(
    outs={
        name: dg.AssetOut(
            group_name=GROUP,
            io_manager_key="warehouse_io_manager",
            metadata={"partition_column": "session"},
            kinds={"polars"},
            is_required=True,
        )
        for name in TABLES
    },
    partitions_def=live_day_partitions,
    deps=[
        dg.AssetDep("champion_model", partition_mapping=dg.LastPartitionMapping()),
        dg.AssetDep("features"),
        dg.AssetDep("raw_bars"),
    ],
    required_resource_keys={
        "warehouse",
        "model_store",
        "market_data",
        "options_flow_source",
        "notifier",
    },
    op_tags={LIVE_SESSION_TAG: "account"},
    description=(
        "The day's trading session: the champion in force traded by the strategy engine through "
        "the broker (simulated by default); orders, fills, positions, account and events."
    ),
)
def live_trading_session(context: dg.AssetExecutionContext, config: LiveSessionConfig):
    from ats_resources.settings import Settings
    from live.location.session import SessionError, inference_threads, prepare_session
    from live.session.lock import SessionLock, SessionLocked

    day = context.partition_time_window.start.date()
    resources = context.resources
    try:
        prepared = prepare_session(
            instance=context.instance,
            warehouse=resources.warehouse,
            model_store=resources.model_store,
            market_data=resources.market_data,
            flow_source=resources.options_flow_source,
            day=day,
            replay=config.replay,
            speed=config.speed,
            holding_sessions=config.holding_sessions,
            overrides=config.strategy,
            notify=_notifier(context),
            notify_fills=config.notify_fills,
        )
    except (SessionError, ValueError) as error:
        raise dg.Failure(f"live session {day} cannot start: {error}") from None
    session = prepared.session
    context.log.info(
        f"champion {prepared.champion.label} (champion_model {prepared.champion.week}, run "
        f"{prepared.champion.run_id[:8]}); weights: {prepared.weights_from}; thresholds: "
        f"{prepared.parameters_from}; broker {session.broker.name}; "
        f"{'replay' if config.replay else 'real time'}; {len(prepared.plan.focus)} focus tickers"
    )
    data_dir = Settings.from_env().data_dir
    try:
        account = f"{session.broker.name}:{os.environ.get('ALPACA_API_KEY', '')}"
        with SessionLock(data_dir, account), inference_threads():
            result = session.run()
    except SessionLocked as error:
        raise dg.Failure(str(error)) from None
    finally:
        close = getattr(session.broker, "close", None)
        if close is not None:
            close()
    frames = result.records.frames()
    latency = result.latency_ms
    summary = {
        "champion": prepared.champion.label,
        "champion_materialization": f"champion_model {prepared.champion.week} "
        f"(run {prepared.champion.run_id}, storage id {prepared.champion.storage_id})",
        "sha256": prepared.champion.sha256,
        "broker": session.broker.name,
        "mode": "replay" if config.replay else "real time",
        "weights": prepared.weights_from,
        "thresholds": prepared.parameters_from,
        "focus_tickers": len(prepared.plan.focus),
        "holding_minutes": prepared.plan.holding.minutes,
        "round_trips": result.trades.height,
        "pnl": dg.MetadataValue.float(result.pnl),
        "halted": result.halted,
        "latency_p50_ms": dg.MetadataValue.float(float(pl.Series(latency).median() or 0.0)),
        "latency_p99_ms": dg.MetadataValue.float(float(pl.Series(latency).quantile(0.99) or 0.0)),
    }
    context.log.info(
        f"session {day}: {frames['live_orders'].height} orders, {frames['live_fills'].height} "
        f"fills, {result.trades.height} round trips, P&L ${result.pnl:,.2f}"
    )
    for name in TABLES:
        frame = frames[name]
        meta = {"dagster/row_count": frame.height}
        if name == "live_orders":
            meta |= summary
            by_status = frame.group_by("status").len().sort("status")
            meta["by_status"] = dg.MetadataValue.md(markdown_table(by_status))
        if name == "live_fills" and frame.height:
            meta["fills"] = dg.MetadataValue.md(markdown_table(frame.drop("session"), max_rows=20))
        if name == "live_events" and frame.height:
            meta["events"] = dg.MetadataValue.md(markdown_table(frame.drop("session")))
        yield dg.Output(frame, output_name=name, metadata=meta)
    if result.error:  # the records above are written; the run still fails, loudly
        raise dg.Failure(f"live session {day} stopped early: {result.error}")


@dg.asset(
    group_name=GROUP,
    partitions_def=live_day_partitions,
    deps=["live_orders", "live_fills", "live_account", "raw_bars"],
    required_resource_keys={"warehouse", "market_data"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "session"},
    kinds={"polars"},
    description=(
        "The day's live P&L (round trips), attribution by ticker, sector, signal and exit, and "
        "execution quality: each fill's slippage against the arrival price and the bar's VWAP."
    ),
)
def live_trading_performance(context: dg.AssetExecutionContext) -> dg.Output:
    from live.backtest.metrics import attribution
    from live.backtest.report import equity_figure_png, plot_markdown
    from live.session.performance import execution_quality, round_trips

    warehouse = context.resources.warehouse
    day = context.partition_time_window.start.date()
    span = {"partition_column": "session", "start": day, "end": day + timedelta(days=1)}
    fills = warehouse.read_window("live_fills", **span)
    orders = warehouse.read_window("live_orders", **span)
    account = warehouse.read_window("live_account", **span)
    bars = warehouse.read_window("raw_bars", **span)
    sectors = dict(context.resources.market_data.universe().select("ticker", "sector").iter_rows())
    trades = round_trips(fills, sectors)
    quality, summary = execution_quality(fills, orders, bars)
    meta = {
        "dagster/row_count": trades.height,
        "pnl": dg.MetadataValue.float(float(trades["pnl"].sum()) if trades.height else 0.0),
        "fees": dg.MetadataValue.float(float(fills["fees"].sum()) if fills.height else 0.0),
        "fills": fills.height,
        "orders": orders.height,
        "orders_refused": int((orders["status"] == "rejected").sum()) if orders.height else 0,
        **{k: dg.MetadataValue.float(v) for k, v in summary.items()},
        "execution_quality": dg.MetadataValue.md(markdown_table(quality, max_rows=20)),
    }
    if trades.height:
        for by in ("ticker", "sector", "signal", "exit_intent"):
            meta[f"by_{by}"] = dg.MetadataValue.md(
                markdown_table(attribution(trades, by), max_rows=15)
            )
    if account.height > 1:
        equity = account.select("ts", "session", "equity")
        start = float(equity["equity"][0])
        meta["equity_curve"] = dg.MetadataValue.md(
            plot_markdown(equity_figure_png(equity, initial_capital=start))
        )
    return dg.Output(trades.with_columns(session=pl.lit(day)), metadata=meta)


live_assets = [live_trading_session, live_trading_performance]
