"""Backtest report: the equity figure is a PNG, the HTML page is standalone, formatted and escaped."""

import base64
import math

import polars as pl

from live.backtest.metrics import attribution, performance
from live.backtest.report import (
    equity_figure_png,
    format_metric,
    html_report,
    plot_markdown,
)
from tests.test_backtest_metrics import NO_FILLS, NO_TRADES, equity_frame, trades_frame

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EQUITY = equity_frame([[100_000.0, 101_000.0, 99_500.0], [100_200.0, 101_234.5]])


def page(trades: pl.DataFrame, **kwargs) -> str:
    metrics = performance(EQUITY, trades, NO_FILLS, initial_capital=100_000.0)
    attributions = {by: attribution(trades, by) for by in ("ticker", "exit_intent")}
    return html_report("Backtest 2024-11-04", metrics, trades, EQUITY, attributions, **kwargs)


def test_equity_figure_is_a_png():
    assert equity_figure_png(EQUITY).startswith(PNG_MAGIC)


def test_equity_figure_of_an_empty_curve_is_still_a_png():
    assert equity_figure_png(equity_frame([])).startswith(PNG_MAGIC)


def test_equity_figure_labels_many_sessions_without_failing():
    many = equity_frame([[100.0 + day, 101.0 + day] for day in range(60)])
    assert equity_figure_png(many, initial_capital=100.0).startswith(PNG_MAGIC)


def test_plot_markdown_embeds_the_png_as_a_base64_image():
    png = equity_figure_png(EQUITY)
    markdown = plot_markdown(png)
    prefix = "![equity and drawdown](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == png


def test_metrics_are_formatted_as_dollars_percentages_and_counts():
    assert format_metric("dollar_profit", 1234.5) == "$1,234.50"
    assert format_metric("max_drawdown_dollars", -1500.0) == "-$1,500.00"
    assert format_metric("total_return", 0.01234) == "1.23%"
    assert format_metric("trades", 1234.0) == "1,234"
    assert format_metric("sharpe", 1.23456) == "1.23"
    assert format_metric("profit_factor", math.inf) == "∞"


def test_html_report_holds_the_title_metrics_and_the_embedded_plot():
    text = page(trades_frame([{"pnl": 12.5}, {"pnl": -2.5}]))
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>Backtest 2024-11-04</title>" in text
    assert "<td>$1,234.50</td>" in text  # dollar_profit
    assert "<td>1.23%</td>" in text  # total_return
    assert '<img src="data:image/png;base64,' in text
    assert "<h2>By ticker</h2>" in text and "<h2>By exit_intent</h2>" in text


def test_html_report_loads_nothing_from_outside():
    text = page(trades_frame([{"pnl": 1.0}]))
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text


def test_html_report_escapes_a_malicious_ticker_and_notes():
    trades = trades_frame([{"ticker": "<script>alert(1)</script>", "pnl": 1.0}])
    text = page(trades, notes=['fees "tiered" & <b>bold</b>'])
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "fees &quot;tiered&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in text


def test_html_report_shows_the_first_500_trades_and_says_so():
    text = page(trades_frame([{"ticker": f"T{i}", "pnl": 1.0} for i in range(501)]))
    assert "Showing the first 500 of 501 trades." in text
    assert '<td class="text">T499</td>' in text
    trades_section = text.split("<h2>Trades</h2>")[1]
    assert "T500" not in trades_section


def test_html_report_without_trades_says_so():
    text = page(NO_TRADES)
    assert "No trades." in text
    assert "Showing the first" not in text
