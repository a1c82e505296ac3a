"""Holding-period optimiser: the time exit that past entry signals earned the most after costs at."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class HoldingChoice:
    """The chosen holding period (minutes), the evidence per horizon, and why."""

    minutes: int
    table: pl.DataFrame  # horizon (minutes), trades, mean_net_bps, t_stat
    reason: str


def return_column(horizon: int) -> str:
    """Name of the forward-return column for ``horizon`` minutes."""
    return f"ret_{horizon}m"


def forward_returns(bars: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """``bars`` with ``ret_{h}m``: close ``h`` bars later / close - 1 (a fraction), per horizon.

    ``bars``: ticker, session, ts, close (dollars), sorted by ticker and ts, one bar a minute.
    Never reaches into the next session or ticker: null where ``h`` bars later leaves the session.
    """
    later = {
        return_column(h): pl.col("close").shift(-h).over("ticker", "session") / pl.col("close")
        - 1.0
        for h in horizons
    }
    return bars.with_columns(**later)


def holding_table(signal_returns: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """Per horizon: trades, mean net bps per trade and its t-statistic (mean / standard error).

    Net bps of a trade = direction * return * 1e4 - cost_bps; trades without a return (the
    horizon left the session) are not counted. With no spread in the net returns the
    t-statistic is +/-inf (or 0 for a zero mean); with fewer than two trades it is null.
    """
    missing = [return_column(h) for h in horizons if return_column(h) not in signal_returns.columns]
    if missing:
        raise ValueError(f"signal_returns lacks {missing}; add them with forward_returns()")
    net = {
        str(h): pl.col("direction") * pl.col(return_column(h)) * 1e4 - pl.col("cost_bps")
        for h in horizons
    }
    mean, std, trades = pl.col("net").mean(), pl.col("net").std(), pl.len()
    t_stat = (
        pl.when(trades < 2)
        .then(None)
        .when(std > 0)
        .then(mean / (std / trades.sqrt()))
        .otherwise(mean.sign() * float("inf"))  # every trade netted the same
        .fill_nan(0.0)  # 0 * inf: every trade netted exactly 0
    )
    return (
        signal_returns.lazy()
        .select(**net)
        .unpivot(variable_name="horizon", value_name="net")
        .filter(pl.col("net").is_not_null() & pl.col("net").is_not_nan())
        .group_by("horizon")
        .agg(trades=trades.cast(pl.Int64), mean_net_bps=mean, t_stat=t_stat)
        .with_columns(pl.col("horizon").cast(pl.Int64))
        # horizons that never had a return still get a row, with 0 trades
        .join(
            pl.LazyFrame({"horizon": list(horizons)}, schema={"horizon": pl.Int64}),
            on="horizon",
            how="right",
        )
        .select("horizon", pl.col("trades").fill_null(0), "mean_net_bps", "t_stat")
        .sort("horizon")
        .collect()
    )


def optimal_holding(
    signal_returns: pl.DataFrame,
    horizons: tuple[int, ...] = (5, 10, 15, 30, 60),
    min_trades: int = 30,
    default: int = 30,
) -> HoldingChoice:
    """The holding period (minutes) with the highest mean net bps per trade and a positive t-stat.

    ``signal_returns``: one row per past entry signal with ``direction`` (+1/-1), ``cost_bps``
    (round trip, bps) and ``ret_{h}m`` (forward return after h minutes, a fraction) per horizon.
    Fewer than ``min_trades`` signals, or no horizon with ``min_trades`` trades and a positive
    t-statistic, gives ``default`` minutes. Ties go to the shorter horizon (less time at risk).
    """
    table = holding_table(signal_returns, horizons)
    if signal_returns.height < min_trades:
        reason = f"{signal_returns.height} signals < {min_trades}: default {default} minutes"
        return HoldingChoice(default, table, reason)
    winners = table.filter((pl.col("trades") >= min_trades) & (pl.col("t_stat") > 0)).sort(
        ["mean_net_bps", "horizon"], descending=[True, False]
    )
    if winners.is_empty():
        reason = f"no horizon earned a positive mean net return: default {default} minutes"
        return HoldingChoice(default, table, reason)
    best = winners.row(0, named=True)
    reason = (
        f"{best['horizon']} minutes: {best['mean_net_bps']:.2f} bps net per trade, "
        f"t = {best['t_stat']:.2f} over {best['trades']} trades"
    )
    return HoldingChoice(int(best["horizon"]), table, reason)
