"""Row-level validity rules as polars expressions, and their evaluation over a frame.

A rule names what it checks and gives an expression that is true for a *violating* row. Nulls
and NaNs count as violations: a value that cannot be checked is not valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    violation: pl.Expr  # true where a row breaks the rule


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    failed_rows: int
    total_rows: int
    sample: pl.DataFrame  # up to five violating rows

    @property
    def passed(self) -> bool:
        return self.failed_rows == 0


def _missing(*cols: str) -> pl.Expr:
    """True where any of ``cols`` is null or NaN (comparisons would otherwise skip or sort them)."""
    return pl.any_horizontal(
        [pl.col(c).is_null() | pl.col(c).is_nan().fill_null(False) for c in cols]
    )


def _not_positive(*cols: str) -> pl.Expr:
    return pl.any_horizontal([~(pl.col(c) > 0).fill_null(False) | pl.col(c).is_nan() for c in cols])


def positive(name: str, *cols: str) -> Rule:
    return Rule(
        name=name,
        description=f"{', '.join(cols)} must be strictly positive numbers",
        violation=_not_positive(*cols),
    )


def unique_key(*cols: str) -> Rule:
    return Rule(
        name="unique_" + "_".join(cols),
        description=f"no two rows share ({', '.join(cols)})",
        violation=pl.struct(list(cols)).is_duplicated(),
    )


INSIDE_SESSION = Rule(
    name="inside_session",
    description="ts lies in the regular session of its trading day: session_open <= ts < session_close",
    violation=~(
        (pl.col("ts") >= pl.col("session_open")) & (pl.col("ts") < pl.col("session_close"))
    ).fill_null(False),
)

OHLC_CONSISTENT = Rule(
    name="ohlc_consistent",
    description="low <= open, close <= high (and so low <= high)",
    violation=~(
        (pl.col("low") <= pl.min_horizontal("open", "close"))
        & (pl.max_horizontal("open", "close") <= pl.col("high"))
    ).fill_null(False)
    | _missing("open", "high", "low", "close"),
)


def non_negative(*cols: str) -> Rule:
    return Rule(
        name="non_negative_" + "_".join(cols),
        description=f"{', '.join(cols)} must be >= 0",
        violation=pl.any_horizontal([~(pl.col(c) >= 0).fill_null(False) for c in cols]),
    )


BID_NOT_ABOVE_ASK = Rule(
    name="bid_not_above_ask",
    description="bid <= ask (a crossed quote is invalid)",
    violation=~(pl.col("bid") <= pl.col("ask")).fill_null(False) | _missing("bid", "ask"),
)

EXPIRY_NOT_BEFORE_SESSION = Rule(
    name="expiry_not_before_session",
    description="an option's expiry is on or after the trading day of the alert",
    violation=~(pl.col("expiry") >= pl.col("session")).fill_null(False),
)


def evaluate(
    frame: pl.DataFrame, rules: Sequence[Rule], bounds: pl.DataFrame | None = None
) -> list[RuleOutcome]:
    """Evaluate ``rules`` over ``frame`` in one pass.

    ``bounds`` (``session``, ``session_open``, ``session_close``) is joined on ``session`` first
    so that session rules can see the session's open and close.
    """
    checked = (
        frame
        if bounds is None
        else frame.join(bounds.unique("session"), on="session", how="left", maintain_order="left")
    )
    flags = checked.select([r.violation.alias(r.name) for r in rules])
    counts = flags.sum().row(0, named=True) if len(frame) else {r.name: 0 for r in rules}
    outcomes = []
    for rule in rules:
        failed = int(counts[rule.name] or 0)
        sample = frame.filter(flags[rule.name]).head(5) if failed else frame.clear()
        outcomes.append(RuleOutcome(rule, failed, len(frame), sample))
    return outcomes
