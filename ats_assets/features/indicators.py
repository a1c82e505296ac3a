"""Technical indicators as polars expressions that reproduce TA-Lib (0.8, default settings).

Every builder takes column names (or expressions) and periods and returns a ``pl.Expr`` (a tuple
of them for multi-output indicators; the ``*_struct`` variants return all outputs as the fields of
one struct, computed once) to evaluate on a *bar frame* (see
:mod:`ats_assets.features.definition`): rows sorted by ``ticker`` then ``ts``, any number of
tickers, one included. A ticker's values depend only on its own rows, a value only on its own and
earlier rows. During an indicator's warm-up (the first :func:`lookback` rows of each ticker) the
value is null where TA-Lib returns NaN; from there on it equals TA-Lib's, run on that ticker's rows
alone, to about 1e-10 relative or better (the tests require 1e-6). Inputs must not contain nulls or
NaN or infinities (TA-Lib knows no missing values either): an indicator refuses them with an error
naming it.

How it is computed, and why
---------------------------
- *Segmented kernels.* Each TA-Lib indicator is one compiled pass over the sorted columns that
  restarts at every ticker (:mod:`ats_assets.features.kernels`, TA-Lib's own algorithms: running
  totals, Wilder's recursions, tracked window extremes), wrapped as a polars expression
  (``pl.map_batches`` over whole columns, no per-row Python). Recursive filters cannot be written
  with polars' whole-column operations without their state flowing from one ticker into the next,
  and composing the others from them took several passes per indicator: 4-16x TA-Lib's time where
  one pass is within 2x (``make bench-features``).
- *Windows of the families* (:func:`window_mean`, :func:`window_std`, the session helpers) are
  kernels too: one pass per ticker that starts each ticker's windows at its own first row (or a
  later one), so no window reaches into the previous ticker and no mask is needed. Running sums
  are taken about a reference value and summed afresh every ``kernels.REFRESH`` windows: a
  ticker's values carry no rounding residue from the tickers before it (they do not depend, in
  their last bits, on which other tickers share the frame), and a window without a change in
  value has exactly that value as mean and 0 as deviation. :func:`from_row` masks a whole-column
  expression on each ticker's first rows where a feature still needs it (TRANGE).

TA-Lib conventions followed (where a value differs from a textbook formula, TA-Lib's is used)
------------------------------------------------------------------------------------------------
- Unstable period 0 for every function (TA-Lib's default): the first value is written at the
  lookback, and recursive filters are seeded exactly as TA-Lib seeds them.
- EMA(n): seeded with the mean of the first n values (at row n - 1), then y += k (x - y) with
  k = 2 / (n + 1).
- Wilder's smoothing, y = (y (n - 1) + x) / n: RSI and ATR seed with the mean of the first n changes
  / true ranges (rows 1..n; first value at row n). ADX keeps +DM, -DM and TR as Wilder *sums*
  (s = s - s / n + x) seeded with the sum of rows 1..n-1, and seeds ADX with the mean of the first
  n DX (rows n..2n-1; first value at row 2n - 1).
- RSI = 100 gain / (gain + loss); 0 when gain + loss == 0.
- MACD(12, 26, 9): both EMAs are written from row slow - 1, so the fast EMA is seeded with the mean
  of rows slow-fast..slow-1 (not its own first 12 rows); the signal EMA is seeded with the mean of
  the first 9 MACD values; all three outputs start at row slow + signal - 2 = 33.
- TRANGE from row 1, max(h - l, |h - c[-1]|, |l - c[-1]|); NATR = 100 ATR / close.
- BBANDS(20, 2, 2, SMA): the SMA +- 2 *population* standard deviations (exactly 0 on a flat window).
- STOCH(14, 3 SMA, 3 SMA): fast %K = 100 (c - LL) / (HH - LL) over 14 bars, slow %K its 3-bar SMA,
  slow %D the 3-bar SMA of slow %K; both from row 17. A range is flat when |HH - LL| <= 1e-14
  (|HH| + |LL|) (TA-Lib's scale-aware zero test), and then fast %K = 0; likewise WILLR = -100
  (HH - c) / (HH - LL) is 0 on a flat range.
- CCI(14): typical price tp = (h + l + c) / 3; (tp - mean) / (0.015 mean |tp - mean|) over the
  window, the deviations taken about that window's own mean; 0 when |tp - mean| or the mean
  deviation is <= 1e-14 |mean|.
- MFI(14): a bar's money flow tp x volume is positive / negative when tp rose / fell, neither when
  |tp - tp[-1]| <= 1e-14 (|tp| + |tp[-1]|); sums over the last 14 bars (rows 1..14 for the first
  value, at row 14); 0 when both sums are 0.
- AROON(14): windows of n + 1 bars, bars since the highest high / lowest low, the *most recent*
  one when tied; 100 / n x (n - bars). Output order (down, up), TA-Lib's.
- ROC(10) = 100 (x / x[-10] - 1), 0 when x[-10] == 0. OBV starts each ticker at its first bar's
  volume (not 0), then adds the volume on an up close and subtracts it on a down close.
- ADX: -DM = low[-1] - low when > 0 and > +DM; +DM = high - high[-1] when > 0 and > -DM. A DX with
  a TR sum or a DI sum below 1e-14 is skipped: ADX holds its value.
- LINEARREG_SLOPE: least-squares slope per bar over the last n values.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

TICKER = "ticker"
EPSILON = 1e-14  # TA-Lib's TA_EPSILON, the band of its zero tests
# A digest of this file and the kernels. Features built on these indicators carry it among their
# parameters, so that their versions change when an indicator's implementation does.
VERSION = hashlib.sha256(
    b"".join(Path(__file__).with_name(f).read_bytes() for f in ("indicators.py", "kernels.py"))
).hexdigest()[:12]

IntoExpr = str | pl.Expr
F = pl.field


def _col(x: IntoExpr) -> pl.Expr:
    return pl.col(x) if isinstance(x, str) else x


# -- positions inside each ticker ------------------------------------------------------------


def _segment() -> pl.Expr:
    """The ticker's run id, 0, 1, 2, ... down the frame (an integer: cheap to compare)."""
    return pl.col(TICKER).rle_id()


def _bound(**fields: IntoExpr) -> pl.Expr:
    """A struct of ``seg`` (:func:`_segment`) and ``fields``, each evaluated once; later steps
    refer to them as ``pl.field(name)`` inside ``struct.with_fields``."""
    return pl.struct(seg=_segment(), **{k: _col(v) for k, v in fields.items()})


def _ready(row: int) -> pl.Expr:
    """Inside a :func:`_bound` struct: true from each ticker's row ``row`` on."""
    if row <= 0:
        return pl.lit(True)
    return F("seg") == F("seg").shift(row)


def _result(bound: pl.Expr, *together: dict[str, pl.Expr], **steps: pl.Expr) -> pl.Expr:
    """Add fields to the struct ``bound``: each dict of ``together`` at once (its fields are
    independent, and polars evaluates them in parallel), then ``steps`` one after the other (each
    may use the previous); return the last field added."""
    for group in together:
        bound = bound.struct.with_fields(**group)
        name = list(group)[-1]
    for name, step in steps.items():
        bound = bound.struct.with_fields(step.alias(name))
    return bound.struct.field(name)


def row_in_ticker() -> pl.Expr:
    """0 on each ticker's first row, then 1, 2, ... (the frame is sorted by ticker)."""
    idx = pl.int_range(pl.len(), dtype=pl.Int64)
    first = (pl.col(TICKER) != pl.col(TICKER).shift(1)).fill_null(True)
    return idx - pl.when(first).then(idx).otherwise(0).cum_max()


def from_row(row: int, value: pl.Expr) -> pl.Expr:
    """``value`` from each ticker's row ``row`` on (its warm-up over), null before.

    ``value`` may be computed on the whole sorted column: from row ``row`` on, a window of up to
    ``row + 1`` rows lies inside the ticker.
    """
    return _result(_bound(value=value), out=pl.when(_ready(row)).then(F("value")))


# -- windows -----------------------------------------------------------------------------------


def window_mean(x: IntoExpr, period: int, *, lag: int = 0, skip: int = 0) -> pl.Expr:
    """Mean of the ticker's last ``period`` values of ``x``: those of the window of ``period`` rows
    that ends ``lag`` rows before the row (``lag=1``: the previous bars, not this one) and starts
    at or after the ticker's row ``skip`` (``skip=1`` where ``x`` on a ticker's first row reaches
    into the previous ticker, a return say); null before that (the warm-up) and while a value in
    the window is null, NaN or infinite.

    One compiled pass per ticker (``kernels.window_mean``): a ticker's values do not depend on
    the other tickers in the frame, bit for bit, and a window without a change in value has
    exactly that value as mean (and a deviation of exactly 0, :func:`window_mean_std`).
    """
    _check_window(period, lag, skip, 0)
    return _kernel("window_mean", [x], period, offsets=(lag, skip), allow_missing=True)


def window_mean_std(
    x: IntoExpr, period: int, *, ddof: int = 0, lag: int = 0, skip: int = 0
) -> pl.Expr:
    """A struct of ``mean`` and ``sd`` of the window :func:`window_mean` averages, computed in
    one pass: ``sd`` is the standard deviation with ``ddof`` delta degrees of freedom (``ddof=1``:
    the sample's)."""
    _check_window(period, lag, skip, ddof)
    return _kernel(
        "window_mean_std",
        [x],
        period,
        offsets=(lag, skip, ddof),
        outputs=("mean", "sd"),
        allow_missing=True,
    )


def window_std(x: IntoExpr, period: int, *, ddof: int = 0, lag: int = 0, skip: int = 0) -> pl.Expr:
    """The ``sd`` of :func:`window_mean_std`."""
    return window_mean_std(x, period, ddof=ddof, lag=lag, skip=skip).struct.field("sd")


def _check_window(period: int, lag: int, skip: int, ddof: int) -> None:
    """Offsets a window takes; ``period`` itself is checked by :func:`_kernel`."""
    if lag < 0 or skip < 0 or ddof < 0 or (period > 0 and ddof >= period):
        raise ValueError(
            f"window: need lag, skip >= 0 and 0 <= ddof < period, got {lag, skip, ddof}"
        )


def session_range_position(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close"
) -> pl.Expr:
    """(close - the session's lowest low so far) / (its highest high - that low), per ticker and
    ``session``; 0.5 while the range is flat (null highs and lows skipped)."""
    return _kernel(
        "session_range_position",
        [pl.col("session").to_physical(), high, low, close],
        allow_missing=True,
    )


def session_vwap_distance(
    close: IntoExpr = "close", vwap: IntoExpr = "vwap", volume: IntoExpr = "volume"
) -> pl.Expr:
    """close / the ticker's volume-weighted average price of the ``session`` so far - 1, each bar
    weighing its volume where its vwap is above 0 (null ones: nothing); 0 without weight."""
    return _kernel(
        "session_vwap_distance",
        [pl.col("session").to_physical(), close, vwap, volume],
        allow_missing=True,
    )


def overnight_gap(open_: IntoExpr = "open", close: IntoExpr = "close") -> pl.Expr:
    """The ``session``'s first open / the ticker's last close before the session - 1, on every bar
    of the session; null in the ticker's first session."""
    return _kernel(
        "overnight_gap", [pl.col("session").to_physical(), open_, close], allow_missing=True
    )


# -- segmented kernels --------------------------------------------------------------------------


def _kernel(
    name: str,
    inputs: Sequence[IntoExpr],
    *params: float,
    outputs: Sequence[str] = (),
    offsets: Sequence[int] = (),
    allow_missing: bool = False,
) -> pl.Expr:
    """The kernel ``kernels.<name>`` over ``inputs`` (as float64) and ``params``, restarted at each
    ticker: a float64 column, or a struct of ``outputs`` for a multi-output kernel; the kernel's
    NaN (warm-up) becomes null. Numeric ``params`` must be positive and ``offsets`` (integer
    params after them) at least 0 (ValueError when the expression is built); an input with a
    null or NaN is an error unless ``allow_missing`` (the kernel then handles NaN itself)."""

    bad = [p for p in params if not isinstance(p, bool) and not p > 0]
    if bad:
        raise ValueError(f"{name}: periods and windows must be positive, got {list(params)}")
    if any(not isinstance(o, int) or o < 0 for o in offsets):
        raise ValueError(f"{name}: offsets must be integers >= 0, got {list(offsets)}")
    params = (*params, *offsets)

    def run(series: list[pl.Series]) -> pl.Series:
        from ats_assets.features import kernels  # numba: loaded on first use, not at import

        *columns, ticker = series
        arrays = [s.to_numpy() for s in (_segments(ticker), *columns)]
        if not allow_missing and not all(kernels.finite(a) for a in arrays[1:]):
            raise ValueError(
                f"{name}: an input holds nulls, NaN or infinite values; indicators need "
                "complete bars"
            )
        for array in arrays:  # one compiled signature per kernel, whether polars copied or not
            array.flags.writeable = False
        result = getattr(kernels, name)(*arrays, *params)
        if not outputs:
            return pl.Series(result, nan_to_null=True)
        fields = {o: pl.Series(r, nan_to_null=True) for o, r in zip(outputs, result, strict=True)}
        return pl.DataFrame(fields).to_struct()

    dtype = pl.Struct(dict.fromkeys(outputs, pl.Float64)) if outputs else pl.Float64
    exprs = [_col(x).cast(pl.Float64) for x in inputs]
    return pl.map_batches([*exprs, pl.col(TICKER)], run, return_dtype=dtype)


def _segments(ticker: pl.Series) -> pl.Series:
    """Per row, an integer that changes exactly where the ticker does (UInt32): a categorical
    ticker's codes as they are (the feature pipeline's frames: no pass over the rows), else the
    run id of the ticker (:func:`_segment`)."""
    if isinstance(ticker.dtype, pl.Categorical | pl.Enum) and not ticker.null_count():
        return ticker.to_physical().cast(pl.UInt32)
    return ticker.rle_id()


# -- overlap studies -------------------------------------------------------------------------


def sma(x: IntoExpr = "close", period: int = 30) -> pl.Expr:
    """Simple moving average (TA-Lib SMA); lookback period - 1."""
    return _kernel("sma", [x], period)


def ema(x: IntoExpr = "close", period: int = 30) -> pl.Expr:
    """Exponential moving average (TA-Lib EMA, seeded with the SMA); lookback period - 1."""
    return _kernel("ema", [x], period)


def _bollinger(x: IntoExpr, period: int, nbdev_up: float, nbdev_dn: float) -> pl.Expr:
    """Struct: x, mid, sd (both null in warm-up), up, dn."""
    s = pl.struct(x=_col(x), b=_kernel("bollinger", [x], period, outputs=("mid", "sd")))
    s = s.struct.with_fields(mid=F("b").struct.field("mid"), sd=F("b").struct.field("sd"))
    return s.struct.with_fields(up=F("mid") + nbdev_up * F("sd"), dn=F("mid") - nbdev_dn * F("sd"))


def bbands_struct(
    x: IntoExpr = "close", period: int = 20, nbdev_up: float = 2.0, nbdev_dn: float = 2.0
) -> pl.Expr:
    """Bollinger bands as one struct expression, fields ``upper``, ``middle``, ``lower``."""
    s = _bollinger(x, period, nbdev_up, nbdev_dn)
    return _result(s, out=pl.struct(upper=F("up"), middle=F("mid"), lower=F("dn")))


def bbands(
    x: IntoExpr = "close", period: int = 20, nbdev_up: float = 2.0, nbdev_dn: float = 2.0
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Bollinger bands (upper, middle, lower): SMA +- k population standard deviations."""
    return tuple(  # type: ignore[return-value]
        _bollinger(x, period, nbdev_up, nbdev_dn).struct.field(name) for name in ("up", "mid", "dn")
    )


def bbands_width(x: IntoExpr = "close", period: int = 20, nbdev: float = 2.0) -> pl.Expr:
    """Bollinger band width as a fraction of the middle band: (upper - lower) / middle."""
    s = _bollinger(x, period, nbdev, nbdev)
    width = pl.when(F("mid") != 0).then((F("up") - F("dn")) / F("mid")).otherwise(F("mid") * 0.0)
    return s.struct.with_fields(width=width).struct.field("width")


def bbands_percent_b(x: IntoExpr = "close", period: int = 20, nbdev: float = 2.0) -> pl.Expr:
    """Where ``x`` sits in the Bollinger bands, (x - lower) / (upper - lower): 0 at the lower band,
    1 at the upper; 0.5 when the bands collapse (a flat window)."""
    s = _bollinger(x, period, nbdev, nbdev)
    collapsed = F("sd") <= EPSILON * F("mid").abs()
    pct = pl.when(collapsed).then(0.5).otherwise((F("x") - F("dn")) / (F("up") - F("dn")))
    return s.struct.with_fields(pct=pl.when(F("mid").is_not_null()).then(pct)).struct.field("pct")


# -- momentum ----------------------------------------------------------------------------------


def rsi(x: IntoExpr = "close", period: int = 14) -> pl.Expr:
    """Relative strength index, 0-100 (TA-Lib RSI); lookback period."""
    return _kernel("rsi", [x], period)


def macd_struct(x: IntoExpr = "close", fast: int = 12, slow: int = 26, signal: int = 9) -> pl.Expr:
    """MACD as one struct expression, fields ``line``, ``signal``, ``hist`` (see :func:`macd`)."""
    if slow < fast:
        fast, slow = slow, fast
    return _kernel("macd", [x], fast, slow, signal, outputs=("line", "signal", "hist"))


def macd(
    x: IntoExpr = "close", fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """MACD line, signal and histogram (TA-Lib MACD); lookback slow + signal - 2."""
    return tuple(  # type: ignore[return-value]
        macd_struct(x, fast, slow, signal).struct.field(name) for name in ("line", "signal", "hist")
    )


def roc(x: IntoExpr = "close", period: int = 10) -> pl.Expr:
    """Rate of change in percent, 100 (x / x[-period] - 1) (TA-Lib ROC); lookback period."""
    return _kernel("roc", [x], period)


def stoch_struct(
    high: IntoExpr = "high",
    low: IntoExpr = "low",
    close: IntoExpr = "close",
    fastk_period: int = 14,
    slowk_period: int = 3,
    slowd_period: int = 3,
) -> pl.Expr:
    """Slow stochastic as one struct expression, fields ``k`` and ``d`` (see :func:`stoch`)."""
    periods = (fastk_period, slowk_period, slowd_period)
    return _kernel("stoch", [high, low, close], *periods, outputs=("k", "d"))


def stoch(
    high: IntoExpr = "high",
    low: IntoExpr = "low",
    close: IntoExpr = "close",
    fastk_period: int = 14,
    slowk_period: int = 3,
    slowd_period: int = 3,
) -> tuple[pl.Expr, pl.Expr]:
    """Slow stochastic %K and %D, 0-100 (TA-Lib STOCH with SMA smoothing)."""
    periods = (fastk_period, slowk_period, slowd_period)
    k = stoch_struct(high, low, close, *periods).struct.field("k")
    d = stoch_struct(high, low, close, *periods).struct.field("d")
    return k, d


def willr(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Williams' %R, -100-0 (TA-Lib WILLR); lookback period - 1."""
    return _kernel("willr", [high, low, close], period)


def cci(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Commodity channel index (TA-Lib CCI); lookback period - 1."""
    return _kernel("cci", [high, low, close], period)


def mfi(
    high: IntoExpr = "high",
    low: IntoExpr = "low",
    close: IntoExpr = "close",
    volume: IntoExpr = "volume",
    period: int = 14,
) -> pl.Expr:
    """Money flow index, 0-100 (TA-Lib MFI); lookback period."""
    return _kernel("mfi", [high, low, close, volume], period)


def aroon_struct(high: IntoExpr = "high", low: IntoExpr = "low", period: int = 14) -> pl.Expr:
    """Aroon as one struct expression, fields ``down`` and ``up`` (see :func:`aroon`)."""
    return _kernel("aroon", [high, low], period, outputs=("down", "up"))


def aroon(
    high: IntoExpr = "high", low: IntoExpr = "low", period: int = 14
) -> tuple[pl.Expr, pl.Expr]:
    """Aroon down and up, 0-100 (TA-Lib AROON, same output order); lookback period."""
    s = aroon_struct(high, low, period)
    return s.struct.field("down"), s.struct.field("up")


def aroon_osc(high: IntoExpr = "high", low: IntoExpr = "low", period: int = 14) -> pl.Expr:
    """Aroon oscillator, up - down, -100-100 (TA-Lib AROONOSC); lookback period."""
    return _kernel("aroon_osc", [high, low], period)


def linreg_slope(x: IntoExpr = "close", period: int = 14) -> pl.Expr:
    """Least-squares slope per bar through the last ``period`` values (TA-Lib LINEARREG_SLOPE);
    lookback period - 1."""
    return _kernel("linreg_slope", [x], period)


# -- volatility and volume -----------------------------------------------------------------


def _true_range(high: IntoExpr, low: IntoExpr, close: IntoExpr) -> pl.Expr:
    """True range on the flat column (row 0 of each ticker uses the previous ticker's close)."""
    h, lo, prev = _col(high), _col(low), _col(close).shift(1)
    return pl.max_horizontal(h - lo, (h - prev).abs(), (lo - prev).abs())


def trange(high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close") -> pl.Expr:
    """True range (TA-Lib TRANGE); lookback 1."""
    return from_row(1, _true_range(high, low, close))


def atr(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Average true range, Wilder's smoothing (TA-Lib ATR); lookback period."""
    return _kernel("atr", [high, low, close], period)


def natr(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Normalised ATR in percent of the close, 100 ATR / close (TA-Lib NATR); lookback period."""
    return _kernel("atr", [high, low, close], period, True)


def obv(close: IntoExpr = "close", volume: IntoExpr = "volume") -> pl.Expr:
    """On-balance volume (TA-Lib OBV: each ticker starts at its first bar's volume)."""
    return _kernel("obv", [close, volume])


def adx(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Average directional movement index, 0-100 (TA-Lib ADX); lookback 2 period - 1."""
    return _kernel("adx", [high, low, close], period)


# -- time windows ------------------------------------------------------------------------------


def relative_to_time_of_day(
    x: IntoExpr = "volume", sessions: int = 5, min_sessions: int = 2
) -> pl.Expr:
    """``x`` / its mean at the same ``minute_of_session`` over the ticker's previous ``sessions``
    rows with that minute (earlier sessions; null values among them skipped); null with fewer than
    ``min_sessions`` values or a mean of 0 or less, and where the minute is null or negative."""
    return _kernel(
        "relative_to_time_of_day",
        ["minute_of_session", x],
        sessions,
        min_sessions,
        allow_missing=True,
    )


def time_window_sum(x: IntoExpr, window: timedelta) -> pl.Expr:
    """Sum of ``x`` over each ticker's rows whose ``ts`` lies in (ts - window, ts] (nulls count
    as 0): ``rolling_sum_by("ts", window, closed="right").over("ticker")`` in one pass (equal up to
    rounding: the running total is recomputed from its window every ``kernels.REFRESH`` rows),
    exactly 0 when the window holds no nonzero value, NaN while it holds a NaN."""
    micros = window / timedelta(microseconds=1)
    ts = pl.col("ts").dt.epoch("us")  # below 2**53: exact as float64
    return _kernel("time_window_sum", [ts, _col(x).fill_null(0.0)], micros, allow_missing=True)


# -- compiling ahead ---------------------------------------------------------------------------


def warm_up() -> float:
    """Load every kernel, the minute frame's too, into this process (compiling it first if
    numba's cache has none: about 15 s once per install, then about 1.5 s per process), so that
    the first features computed are not delayed; returns the seconds taken. Run at image build
    and before a live session."""
    began = time.perf_counter()
    rows = 40
    frame = pl.DataFrame(
        {
            "ticker": ["A"] * rows + ["B"] * rows,
            "ts": [
                datetime(2024, 1, 2, 14, 30, tzinfo=UTC) + timedelta(minutes=i) for i in range(rows)
            ]
            * 2,
            "minute_of_session": list(range(rows)) * 2,
            "high": [10.0 + (i % 7) * 0.1 for i in range(2 * rows)],
            "low": [9.5 + (i % 5) * 0.1 for i in range(2 * rows)],
            "close": [9.8 + (i % 6) * 0.1 for i in range(2 * rows)],
            "volume": [100 + i for i in range(2 * rows)],
            "session": [date(2024, 1, 2)] * 2 * rows,
        },
        schema_overrides={"minute_of_session": pl.Int32},
    )
    frame.select(
        sma().alias("sma"),
        ema().alias("ema"),
        rsi().alias("rsi"),
        macd_struct().alias("macd"),
        bbands_struct().alias("bbands"),
        roc().alias("roc"),
        stoch_struct().alias("stoch"),
        willr().alias("willr"),
        cci().alias("cci"),
        mfi().alias("mfi"),
        aroon_struct().alias("aroon"),
        aroon_osc().alias("aroon_osc"),
        linreg_slope().alias("slope"),
        atr().alias("atr"),
        natr().alias("natr"),
        obv().alias("obv"),
        adx().alias("adx"),
        relative_to_time_of_day().alias("relative"),
        time_window_sum("volume", timedelta(minutes=60)).alias("window"),
        window_mean("volume", 20).alias("mean"),
        window_mean_std("volume", 20, ddof=1, lag=1).alias("mean_std"),
        overnight_gap("close", "close").alias("gap"),
        session_range_position().alias("position"),
        session_vwap_distance("close", "close", "volume").alias("vwap"),
    )
    _warm_minute_frame(frame)
    return time.perf_counter() - began


def _warm_minute_frame(frame: pl.DataFrame) -> None:
    """Build a minute frame from ``frame``'s bars and a few events (its compiled passes), and
    join 5-minute bars back to it as the feature pipeline does (its compiled as-of pass)."""
    from ats_assets.features.frames import minute_frame, resample
    from ats_assets.features.pipeline import _last_completed

    bars = frame.select(
        "ticker",
        "ts",
        open="close",
        high="high",
        low="low",
        close="close",
        volume="volume",
        vwap="close",
        trade_count="volume",
        session=pl.col("ts").dt.date(),
    )
    events = bars.select("ticker", "ts").head(3)
    minute = minute_frame(
        bars,
        events.with_columns(bid=9.9, ask=10.1, bid_size=100, ask_size=100),
        events.with_columns(price=10.0, size=100.0),
        events.with_columns(
            premium=1e4,
            option_type=pl.lit("call"),
            sentiment=pl.lit("bullish"),
            execution=pl.lit("sweep"),
        ),
    )
    _last_completed(minute.select("ticker", "ts"), resample(minute, "5m"))


# -- lookbacks ---------------------------------------------------------------------------------

_LOOKBACK: dict[str, Callable[..., int]] = {
    "sma": lambda period=30: period - 1,
    "ema": lambda period=30: period - 1,
    "bbands": lambda period=20, **_: period - 1,
    "rsi": lambda period=14: period,
    "macd": lambda fast=12, slow=26, signal=9: max(fast, slow) + signal - 2,
    "roc": lambda period=10: period,
    "stoch": lambda fastk_period=14, slowk_period=3, slowd_period=3: (
        fastk_period + slowk_period + slowd_period - 3
    ),
    "willr": lambda period=14: period - 1,
    "cci": lambda period=14: period - 1,
    "mfi": lambda period=14: period,
    "aroon": lambda period=14: period,
    "aroon_osc": lambda period=14: period,
    "linreg_slope": lambda period=14: period - 1,
    "trange": lambda: 1,
    "atr": lambda period=14: period,
    "natr": lambda period=14: period,
    "obv": lambda: 0,
    "adx": lambda period=14: 2 * period - 1,
}


def lookback(indicator: str, **params: int) -> int:
    """Rows per ticker before the first value (TA-Lib's lookback), e.g. ``lookback("adx")``."""
    return _LOOKBACK[indicator](**params)
