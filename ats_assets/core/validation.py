"""The validation rules catalogue and the validator that splits clean rows from quarantined ones.

A rule names what it checks and gives an expression that is true for a *violating* row. Each
rule looks at one kind of fault, so a bad print is counted under the rule that explains it:
a null or NaN is ``nan_value`` only (the other rules skip values they cannot compare), a bar
with high < low is ``high_below_low`` only, and so on.

Rules see the frame in two orders. ``duplicate_key`` and ``out_of_order`` are decided in the order
the rows arrived (the first copy of a key is kept; a row older than one already received from the
same ticker is late). Everything else is decided per ticker in time order.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

STALE_RUN_BARS = 15  # this many identical bars in a row is a stuck feed, not a quiet market
JUMP_SIGMAS = (
    20.0  # a spike must exceed this many robust sigmas of the ticker's 1-minute returns...
)
JUMP_MIN_RETURN = 0.02  # ...and at least 2% (log), into the print and back out of it

_ROW = "_row"  # arrival order


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


@dataclass(frozen=True)
class Validated:
    """The outcome of validating a frame: clean rows, quarantined rows and per-rule counts."""

    clean: pl.DataFrame
    quarantined: pl.DataFrame  # the violating rows with a ``rules`` column (comma-separated names)
    outcomes: list[RuleOutcome]


def _missing(*cols: str) -> pl.Expr:
    """True where any of ``cols`` (numeric) is null or NaN."""
    return pl.any_horizontal(
        [
            pl.col(c).is_null() | pl.col(c).cast(pl.Float64, strict=False).is_nan().fill_null(False)
            for c in cols
        ]
    )


def _present(*cols: str) -> pl.Expr:
    return ~_missing(*cols)


def _positive(*cols: str) -> pl.Expr:
    """Present and > 0: comparison rules leave other values to nan_value and non_positive."""
    return _present(*cols) & pl.all_horizontal([pl.col(c) > 0 for c in cols])


# -- the catalogue -------------------------------------------------------------------------------
def nan_value(*cols: str) -> Rule:
    return Rule(
        "nan_value",
        f"{', '.join(cols)} must be present numbers (not null, not NaN, parseable)",
        _missing(*cols),
    )


def non_positive(*cols: str, name: str = "non_positive_price") -> Rule:
    return Rule(
        name,
        f"{', '.join(cols)} must be > 0",
        pl.any_horizontal([_present(c) & (pl.col(c) <= 0) for c in cols]),
    )


def negative(*cols: str, name: str = "negative_volume") -> Rule:
    return Rule(
        name,
        f"{', '.join(cols)} must be >= 0",
        pl.any_horizontal([_present(c) & (pl.col(c) < 0) for c in cols]),
    )


def high_below_low() -> Rule:
    return Rule(
        "high_below_low",
        "a bar's high must not be below its low",
        _positive("high", "low") & (pl.col("high") < pl.col("low")),
    )


def open_close_outside_range() -> Rule:
    return Rule(
        "open_close_outside_range",
        "open and close lie in [low, high]",
        _positive("open", "high", "low", "close")
        & (pl.col("high") >= pl.col("low"))
        & (
            (pl.min_horizontal("open", "close") < pl.col("low"))
            | (pl.max_horizontal("open", "close") > pl.col("high"))
        ),
    )


def crossed_quote() -> Rule:
    return Rule(
        "crossed_quote",
        "bid <= ask (a locked quote is allowed, a crossed one is not)",
        _positive("bid", "ask") & (pl.col("bid") > pl.col("ask")),
    )


def duplicate_key(*cols: str) -> Rule:
    return Rule(
        "duplicate_key",
        f"({', '.join(cols)}) is unique; the first copy to arrive is kept",
        ~pl.struct(list(cols)).is_first_distinct(),
    )


def out_of_session() -> Rule:
    return Rule(
        "out_of_session",
        "ts lies in the regular session of its trading day: session_open <= ts < session_close",
        ~(
            (pl.col("ts") >= pl.col("session_open")) & (pl.col("ts") < pl.col("session_close"))
        ).fill_null(False),
    )


def out_of_order() -> Rule:
    return Rule(
        "out_of_order",
        "a ticker's rows arrive in time order: a row older than one already received is late",
        (pl.col("ts") < pl.col("ts").cum_max().shift(1).over("ticker", order_by=_ROW)).fill_null(
            False
        ),
    )


def unknown_ticker(universe: Sequence[str]) -> Rule:
    return Rule(
        "unknown_ticker",
        "the ticker belongs to the universe that was requested",
        ~pl.col("ticker").is_in(list(universe)).fill_null(False),
    )


def expired_option() -> Rule:
    return Rule(
        "expired_option",
        "an option's expiry is on or after the trading day of the alert",
        pl.col("expiry").is_not_null() & (pl.col("expiry") < pl.col("session")),
    )


def invalid_category(column: str, allowed: Sequence[str]) -> Rule:
    return Rule(
        f"invalid_{column}",
        f"{column} is one of {', '.join(allowed)}",
        ~pl.col(column).is_in(list(allowed)).fill_null(False),
    )


def stale_price_run(run: int = STALE_RUN_BARS) -> Rule:
    repeated = ("open", "high", "low", "close", "volume")
    # A stuck feed sends the same bar again and again: every field equal to the bar before.
    repeat = pl.all_horizontal(
        [pl.col(c) == pl.col(c).shift(1).over("ticker") for c in repeated]
    ).fill_null(False)
    run_id = (repeat != repeat.shift(1)).fill_null(True).cum_sum().over("ticker")
    repeats_in_run = pl.len().over("ticker", run_id)
    return Rule(
        "stale_price_run",
        f"no run of {run}+ identical bars (open, high, low, close and volume repeated: a stuck feed); "
        "the first bar of the run is kept, the repeats are quarantined",
        repeat & (repeats_in_run + 1 >= run),
    )


def price_jump(
    sigmas: float = JUMP_SIGMAS, min_return: float = JUMP_MIN_RETURN, column: str = "close"
) -> Rule:
    log_price = pl.when(pl.col(column) > 0).then(pl.col(column).log()).fill_nan(None)
    into = log_price - log_price.shift(1).over("ticker")
    out = log_price.shift(-1).over("ticker") - log_price
    deviation = (into - into.median().over("ticker")).abs()
    sigma = 1.4826 * deviation.median().over("ticker")
    threshold = pl.max_horizontal(sigma * sigmas, pl.lit(min_return))
    spike = (into.abs() > threshold) & (
        out.is_null() | ((out.abs() > threshold) & (into.sign() != out.sign()))
    )
    return Rule(
        "price_jump",
        f"no isolated print more than {sigmas:g} robust sigmas (and {min_return:.0%}) away from its neighbours",
        spike.fill_null(False),
    )


# -- the validator ------------------------------------------------------------------------------
def evaluate(
    frame: pl.DataFrame, rules: Sequence[Rule], bounds: pl.DataFrame | None = None
) -> list[RuleOutcome]:
    """Evaluate ``rules`` over ``frame`` (rows in arrival order); counts and samples per rule."""
    return validate(frame, rules, bounds).outcomes


def validate(
    frame: pl.DataFrame,
    rules: Sequence[Rule],
    bounds: pl.DataFrame | None = None,
    sort_by: Sequence[str] = ("ticker", "ts"),
) -> Validated:
    """Split ``frame`` into clean and quarantined rows; ``frame`` is in the order rows arrived.

    ``bounds`` (``session``, ``session_open``, ``session_close``) is joined on ``session`` so that
    session rules can see the session's open and close. The clean rows come back sorted by
    ``sort_by`` (the columns that exist).
    """
    work = frame.with_row_index(_ROW)
    if bounds is not None:
        work = work.join(bounds.unique("session"), on="session", how="left", maintain_order="left")
    # Arrival-order rules first, then time order per ticker for the rest.
    arrival = {"duplicate_key", "out_of_order"}
    work = work.with_columns(
        [r.violation.fill_null(True).alias(r.name) for r in rules if r.name in arrival]
    )
    order = [c for c in sort_by if c in work.columns]
    work = work.sort([*order, _ROW]) if order else work
    # A rule that cannot decide (null) rejects the row: nothing leaves without a verdict.
    work = work.with_columns(
        [r.violation.fill_null(True).alias(r.name) for r in rules if r.name not in arrival]
    )
    names = [r.name for r in rules]
    work = work.with_columns(
        pl.any_horizontal(names).alias("_bad") if names else pl.lit(False).alias("_bad")
    )
    counts = (
        work.select(pl.col(names).sum()).row(0, named=True) if len(work) else {n: 0 for n in names}
    )

    keep = frame.columns
    outcomes = []
    for rule in rules:
        failed = int(counts[rule.name] or 0)
        sample = work.filter(pl.col(rule.name)).select(keep).head(5) if failed else frame.clear()
        outcomes.append(RuleOutcome(rule, failed, len(frame), sample))
    clean = work.filter(~pl.col("_bad")).select(keep)
    quarantined = work.filter(pl.col("_bad")).select(
        *keep,
        pl.concat_str(
            [pl.when(pl.col(n)).then(pl.lit(n)) for n in names], separator=",", ignore_nulls=True
        ).alias("rules"),
    )
    return Validated(clean=clean, quarantined=quarantined, outcomes=outcomes)
