"""Backtest performance: returns, risk, trade statistics, turnover and costs from the simulator's frames.

Inputs are the simulator's ``equity`` (one row per 1-minute bar), ``trades`` (one row per round
trip) and ``fills`` (one row per fill) frames. Units: dollars, fractions (0.02 = 2%), basis points
(bps). Every function accepts empty frames (no trades, no fills) and then reports zeros.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

SESSIONS_PER_YEAR = 252

ATTRIBUTION_COLUMNS = ("trades", "pnl", "gross_pnl", "fees", "win_rate", "avg_return_bps")


def drawdown(equity: pl.DataFrame, initial_capital: float | None = None) -> pl.DataFrame:
    """``equity`` sorted by ``ts`` with ``peak`` (dollars) and ``drawdown`` (fraction, >= 0) added.

    ``peak`` is the running maximum of ``equity``; with ``initial_capital`` the starting capital
    counts as the first peak, so a loss on the very first bar is a drawdown too.
    ``drawdown`` is ``1 - equity / peak`` (0.1 = 10% below the peak).
    """
    peak = pl.col("equity").cum_max()
    if initial_capital is not None:
        peak = pl.max_horizontal(peak, pl.lit(float(initial_capital)))
    return (
        equity.sort("ts")
        .with_columns(peak.cast(pl.Float64).alias("peak"))
        .with_columns(
            pl.when(pl.col("peak") > 0)
            .then(1.0 - pl.col("equity") / pl.col("peak"))
            .otherwise(0.0)
            .alias("drawdown")
        )
    )


def daily_pnl(equity: pl.DataFrame, initial_capital: float | None = None) -> pl.DataFrame:
    """One row per session: ``session``, ``equity_end``, ``pnl`` (dollars) and ``return`` (fraction).

    ``equity_end`` is the equity at the session's last bar. Each session is measured against the
    previous session's end; the first against ``initial_capital`` when given, otherwise against
    the first bar's equity (the curve carries no earlier mark).
    """
    schema = {
        "session": pl.Date,
        "equity_end": pl.Float64,
        "pnl": pl.Float64,
        "return": pl.Float64,
    }
    if equity.is_empty():
        return pl.DataFrame(schema=schema)
    ordered = equity.sort("ts")
    base = float(initial_capital if initial_capital is not None else ordered["equity"][0])
    previous = pl.col("equity_end").shift(1).fill_null(base)
    return (
        ordered.group_by("session", maintain_order=True)
        .agg(pl.col("equity").last().cast(pl.Float64).alias("equity_end"))
        .sort("session")
        .with_columns(
            (pl.col("equity_end") - previous).alias("pnl"),
            (pl.col("equity_end") / previous - 1.0).alias("return"),
        )
        .select(list(schema))
    )


def attribution(trades: pl.DataFrame, by: str) -> pl.DataFrame:
    """Trade results per value of ``by`` (``ticker``, ``sector``, ``signal``, ``exit_intent``...).

    Columns: ``by``, ``trades``, ``pnl``, ``gross_pnl`` and ``fees`` (dollars), ``win_rate``
    (fraction of trades with pnl > 0), ``avg_return_bps``; sorted by ``pnl``, best first. The
    ``pnl`` column sums to the total pnl of ``trades``.
    """
    schema = {
        by: trades.schema.get(by, pl.String),
        "trades": pl.UInt32,
        "pnl": pl.Float64,
        "gross_pnl": pl.Float64,
        "fees": pl.Float64,
        "win_rate": pl.Float64,
        "avg_return_bps": pl.Float64,
    }
    if trades.is_empty():
        return pl.DataFrame(schema=schema)
    if by not in trades.columns:
        raise ValueError(f"cannot attribute trades by {by!r}: trades have {trades.columns}")
    return (
        trades.group_by(by)
        .agg(
            pl.len().alias("trades"),
            pl.col("pnl").sum().cast(pl.Float64),
            pl.col("gross_pnl").sum().cast(pl.Float64),
            pl.col("fees").sum().cast(pl.Float64),
            (pl.col("pnl") > 0).mean().cast(pl.Float64).alias("win_rate"),
            pl.col("return_bps").mean().cast(pl.Float64).alias("avg_return_bps"),
        )
        # ties broken by the key so the table is the same on every run
        .sort(["pnl", by], descending=[True, False])
        .cast(schema)
    )


def performance(
    equity: pl.DataFrame,
    trades: pl.DataFrame,
    fills: pl.DataFrame,
    initial_capital: float,
    minutes_per_year: float = SESSIONS_PER_YEAR * 390,
) -> dict[str, float]:
    """The backtest's headline numbers (every value a float).

    Returns and risk:
    - ``dollar_profit``: final equity - ``initial_capital`` (dollars); ``total_return`` the same as
      a fraction of ``initial_capital``.
    - ``annualised_return``: geometric, ``(1 + total_return) ** (252 / sessions) - 1``.
    - ``sharpe``: mean / sample standard deviation (ddof=1) of daily returns of session-end equity
      (the first session against ``initial_capital``), times sqrt(252). 0.0 with fewer than two
      sessions or zero dispersion.
    - ``sortino``: mean daily return / downside deviation, times sqrt(252); the downside
      deviation is ``sqrt(mean(min(r, 0) ** 2))`` over all sessions (target 0). 0.0 where it is
      undefined: no session lost money, or fewer than two sessions.
    - ``max_drawdown`` (fraction, positive) and ``max_drawdown_dollars`` (the deepest dollar
      distance below the running peak) from the 1-minute curve, ``initial_capital`` counting as
      the first peak.

    Trades: ``trades`` (count), ``win_rate`` (fraction with pnl > 0), ``profit_factor`` (gross
    winning pnl / gross losing pnl; inf with wins and no losses, 0.0 with no wins or no trades),
    ``avg_trade_pnl`` (dollars after fees).

    Activity:
    - ``turnover``: fill notional traded per session as a multiple of mean equity,
      ``sum(notional) / mean(equity) / sessions`` (1.0 = the equity traded once a day, buys
      and sells both counted).
    - ``exposure``: fraction of bars holding any position; ``avg_gross_exposure``: mean over
      bars of gross exposure / equity (fraction).

    Costs (dollars): ``fees_paid`` (sum of fill fees), ``slippage_paid`` (sum over fills of
    ``|price - reference_price| * qty``, the price paid away from the bar open; fills without a
    reference price count 0), ``costs_paid`` (their sum).

    ``sessions``: the number of sessions in ``equity``. ``minutes_per_year`` is kept for callers
    that annualise per-bar figures; the annualisation here is by session (252 per year).
    """
    del minutes_per_year  # daily statistics annualise by session count, not by minute
    curve = drawdown(equity, initial_capital)
    days = daily_pnl(equity, initial_capital)
    sessions = days.height
    final = float(curve["equity"][-1]) if curve.height else float(initial_capital)
    total = final / initial_capital - 1.0 if initial_capital else 0.0
    return {
        "dollar_profit": final - initial_capital,
        "total_return": total,
        "annualised_return": _annualised(total, sessions),
        **_daily_ratios(days["return"].to_numpy()),
        "max_drawdown": float(curve["drawdown"].max() or 0.0) if curve.height else 0.0,
        "max_drawdown_dollars": (
            float((curve["peak"] - curve["equity"]).max() or 0.0) if curve.height else 0.0
        ),
        **_trade_statistics(trades),
        **_activity(curve, fills, sessions),
        **_costs(fills),
        "sessions": float(sessions),
    }


def _annualised(total: float, sessions: int) -> float:
    if sessions == 0:
        return 0.0
    if total <= -1.0:  # the account is gone; a fractional power of a negative is meaningless
        return -1.0
    return (1.0 + total) ** (SESSIONS_PER_YEAR / sessions) - 1.0


def _daily_ratios(returns: np.ndarray) -> dict[str, float]:
    if returns.size < 2:
        return {"sharpe": 0.0, "sortino": 0.0}
    mean = float(returns.mean())
    std = float(returns.std(ddof=1))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    scale = math.sqrt(SESSIONS_PER_YEAR)
    return {
        "sharpe": mean / std * scale if std > 0 else 0.0,
        "sortino": mean / downside * scale if downside > 0 else 0.0,
    }


def _trade_statistics(trades: pl.DataFrame) -> dict[str, float]:
    if trades.is_empty():
        return {"trades": 0.0, "win_rate": 0.0, "profit_factor": 0.0, "avg_trade_pnl": 0.0}
    pnl = trades["pnl"].cast(pl.Float64)
    wins = float(pnl.filter(pnl > 0).sum())
    losses = -float(pnl.filter(pnl < 0).sum())
    if losses > 0:
        profit_factor = wins / losses
    elif wins > 0:
        profit_factor = math.inf  # every closed trade won or broke even
    else:
        profit_factor = 0.0
    return {
        "trades": float(trades.height),
        "win_rate": float((pnl > 0).mean()),
        "profit_factor": profit_factor,
        "avg_trade_pnl": float(pnl.mean()),
    }


def _activity(curve: pl.DataFrame, fills: pl.DataFrame, sessions: int) -> dict[str, float]:
    if curve.is_empty():
        return {"turnover": 0.0, "exposure": 0.0, "avg_gross_exposure": 0.0}
    mean_equity = float(curve["equity"].mean())
    notional = float(fills["notional"].abs().sum()) if fills.height else 0.0
    turnover = notional / mean_equity / sessions if mean_equity > 0 and sessions else 0.0
    # a bar with no equity left has no meaningful exposure fraction
    gross = curve.filter(pl.col("equity") > 0).select(
        (pl.col("gross_exposure") / pl.col("equity")).mean()
    )
    return {
        "turnover": turnover,
        "exposure": float((curve["positions"] > 0).mean()),
        "avg_gross_exposure": float(gross.item() or 0.0),
    }


def _costs(fills: pl.DataFrame) -> dict[str, float]:
    if fills.is_empty():
        return {"costs_paid": 0.0, "fees_paid": 0.0, "slippage_paid": 0.0}
    fees = float(fills["fees"].sum())
    slippage = float(
        fills.select(
            ((pl.col("price") - pl.col("reference_price")).abs() * pl.col("qty").abs()).sum()
        ).item()
    )
    return {"costs_paid": fees + slippage, "fees_paid": fees, "slippage_paid": slippage}
