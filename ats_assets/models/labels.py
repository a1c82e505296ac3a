"""Training rows and their labels: features sampled every few minutes, forward returns and dollar P&L.

A training row is the 1-minute features row of the bar that *completes* a ``sample_minutes`` bar
(its open minute is ``sample_minutes - 1`` modulo ``sample_minutes`` into the session), so every
timeframe's features are fresh at the decision. The decision is made at that bar's close
(``ts + 1 minute``); the position is entered at that close and exited at the close of the bar
``horizon_minutes`` later in the same session. Rows whose horizon runs past the session's last bar
have no label and are left out (the strategy is flat overnight).

Labels:
- ``fwd_return``: exit close / entry close - 1 (a fraction);
- ``cost_bps``: the round-trip cost of the trade in basis points: the quoted spread at entry
  (half paid on the way in, half on the way out) plus ``fee_bps``;
- ``label_pnl``: the net dollar P&L of a long ``position_dollars`` position, after costs;
- ``label_end``: when the label is known (the exit bar's close), used to purge training rows
  whose label overlaps validation data.
"""

from dataclasses import dataclass

import polars as pl

MINUTE = pl.duration(minutes=1)
IDS = ("session", "ticker", "ts")
LABELS = ("fwd_return", "excess_return", "cost_bps", "label_pnl", "label_end")
SPREAD_COLUMN = "quoted_spread_bps_1m"


@dataclass(frozen=True)
class LabelSpec:
    """How rows are sampled and labelled: minutes, dollars and basis points."""

    sample_minutes: int = 5
    horizon_minutes: int = 30
    position_dollars: float = 2500.0
    fee_bps: float = 0.5  # commissions and regulatory fees, round trip, basis points
    default_spread_bps: float = 3.0  # used where the quoted spread is unknown

    def __post_init__(self) -> None:
        if self.sample_minutes < 1 or self.horizon_minutes < 1:
            raise ValueError("sample_minutes and horizon_minutes must be at least 1")
        if self.position_dollars <= 0:
            raise ValueError(f"position_dollars must be positive, got {self.position_dollars}")
        if self.fee_bps < 0 or self.default_spread_bps < 0:
            raise ValueError("fee_bps and default_spread_bps cannot be negative")


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model inputs of a features or training-set frame (everything but ids and labels)."""
    return [c for c in frame.columns if c not in IDS and c not in LABELS]


def sample_rows(features: pl.DataFrame, spec: LabelSpec) -> pl.DataFrame:
    """The rows of ``features`` that complete a ``spec.sample_minutes`` bar of their session."""
    first = pl.col("ts").min().over("session")
    minute_of_session = ((pl.col("ts") - first).dt.total_minutes()).cast(pl.Int64)
    return features.filter(minute_of_session % spec.sample_minutes == spec.sample_minutes - 1)


def label_rows(rows: pl.DataFrame, bars: pl.DataFrame, spec: LabelSpec) -> pl.DataFrame:
    """``rows`` (features rows) with the label columns; rows without a full horizon are dropped.

    ``bars`` are 1-minute bars with ``ticker``, ``ts`` and ``close`` covering the rows' sessions.
    """
    closes = bars.select("ticker", "ts", "close")
    exits = closes.rename({"ts": "exit_ts", "close": "exit_close"})
    spread = (
        pl.col(SPREAD_COLUMN).fill_nan(None).fill_null(spec.default_spread_bps)
        if SPREAD_COLUMN in rows.columns
        else pl.lit(spec.default_spread_bps)
    )
    labelled = (
        rows.join(closes.rename({"close": "entry_close"}), on=["ticker", "ts"], how="inner")
        .with_columns(exit_ts=pl.col("ts") + pl.duration(minutes=spec.horizon_minutes))
        .join(exits, on=["ticker", "exit_ts"], how="inner")
        .with_columns(
            fwd_return=pl.col("exit_close") / pl.col("entry_close") - 1.0,
            cost_bps=spread.cast(pl.Float64).clip(lower_bound=0.0) + spec.fee_bps,
            label_end=pl.col("exit_ts") + MINUTE,
        )
        .with_columns(
            label_pnl=spec.position_dollars * (pl.col("fwd_return") - pl.col("cost_bps") * 1e-4)
        )
    )
    return labelled.drop("entry_close", "exit_close", "exit_ts").sort("ticker", "ts")


def training_rows(features: pl.DataFrame, bars: pl.DataFrame, spec: LabelSpec) -> pl.DataFrame:
    """Sampled, labelled training rows sorted by ticker and ts (see the module docstring)."""
    return label_rows(sample_rows(features, spec), bars, spec)
