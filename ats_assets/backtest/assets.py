"""``backtest_report``: weekly model W traded by the strategy engine on week W+1, out of sample.

Walk-forward falls out of the partitions: every model week is judged on the week after it, with
the same engine the live job runs, through the simulated broker's fill model. The asset stores the
trades table (one row per round trip) and shows the metrics, an equity-and-drawdown plot and the
attribution tables in the UI; the standalone HTML report is written to the report store.
"""

from datetime import timedelta

import dagster as dg
import polars as pl
from pydantic import Field

from ats_assets.backtest import evaluation
from ats_assets.core.calendar import nyse_calendar
from ats_assets.core.tables import markdown_table
from ats_assets.models.labels import LabelSpec
from ats_assets.partitions import sessions_for_window, weekly_partitions

GROUP = "backtest"
ATTRIBUTIONS = ("ticker", "sector", "signal", "exit_intent")
# Week W's model reads week W+1's bars and features: the next out-of-sample window.
_next_week = dg.TimeWindowPartitionMapping(start_offset=1, end_offset=1)
_selection_lookback = dg.TimeWindowPartitionMapping(
    start_offset=-4, end_offset=1, allow_nonexistent_upstream_partitions=True
)


class BacktestConfig(dg.Config):
    """Which model week W is judged, and on what (sessions, dollars)."""

    model_asset: str = "ensemble_model"
    holding_sessions: int = 2  # W's last sessions: the holding period and first focus list
    # Overrides of the strategy settings (live.engine.settings.StrategySettings field names), on
    # top of the environment's, e.g. {"cost_multiple": 0.5}: to explore without editing .env.
    strategy: dict[str, float] = Field(default_factory=dict)
    # Start from the thresholds strategy_parameters chose up to week W (tuned on W's sessions at
    # the latest, so never on the traded week W+1), when that asset has been materialized.
    tuned_parameters: bool = True


def _strategy_settings(overrides: dict[str, float], settings=None):
    from dataclasses import fields, replace

    from live.engine.settings import StrategySettings

    settings = settings or StrategySettings.from_env()
    known = {f.name: type(f.default) for f in fields(StrategySettings)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise dg.Failure(
            f"backtest_report config strategy has unknown setting(s) {unknown}; "
            f"known: {', '.join(sorted(known))}"
        )
    settings = replace(settings, **{k: known[k](v) for k, v in overrides.items()})
    settings.validate()
    return settings


@dg.asset(
    group_name=GROUP,
    partitions_def=weekly_partitions,
    deps=[
        dg.AssetDep("ensemble_model"),
        dg.AssetDep("features", partition_mapping=_next_week),
        dg.AssetDep("raw_bars", partition_mapping=_next_week),
        dg.AssetDep("daily_bars", partition_mapping=_selection_lookback),
    ],
    required_resource_keys={"warehouse", "model_store", "report_store", "market_data"},
    io_manager_key="warehouse_io_manager",
    metadata={"partition_column": "week"},
    kinds={"polars"},
    code_version="1",
    # with the daemon's automation sensor on, week W's backtest runs once W's ensemble and
    # week W+1's features both exist, and again when either changes
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The week's model traded by the strategy engine on the following week (out of sample): "
        "metrics, equity curve, attribution; the trades table."
    ),
)
def backtest_report(context: dg.AssetExecutionContext, config: BacktestConfig) -> dg.Output:
    from ats_assets.models.serving import ModelServer
    from live.backtest.metrics import attribution, performance
    from live.backtest.report import equity_figure_png, html_report, plot_markdown
    from live.engine.settings import ExecutionCosts

    resources = context.resources
    window = context.partition_time_window
    week = context.partition_key
    train_sessions = sessions_for_window(window)
    test_sessions = sessions_for_window(
        dg.TimeWindow(window.start + timedelta(weeks=1), window.end + timedelta(weeks=1))
    )
    available = set(resources.warehouse.partition_summary("features")["session"].to_list())
    missing = [d for d in test_sessions if d not in available]
    if not test_sessions or missing:
        raise dg.Failure(
            f"backtest_report {week} trades the following week, and its features are missing for "
            f"{missing or 'every session'}: materialize features (and raw_bars) for "
            f"{test_sessions[0] if test_sessions else 'next week'} .. "
            f"{test_sessions[-1] if test_sessions else ''} first"
        )
    from ats_assets.adaptation.assets import apply_tuned
    from live.engine.settings import StrategySettings

    settings, parameters_from = StrategySettings.from_env(), "settings (tuned_parameters off)"
    if config.tuned_parameters:
        settings, parameters_from = apply_tuned(
            settings, resources.warehouse, window.start.date() + timedelta(weeks=1)
        )
    settings = _strategy_settings(config.strategy, settings)
    costs = ExecutionCosts.from_env()
    predictor = ModelServer(resources.model_store).load(config.model_asset, week)
    holding_sessions = [d for d in train_sessions if d in available][-config.holding_sessions :]
    inputs = evaluation.prepare(
        resources.warehouse, predictor, test_sessions, holding_sessions, settings, LabelSpec()
    )
    sectors = dict(resources.market_data.universe().select("ticker", "sector").iter_rows())
    calendar = nyse_calendar()
    result = evaluation.run(
        resources.warehouse,
        inputs,
        {d: calendar.session_close(d) for d in test_sessions},
        sectors,
        settings,
        costs,
        strategy_id=f"backtest-{config.model_asset}-{week}",
    )
    figures = performance(result.equity, result.trades, result.fills, settings.initial_capital)
    tables = {by: attribution(result.trades, by) for by in ATTRIBUTIONS}
    title = f"Backtest of {config.model_asset} {week} on {test_sessions[0]} .. {test_sessions[-1]}"
    notes = [
        f"holding period: {inputs.holding.reason}",
        f"focus tickers per session: {min(len(v) for v in inputs.focus.values())} .. "
        f"{max(len(v) for v in inputs.focus.values())} of "
        f"{max(inputs.active_counts.values())} active",
        f"{result.bar_events:,} ticker-minutes simulated; {result.orders.height:,} orders, "
        f"{result.cancelled.height:,} cancelled; {len(result.rejections):,} entry signals "
        "rejected by sizing, caps or the open-positions limit (reasons in the asset's metadata)",
    ]
    png = equity_figure_png(result.equity, initial_capital=settings.initial_capital)
    report = resources.report_store.save(
        "backtest_report",
        week,
        html_report(
            title,
            figures,
            result.trades,
            result.equity,
            tables,
            notes,
            initial_capital=settings.initial_capital,
        ),
    )
    rejections = (
        result.rejections.group_by("reason").len().sort("len", descending=True)
        if not result.rejections.is_empty()
        else pl.DataFrame({"reason": [], "len": []})
    )
    return dg.Output(
        result.trades.with_columns(week=pl.lit(window.start.date())).select(
            "week", pl.exclude("week")
        ),
        metadata={
            **{name: dg.MetadataValue.float(float(value)) for name, value in figures.items()},
            "dagster/row_count": result.trades.height,
            "test_window": f"{test_sessions[0]} .. {test_sessions[-1]}",
            "model": f"{config.model_asset}/{week}",
            "holding_minutes": inputs.holding.minutes,
            "strategy_parameters": parameters_from,
            "equity_curve": dg.MetadataValue.md(plot_markdown(png)),
            "report": dg.MetadataValue.path(str(report)),
            **{
                f"by_{by}": dg.MetadataValue.md(markdown_table(table, max_rows=15))
                for by, table in tables.items()
            },
            "rejections": dg.MetadataValue.md(markdown_table(rejections, max_rows=10)),
            "orders": result.orders.height,
            "orders_cancelled": result.cancelled.height,
        },
    )


backtest_assets = [backtest_report]
