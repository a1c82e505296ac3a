"""Backtest metrics: returns, drawdown, daily ratios, trade statistics, turnover, costs, attribution."""

import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from live.backtest.metrics import attribution, daily_pnl, drawdown, performance

MONDAY = date(2024, 11, 4)


def equity_frame(
    sessions: list[list[float]],
    gross: list[float] | None = None,
    positions: list[int] | None = None,
) -> pl.DataFrame:
    """An equity curve: ``sessions[i]`` holds the bar-close equities (dollars) of session ``i``."""
    rows = []
    for day, values in enumerate(sessions):
        session = MONDAY + timedelta(days=day)
        open_ = datetime(session.year, session.month, session.day, 14, 30, tzinfo=UTC)
        rows += [
            {"ts": open_ + timedelta(minutes=i + 1), "session": session, "equity": v}
            for i, v in enumerate(values)
        ]
    n = len(rows)
    frame = pl.DataFrame(
        rows, schema={"ts": pl.Datetime("us", "UTC"), "session": pl.Date, "equity": pl.Float64}
    )
    return frame.with_columns(
        cash=pl.col("equity"),
        gross_exposure=pl.Series(gross or [0.0] * n, dtype=pl.Float64),
        net_exposure=pl.Series(gross or [0.0] * n, dtype=pl.Float64),
        positions=pl.Series(positions or [0] * n, dtype=pl.Int64),
    )


def trades_frame(rows: list[dict]) -> pl.DataFrame:
    """Round trips with the simulator's columns; ``rows`` give ticker, pnl and what else matters."""
    entry = datetime(2024, 11, 4, 15, 0, tzinfo=UTC)
    full = [
        {
            "ticker": r.get("ticker", "AAPL"),
            "sector": r.get("sector", "Technology"),
            "signal": r.get("signal", "momentum"),
            "direction": r.get("direction", 1),
            "qty": 10,
            "entry_ts": entry,
            "entry_price": 100.0,
            "exit_ts": entry + timedelta(minutes=5),
            "exit_price": 100.0 + r["pnl"] / 10,
            "exit_intent": r.get("exit_intent", "target"),
            "gross_pnl": r["pnl"] + r.get("fees", 0.0),
            "fees": r.get("fees", 0.0),
            "pnl": r["pnl"],
            "return_bps": r["pnl"] / 1000.0 * 1e4,
            "bars_held": 5,
        }
        for r in rows
    ]
    return pl.DataFrame(
        full,
        schema_overrides={
            "entry_ts": pl.Datetime("us", "UTC"),
            "exit_ts": pl.Datetime("us", "UTC"),
        },
    )


def fills_frame(rows: list[tuple[str, int, float, float, float]]) -> pl.DataFrame:
    """Fills from (side, qty, price, reference_price, fees) tuples."""
    ts = datetime(2024, 11, 4, 15, 0, tzinfo=UTC)
    return pl.DataFrame(
        [
            {
                "client_order_id": f"order-{i}",
                "ticker": "AAPL",
                "side": side,
                "qty": qty,
                "price": price,
                "fees": fees,
                "ts": ts + timedelta(minutes=i),
                "intent": "entry" if side == "buy" else "target",
                "reference_price": reference,
                "notional": qty * price,
            }
            for i, (side, qty, price, reference, fees) in enumerate(rows)
        ]
    )


NO_TRADES = pl.DataFrame(
    schema={
        "ticker": pl.String,
        "sector": pl.String,
        "signal": pl.String,
        "exit_intent": pl.String,
        "pnl": pl.Float64,
        "gross_pnl": pl.Float64,
        "fees": pl.Float64,
        "return_bps": pl.Float64,
    }
)
NO_FILLS = pl.DataFrame(
    schema={
        "qty": pl.Int64,
        "price": pl.Float64,
        "reference_price": pl.Float64,
        "fees": pl.Float64,
        "notional": pl.Float64,
    }
)


def run(equity: pl.DataFrame, trades=NO_TRADES, fills=NO_FILLS, capital: float = 100.0) -> dict:
    return performance(equity, trades, fills, initial_capital=capital)


def test_drawdown_is_the_fraction_below_the_running_peak():
    curve = drawdown(equity_frame([[100.0, 110.0, 99.0, 120.0]]))
    assert curve["peak"].to_list() == [100.0, 110.0, 110.0, 120.0]
    assert curve["drawdown"].to_list() == pytest.approx([0.0, 0.0, 0.1, 0.0])


def test_max_drawdown_of_100_110_99_120_is_ten_percent_and_eleven_dollars():
    result = run(equity_frame([[100.0, 110.0, 99.0, 120.0]]))
    assert result["max_drawdown"] == pytest.approx(0.10)
    assert result["max_drawdown_dollars"] == pytest.approx(11.0)


def test_initial_capital_counts_as_the_first_peak():
    result = run(equity_frame([[95.0, 100.0]]), capital=100.0)
    assert result["max_drawdown"] == pytest.approx(0.05)
    assert result["max_drawdown_dollars"] == pytest.approx(5.0)


def test_dollar_profit_and_total_return_compare_final_equity_with_initial_capital():
    result = run(equity_frame([[100.0, 110.0, 99.0, 120.0]]))
    assert result["dollar_profit"] == pytest.approx(20.0)
    assert result["total_return"] == pytest.approx(0.20)


def test_annualised_return_compounds_the_total_return_over_252_sessions():
    result = run(equity_frame([[100.0, 101.0], [100.5, 102.0]]))
    assert result["sessions"] == 2.0
    assert result["annualised_return"] == pytest.approx(1.02**126 - 1.0)


def test_daily_pnl_measures_each_session_end_against_the_previous_one():
    days = daily_pnl(equity_frame([[100.0, 105.0, 110.0], [108.0, 104.5]]), initial_capital=100.0)
    assert days["session"].to_list() == [MONDAY, MONDAY + timedelta(days=1)]
    assert days["equity_end"].to_list() == [110.0, 104.5]
    assert days["pnl"].to_list() == pytest.approx([10.0, -5.5])
    assert days["return"].to_list() == pytest.approx([0.10, -0.05])


def test_daily_pnl_without_initial_capital_starts_from_the_first_bar():
    days = daily_pnl(equity_frame([[200.0, 210.0]]))
    assert days["pnl"].to_list() == pytest.approx([10.0])
    assert days["return"].to_list() == pytest.approx([0.05])


def test_sharpe_and_sortino_of_two_sessions_match_the_hand_computation():
    # daily returns +10% and -5%: mean 2.5%, sample std 7.5%*sqrt(2), downside sqrt(0.05^2 / 2)
    result = run(equity_frame([[100.0, 105.0, 110.0], [108.0, 104.5]]))
    assert result["sharpe"] == pytest.approx(0.025 / (0.075 * math.sqrt(2)) * math.sqrt(252))
    assert result["sharpe"] == pytest.approx(math.sqrt(126) / 3)
    assert result["sortino"] == pytest.approx(0.025 / (0.05 / math.sqrt(2)) * math.sqrt(252))
    assert result["sortino"] == pytest.approx(math.sqrt(126))


def test_sharpe_and_sortino_are_zero_with_a_single_session():
    result = run(equity_frame([[100.0, 110.0]]))
    assert result["sharpe"] == 0.0
    assert result["sortino"] == 0.0


def test_sortino_is_zero_when_no_session_lost_money():
    result = run(equity_frame([[110.0], [121.0], [127.05]]))
    assert result["sharpe"] > 0
    assert result["sortino"] == 0.0


def test_win_rate_profit_factor_and_average_trade_pnl():
    trades = trades_frame([{"pnl": p} for p in (30.0, -10.0, 20.0, -5.0, 0.0)])
    result = run(equity_frame([[100.0]]), trades)
    assert result["trades"] == 5.0
    assert result["win_rate"] == pytest.approx(0.4)
    assert result["profit_factor"] == pytest.approx(50.0 / 15.0)
    assert result["avg_trade_pnl"] == pytest.approx(7.0)


def test_profit_factor_is_infinite_with_wins_and_no_losses():
    result = run(equity_frame([[100.0]]), trades_frame([{"pnl": 5.0}, {"pnl": 0.0}]))
    assert result["profit_factor"] == math.inf


def test_profit_factor_is_zero_with_only_losses():
    result = run(equity_frame([[100.0]]), trades_frame([{"pnl": -5.0}]))
    assert result["profit_factor"] == 0.0
    assert result["win_rate"] == 0.0


def test_turnover_is_fill_notional_per_session_over_mean_equity():
    # 6,000 dollars traded over two sessions against a mean equity of 1,000 dollars
    fills = fills_frame(
        [
            ("buy", 200, 10.0, 10.0, 0.0),
            ("sell", 200, 10.0, 10.0, 0.0),
            ("buy", 100, 10.0, 10.0, 0.0),
            ("sell", 100, 10.0, 10.0, 0.0),
        ]
    )
    result = run(equity_frame([[900.0, 1100.0], [1000.0, 1000.0]]), fills=fills, capital=1000.0)
    assert result["turnover"] == pytest.approx(3.0)


def test_costs_split_into_fees_and_slippage_from_the_reference_price():
    fills = fills_frame(
        [
            ("buy", 100, 10.02, 10.00, 1.0),  # paid 2 cents a share over the open
            ("sell", 100, 10.47, 10.50, 0.5),  # received 3 cents a share under the open
        ]
    )
    result = run(equity_frame([[100.0]]), fills=fills)
    assert result["fees_paid"] == pytest.approx(1.5)
    assert result["slippage_paid"] == pytest.approx(5.0)
    assert result["costs_paid"] == pytest.approx(6.5)


def test_exposure_is_the_share_of_bars_with_a_position():
    equity = equity_frame([[1000.0] * 4], gross=[0.0, 500.0, 1000.0, 0.0], positions=[0, 1, 2, 0])
    result = run(equity, capital=1000.0)
    assert result["exposure"] == pytest.approx(0.5)
    assert result["avg_gross_exposure"] == pytest.approx(0.375)


def test_no_trades_and_no_fills_give_zero_trade_and_cost_metrics():
    result = run(equity_frame([[100.0, 100.0]]))
    for key in (
        "trades",
        "win_rate",
        "profit_factor",
        "avg_trade_pnl",
        "turnover",
        "costs_paid",
        "fees_paid",
        "slippage_paid",
        "dollar_profit",
    ):
        assert result[key] == 0.0, key
    assert all(isinstance(v, float) for v in result.values())


def test_an_empty_equity_curve_reports_zeros():
    result = run(equity_frame([]))
    assert result["sessions"] == 0.0
    assert result["dollar_profit"] == 0.0
    assert result["max_drawdown"] == 0.0
    assert result["annualised_return"] == 0.0


def test_attribution_sums_per_ticker_sorted_by_pnl_and_adds_up_to_the_total():
    trades = trades_frame(
        [
            {"ticker": "AAPL", "pnl": 30.0, "fees": 1.0},
            {"ticker": "AAPL", "pnl": -10.0, "fees": 1.0},
            {"ticker": "MSFT", "pnl": -5.0, "fees": 0.5},
            {"ticker": "NVDA", "pnl": 40.0, "fees": 2.0},
        ]
    )
    table = attribution(trades, "ticker")
    assert table["ticker"].to_list() == ["NVDA", "AAPL", "MSFT"]
    assert table["trades"].to_list() == [1, 2, 1]
    assert table["pnl"].to_list() == pytest.approx([40.0, 20.0, -5.0])
    assert table["gross_pnl"].to_list() == pytest.approx([42.0, 22.0, -4.5])
    assert table["fees"].to_list() == pytest.approx([2.0, 2.0, 0.5])
    assert table["win_rate"].to_list() == pytest.approx([1.0, 0.5, 0.0])
    assert table["avg_return_bps"].to_list() == pytest.approx([400.0, 100.0, -50.0])
    assert table["pnl"].sum() == pytest.approx(trades["pnl"].sum())


def test_attribution_by_exit_intent_groups_the_exit_reasons():
    trades = trades_frame(
        [
            {"exit_intent": "stop", "pnl": -10.0},
            {"exit_intent": "target", "pnl": 25.0},
            {"exit_intent": "stop", "pnl": -6.0},
        ]
    )
    table = attribution(trades, "exit_intent")
    assert table.select("exit_intent", "trades", "pnl").rows() == [
        ("target", 1, 25.0),
        ("stop", 2, -16.0),
    ]


def test_attribution_of_no_trades_is_an_empty_table_with_the_columns():
    table = attribution(NO_TRADES, "sector")
    assert table.is_empty()
    assert table.columns == [
        "sector",
        "trades",
        "pnl",
        "gross_pnl",
        "fees",
        "win_rate",
        "avg_return_bps",
    ]


def test_attribution_by_an_unknown_column_names_it():
    with pytest.raises(ValueError, match="'strategy'"):
        attribution(trades_frame([{"pnl": 1.0}]), "strategy")
