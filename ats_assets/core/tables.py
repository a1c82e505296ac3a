"""Small frames rendered for people (asset metadata previews)."""

from __future__ import annotations

import polars as pl


def markdown_table(frame: pl.DataFrame, max_rows: int = 10) -> str:
    """A Markdown table of the first ``max_rows`` rows of ``frame``."""
    head = frame.head(max_rows)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
    ]
    lines += [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |"
        for row in head.iter_rows()
    ]
    if len(frame) > max_rows:
        lines.append(f"\n{len(frame) - max_rows} more rows")
    return "\n".join(lines)
