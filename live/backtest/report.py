"""Backtest report: the equity and drawdown figure (PNG) and a standalone HTML page of the results.

matplotlib is imported inside the plotting function, so importing this module stays cheap. Every
string that reaches the HTML page is escaped; the page loads nothing from outside itself.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import date, datetime

import polars as pl

from live.backtest.metrics import drawdown

MAX_TRADE_ROWS = 500
MAX_SESSION_LABELS = 12

# How each metric of ``metrics.performance`` is shown; any other key is shown as a plain number.
DOLLAR_METRICS = frozenset(
    {
        "dollar_profit",
        "max_drawdown_dollars",
        "avg_trade_pnl",
        "costs_paid",
        "fees_paid",
        "slippage_paid",
        "initial_capital",
        "final_equity",
    }
)
FRACTION_METRICS = frozenset(
    {
        "total_return",
        "annualised_return",
        "max_drawdown",
        "win_rate",
        "exposure",
        "avg_gross_exposure",
    }
)
COUNT_METRICS = frozenset({"trades", "sessions"})

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.note { color: #555; font-size: 0.9em; }
img { max-width: 100%; }
"""


def equity_figure_png(equity: pl.DataFrame, initial_capital: float | None = None) -> bytes:
    """A two-panel PNG: equity (dollars) on top, drawdown (%, filled) below, about 80 dpi.

    The x axis is the bar index, not time, so nights and weekends leave no gaps; ticks mark the
    first bar of sessions (at most ``MAX_SESSION_LABELS`` labels). ``initial_capital``, when
    given, counts as the first peak of the drawdown, as in ``metrics.performance``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 4.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    try:
        if equity.is_empty():
            top.text(0.5, 0.5, "no equity data", ha="center", va="center", transform=top.transAxes)
        else:
            curve = drawdown(equity, initial_capital).with_row_index("bar")
            bars = curve["bar"].to_numpy()
            top.plot(bars, curve["equity"].to_numpy(), color="tab:blue", linewidth=1.0)
            down = -100.0 * curve["drawdown"].to_numpy()
            bottom.fill_between(bars, down, 0.0, color="tab:red", alpha=0.4, linewidth=0)
            bottom.plot(bars, down, color="tab:red", linewidth=0.6)
            _session_ticks(bottom, curve)
        top.set_ylabel("equity ($)")
        top.grid(alpha=0.3)
        bottom.set_ylabel("drawdown (%)")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _session_ticks(ax, curve: pl.DataFrame) -> None:
    starts = curve.group_by("session", maintain_order=True).agg(pl.col("bar").first()).sort("bar")
    step = max(1, math.ceil(starts.height / MAX_SESSION_LABELS))
    shown = starts.gather_every(step)
    ax.set_xticks(shown["bar"].to_list(), [str(s) for s in shown["session"].to_list()])
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    if starts.height > 1:
        for bar in starts["bar"].to_list()[1:]:
            ax.axvline(bar, color="#999", linewidth=0.3)


def plot_markdown(png: bytes) -> str:
    """``png`` as a Markdown image (base64 data URI), for Dagster metadata."""
    return f"![equity and drawdown](data:image/png;base64,{base64.b64encode(png).decode()})"


def format_metric(name: str, value: float | None) -> str:
    """``value`` as a person reads it: dollars ``$1,234.56``, fractions ``12.34%``, counts ``1,234``."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if name in DOLLAR_METRICS:
        return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"
    if name in FRACTION_METRICS:
        return f"{100.0 * value:,.2f}%"
    if name in COUNT_METRICS:
        return f"{round(value):,}"
    if isinstance(value, int | float):
        return f"{value:,.2f}"
    return str(value)


def html_report(
    title: str,
    metrics: dict,
    trades: pl.DataFrame,
    equity: pl.DataFrame,
    attributions: dict[str, pl.DataFrame],
    notes: list[str] | None = None,
    *,
    initial_capital: float | None = None,
) -> str:
    """A standalone HTML page: metrics, the equity and drawdown plot, attributions and trades.

    No external assets (inline CSS, the PNG as a base64 data URI). The trades table holds the
    first ``MAX_TRADE_ROWS`` trades and says so when there are more. ``initial_capital`` (dollars)
    counts as the first peak of the plotted drawdown, as in ``metrics.performance``.
    """
    png = base64.b64encode(equity_figure_png(equity, initial_capital)).decode()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
    ]
    if notes:
        parts.append('<ul class="note">')
        parts += [f"<li>{_text(note)}</li>" for note in notes]
        parts.append("</ul>")
    parts += ["<h2>Performance</h2>", _metrics_table(metrics)]
    parts += [
        "<h2>Equity and drawdown</h2>",
        f'<img src="data:image/png;base64,{png}" alt="equity and drawdown">',
    ]
    for name, frame in attributions.items():
        parts += [f"<h2>By {_text(name)}</h2>", _frame_table(frame, empty="No trades.")]
    parts.append("<h2>Trades</h2>")
    if trades.height > MAX_TRADE_ROWS:
        parts.append(
            f'<p class="note">Showing the first {MAX_TRADE_ROWS:,} of {trades.height:,} trades.</p>'
        )
    parts += [_frame_table(trades.head(MAX_TRADE_ROWS), empty="No trades."), "</body></html>"]
    return "\n".join(parts)


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _metrics_table(metrics: dict) -> str:
    rows = "".join(
        f'<tr><td class="text">{_text(name)}</td><td>{_text(format_metric(name, value))}</td></tr>'
        for name, value in metrics.items()
    )
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _frame_table(frame: pl.DataFrame, empty: str) -> str:
    if frame.is_empty():
        return f'<p class="note">{_text(empty)}</p>'
    head = "".join(f"<th>{_text(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.iter_rows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, datetime):
        return f'<td class="text">{value:%Y-%m-%d %H:%M}</td>'
    if isinstance(value, date):
        return f'<td class="text">{value.isoformat()}</td>'
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f'<td class="text">{_text(value)}</td>'
    if isinstance(value, float):
        return f"<td>{value:,.2f}</td>"
    return f"<td>{value:,}</td>"
