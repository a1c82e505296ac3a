"""Price features: log returns, the overnight gap and where the close sits within the session.

All values are scale-free (log returns or fractions of a price), so they compare across tickers.
Session-anchored features (``session_*``, ``overnight_gap``) restart at each session and use only
the session's bars up to the current one; on 1d bars each session is a single bar, so they
describe that day's bar. The gap, VWAP distance and range position are one compiled pass per
ticker each (``indicators``' session helpers: a new session is a change of ``session`` between two
rows of the ticker); the open distance is a window over the run of rows of one (ticker, session),
``.over(pl.struct("ticker", "session").rle_id())``: one integer key instead of two columns.

Builders are self-contained (no module-level helpers) so that a feature's version, a hash of its
builder's source and parameters, changes whenever what it computes changes; the session features
run on kernels of the indicators module, so they also carry ``impl`` (its digest) among their
parameters.
"""

import polars as pl

from ats_assets.features import indicators as ind
from ats_assets.features.definition import Feature

FAMILY = "price"


def _log_return(bars: int) -> pl.Expr:
    # The frame is sorted by ticker: the row ``bars`` back is the same ticker's exactly when its
    # ticker is the same (the same values as ``.over("ticker")``, at a third of the time).
    same_ticker = pl.col("ticker") == pl.col("ticker").shift(bars)
    return pl.when(same_ticker).then((pl.col("close") / pl.col("close").shift(bars)).log())


def _overnight_gap(impl: str) -> pl.Expr:
    del impl  # versioning only
    # The session's first open / the previous session's last close (the row before the session's
    # first, same ticker), carried through the session: one compiled pass per ticker.
    return ind.overnight_gap("open", "close")


def _session_vwap_distance(impl: str) -> pl.Expr:
    del impl
    # Bars without a vwap (or without volume) carry no weight.
    return ind.session_vwap_distance("close", "vwap", "volume")


def _session_range_position(impl: str) -> pl.Expr:
    del impl
    return ind.session_range_position("high", "low", "close")


def _session_open_distance() -> pl.Expr:
    session = pl.struct("ticker", "session").rle_id()
    return pl.col("close") / pl.col("open").first().over(session) - 1.0


FEATURES: tuple[Feature, ...] = (
    Feature(
        name="log_return_1",
        family=FAMILY,
        build=_log_return,
        params={"bars": 1},
        description="Log return of the close over the last bar: ln(close / close 1 bar ago).",
        warmup_bars=1,
    ),
    Feature(
        name="log_return_5",
        family=FAMILY,
        build=_log_return,
        params={"bars": 5},
        description="Log return of the close over the last 5 bars: ln(close / close 5 bars ago).",
        warmup_bars=5,
    ),
    Feature(
        name="log_return_15",
        family=FAMILY,
        build=_log_return,
        params={"bars": 15},
        description=(
            "Log return of the close over the last 15 bars: ln(close / close 15 bars ago). "
            "Not on 1h: 15 hourly bars exceed the two prior sessions the pipeline loads."
        ),
        timeframes=("1m", "5m", "15m", "1d"),
        warmup_bars=15,
    ),
    Feature(
        name="overnight_gap",
        family=FAMILY,
        build=_overnight_gap,
        params={"impl": ind.VERSION},
        description=(
            "Overnight gap as a fraction: the session's first open / the previous session's last "
            "close - 1, constant through the session (on 1d bars: open / previous close - 1). "
            "Null during the ticker's first session in the frame. Warm-up is one full session of "
            "1-minute bars (390); coarser timeframes need only one session's bars."
        ),
        warmup_bars=390,
    ),
    Feature(
        name="session_vwap_distance",
        family=FAMILY,
        build=_session_vwap_distance,
        params={"impl": ind.VERSION},
        description=(
            "Close relative to the session VWAP so far, as a fraction: close / (sum(vwap * volume) "
            "/ sum(volume) over the session's bars up to this one) - 1; 0 while the session has "
            "traded no volume."
        ),
    ),
    Feature(
        name="session_range_position",
        family=FAMILY,
        build=_session_range_position,
        params={"impl": ind.VERSION},
        description=(
            "Position of the close in the session's range so far, 0 (at the session low) to 1 "
            "(at the session high); 0.5 while the range is zero. On 1d bars the close location "
            "within the day's bar."
        ),
    ),
    Feature(
        name="session_open_distance",
        family=FAMILY,
        build=_session_open_distance,
        description=(
            "Close relative to the session's first open, as a fraction: close / session open - 1 "
            "(on 1d bars the open-to-close return)."
        ),
    ),
)
