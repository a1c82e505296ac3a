"""Technical indicators as polars expressions that reproduce TA-Lib (0.8, default settings).

Every builder takes column names (or expressions) and periods and returns a ``pl.Expr`` (a tuple
of them for multi-output indicators; the ``*_struct`` variants return all outputs as the fields of
one struct, computed once) to evaluate on a *bar frame* (see
:mod:`ats_assets.features.definition`): rows sorted by ``ticker`` then ``ts``, any number of
tickers, one included. A ticker's values depend only on its own rows, a value only on its own and
earlier rows. During an indicator's warm-up (the first :func:`lookback` rows of each ticker) the
value is null where TA-Lib returns NaN; from there on it equals TA-Lib's, run on that ticker's rows
alone, to about 1e-12 relative (the tests require 1e-6). Inputs must not contain nulls (TA-Lib
knows no missing values either).

How it is computed, and why
---------------------------
- *Flat windows, masked.* A window is computed on the whole sorted column, then nulled on each
  ticker's first rows, whose window reaches into the previous ticker. The mask compares the
  ticker's run id (``rle_id``, an integer) with its value ``k`` rows back: polars' kernels on the
  flat column are several times faster than the same kernels ``.over("ticker")``.
- *No residue across tickers.* ``rolling_sum`` and ``rolling_mean`` keep one running total down the
  column, so a ticker's sums would carry rounding residue from the tickers before it: a value
  would depend, in its last bits, on which other tickers share the frame (and a flat window would
  not sum to exactly 0). Sums are therefore weighted rolling sums, computed from each window alone
  (:func:`window_sum`); standard deviations run ``.over`` the ticker; maxima, minima and shifts are
  exact anyway.
- *Recursive filters per ticker.* EMA and Wilder's smoothing cannot run flat (their state would
  flow from one ticker into the next) and polars has no segmented scan, so they run polars'
  ``ewm_mean`` per ticker on the materialised, already-seeded input (:func:`_smoothed`, a batch
  function over whole columns, no per-row Python).
- *Each intermediate evaluated once.* Eager polars re-evaluates a repeated sub-expression, and no
  engine shares repeated rolling or Python-function ones, so a formula that uses an intermediate
  twice binds it once as a struct field (``struct.with_fields``, ``pl.field``).

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
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

TICKER = "ticker"
EPSILON = 1e-14  # TA-Lib's TA_EPSILON, the band of its zero tests
# A digest of this file. Features built on these indicators carry it among their parameters, so
# that their versions change when an indicator's implementation does.
VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]

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


def window_sum(x: IntoExpr, period: int) -> pl.Expr:
    """Sum of the last ``period`` values, computed from the window alone, so that no rounding
    residue flows into it from earlier rows (of another ticker): plain ``rolling_sum`` keeps one
    running total down the column, a weighted rolling sum adds each window afresh (long windows
    add up blocks of 10).

    Nulls count as 0 (weighted rolling sums take no nulls); the first ``period - 1`` rows of the
    frame are null. Mask each ticker's first rows: their windows reach into the previous ticker.
    """
    x = _col(x).fill_null(0.0)
    if period <= 20:
        return x.rolling_sum(period, weights=[1.0] * period)
    blocks, rest = divmod(period, 10)
    parts = pl.struct(ten=x.rolling_sum(10, weights=[1.0] * 10), x=x)
    total = pl.sum_horizontal(
        [F("ten").shift(10 * j) for j in range(blocks)]
        + ([F("x").rolling_sum(rest, weights=[1.0] * rest).shift(10 * blocks)] if rest else []),
        ignore_nulls=False,
    )
    return parts.struct.with_fields(total=total).struct.field("total")


def window_mean(x: IntoExpr, period: int) -> pl.Expr:
    """Mean of the last ``period`` values: their sum / period, as TA-Lib's SMA (see window_sum)."""
    return window_sum(x, period) / period


def window_std(x: IntoExpr, period: int, ddof: int = 0) -> pl.Expr:
    """Standard deviation of the last ``period`` values of the same ticker, null on each ticker's
    first ``period - 1`` rows; exactly 0 on a flat window. ``x`` is evaluated per ticker (a shift
    inside it does not cross tickers)."""
    return _col(x).rolling_std(period, ddof=ddof).over(_segment().set_sorted())


def _flat(highest: pl.Expr, lowest: pl.Expr) -> pl.Expr:
    """TA-Lib's scale-aware zero test of a range."""
    return (highest - lowest).abs() <= EPSILON * (highest.abs() + lowest.abs())


# -- recursive filters, one pass per ticker ------------------------------------------------------

_Spec = tuple[float, int, int, float, bool]  # alpha, at, first, divisor, skip_missing


@cache
def _ewm_kernel(specs: tuple[_Spec, ...]) -> Callable[[list[pl.Series]], pl.Series]:
    """The batch function behind :func:`_smoothed` (cached: one per parameter set)."""

    def kernel(series: list[pl.Series]) -> pl.Series:
        *inputs, seg = series
        segment = seg.cast(pl.UInt32).rename("seg")
        ids = segment.to_numpy()
        # Run ids count 0, 1, 2, ... down the frame: each ticker's first row by binary search.
        count = int(ids[-1]) + 1 if len(ids) else 0
        starts = np.searchsorted(ids, np.arange(count, dtype=ids.dtype))
        lengths = np.diff(np.append(starts, len(ids)))
        columns = {"seg": segment.set_sorted()}
        outputs: list[pl.Expr] = []
        for i, (x, (alpha, at, first, divisor, skip_missing)) in enumerate(
            zip(inputs, specs, strict=True)
        ):
            values = np.array(x.to_numpy(), dtype=np.float64, copy=True)  # a null becomes NaN
            # Null before each ticker's row `at`, the seed sum(rows first..at) / divisor at it.
            warmup = (starts[:, None] + np.arange(at)[None, :])[
                np.arange(at)[None, :] < lengths[:, None]
            ]
            seeded = starts[lengths > at]
            if len(seeded):
                addends = np.nan_to_num(values, nan=0.0) if skip_missing else values
                cuts = np.column_stack([seeded + first, seeded + at + 1]).ravel()
                if cuts[-1] == len(values):  # reduceat takes no index past the end
                    cuts = cuts[:-1]
                values[seeded + at] = np.add.reduceat(addends, cuts)[::2] / divisor
            values[warmup] = np.nan
            columns[f"z{i}"] = pl.Series(values, nan_to_null=True)
            columns[f"x{i}"] = x.cast(pl.Float64)
            outputs += [
                pl.col(f"z{i}")
                .ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True)
                .over("seg", mapping_strategy="explode")
                .alias(f"s{i}"),
                pl.col(f"x{i}"),
            ]
        return pl.DataFrame(columns).select(*outputs, "seg").to_struct()

    return kernel


def _smoothed(*inputs: tuple[pl.Expr, _Spec], seg: pl.Expr | None = None) -> pl.Expr:
    """Recursive filters, one per ``(x, spec)``, per ticker, in one pass over the columns.

    For ``spec = (alpha, at, first, divisor, skip_missing)``: null before each ticker's row ``at``;
    at ``at`` the seed ``sum(x[first..at]) / divisor`` (nulls count as 0 if ``skip_missing``); then
    ``y = (1 - alpha) y[-1] + alpha x``, where a null x leaves y as it was and gives null.

    Returns a struct: ``s{i}`` the filtered series, ``x{i}`` the input and ``seg`` the ticker's
    run id (pass it as ``seg`` to a following filter instead of recomputing it).
    """
    kernel = _ewm_kernel(tuple(spec for _, spec in inputs))
    fields = {f"{p}{i}": pl.Float64 for i in range(len(inputs)) for p in ("s", "x")}
    dtype = pl.Struct({**fields, "seg": pl.UInt32})
    exprs = [x.cast(pl.Float64) for x, _ in inputs]
    return pl.map_batches([*exprs, _segment() if seg is None else seg], kernel, return_dtype=dtype)


def _ema_spec(period: int, at: int) -> _Spec:
    """TA-Lib's EMA written from row ``at`` on (seed: the mean of rows at-period+1..at)."""
    return (2.0 / (period + 1), at, at - period + 1, float(period), False)


def _wilder_spec(period: int, at: int, first: int, skip_missing: bool = False) -> _Spec:
    """Wilder's smoothing, y = (y (n - 1) + x) / n, seeded with sum(rows first..at) / n."""
    return (1.0 / period, at, first, float(period), skip_missing)


# -- overlap studies -------------------------------------------------------------------------


def sma(x: IntoExpr = "close", period: int = 30) -> pl.Expr:
    """Simple moving average (TA-Lib SMA); lookback period - 1."""
    return _result(_bound(x=x), out=pl.when(_ready(period - 1)).then(window_mean(F("x"), period)))


def ema(x: IntoExpr = "close", period: int = 30) -> pl.Expr:
    """Exponential moving average (TA-Lib EMA, seeded with the SMA); lookback period - 1."""
    return _smoothed((_col(x), _ema_spec(period, period - 1))).struct.field("s0")


def _bollinger(x: IntoExpr, period: int, nbdev_up: float, nbdev_dn: float) -> pl.Expr:
    """Struct: x, sd (null in warm-up), mid, up, dn."""
    x = _col(x)
    s = pl.struct(x=x, sd=window_std(x, period), mean=window_mean(x, period))
    s = s.struct.with_fields(mid=pl.when(F("sd").is_not_null()).then(F("mean")))
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
    x = _col(x)
    change = x - x.shift(1)
    spec = _wilder_spec(period, at=period, first=1)
    s = _smoothed((change.clip(lower_bound=0.0), spec), (-change.clip(upper_bound=0.0), spec))
    total = F("s0") + F("s1")
    return _result(s, rsi=pl.when(total > 0).then(100.0 * F("s0") / total).otherwise(total * 0.0))


def macd_struct(x: IntoExpr = "close", fast: int = 12, slow: int = 26, signal: int = 9) -> pl.Expr:
    """MACD as one struct expression, fields ``line``, ``signal``, ``hist`` (see :func:`macd`)."""
    x = _col(x)
    if slow < fast:
        fast, slow = slow, fast
    start = slow - 1  # both EMAs are written from here: the fast one seeds on the rows before
    s = _smoothed((x, _ema_spec(fast, start)), (x, _ema_spec(slow, start)))
    s = s.struct.with_fields(diff=F("s0") - F("s1"))
    at = start + signal - 1
    sig = _smoothed((F("diff"), _ema_spec(signal, at)), seg=F("seg"))
    return _result(
        s,
        signal=sig.struct.field("s0"),
        out=pl.struct(
            line=pl.when(F("signal").is_not_null()).then(F("diff")),
            signal=F("signal"),
            hist=F("diff") - F("signal"),
        ),
    )


def macd(
    x: IntoExpr = "close", fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """MACD line, signal and histogram (TA-Lib MACD); lookback slow + signal - 2."""
    return tuple(  # type: ignore[return-value]
        macd_struct(x, fast, slow, signal).struct.field(name) for name in ("line", "signal", "hist")
    )


def roc(x: IntoExpr = "close", period: int = 10) -> pl.Expr:
    """Rate of change in percent, 100 (x / x[-period] - 1) (TA-Lib ROC); lookback period."""
    prev = F("x").shift(period)
    value = pl.when(prev != 0).then((F("x") / prev - 1.0) * 100.0).otherwise(0.0)
    return _result(_bound(x=x), roc=pl.when(_ready(period)).then(value))


def stoch_struct(
    high: IntoExpr = "high",
    low: IntoExpr = "low",
    close: IntoExpr = "close",
    fastk_period: int = 14,
    slowk_period: int = 3,
    slowd_period: int = 3,
) -> pl.Expr:
    """Slow stochastic as one struct expression, fields ``k`` and ``d`` (see :func:`stoch`)."""
    fastk = (F("c") - F("ll")) / (F("hh") - F("ll")) * 100.0
    ready = _ready(fastk_period + slowk_period + slowd_period - 3)
    k, d = pl.when(ready).then(F("slowk")), pl.when(ready).then(F("slowd"))
    return _result(
        _bound(
            c=close,
            hh=_col(high).rolling_max(fastk_period),
            ll=_col(low).rolling_min(fastk_period),
        ),
        fastk=pl.when(_flat(F("hh"), F("ll"))).then(0.0).otherwise(fastk),
        slowk=window_mean(F("fastk"), slowk_period),
        slowd=window_mean(F("slowk"), slowd_period),
        out=pl.struct(k=k, d=d),
    )


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
    r = -100.0 * (F("hh") - F("c")) / (F("hh") - F("ll"))
    r = pl.when(_flat(F("hh"), F("ll"))).then(0.0).otherwise(r)
    return _result(
        _bound(c=close, hh=_col(high).rolling_max(period), ll=_col(low).rolling_min(period)),
        r=pl.when(_ready(period - 1)).then(r),
    )


def cci(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Commodity channel index (TA-Lib CCI); lookback period - 1."""
    s = _bound(tp=(_col(high) + _col(low) + _col(close)) / 3.0)
    deviations = [(F("tp").shift(k) - F("avg")).abs() for k in range(period)]
    tiny = EPSILON * F("avg").abs()
    cci = F("dev") / (0.015 * F("mad"))
    return _result(
        s,
        {"avg": window_mean(F("tp"), period)},
        {"mad": pl.sum_horizontal(deviations) / period, "dev": F("tp") - F("avg")},
        cci=pl.when((F("dev").abs() <= tiny) | (F("mad") <= tiny)).then(0.0).otherwise(cci),
        out=pl.when(_ready(period - 1)).then(F("cci")),
    )


def mfi(
    high: IntoExpr = "high",
    low: IntoExpr = "low",
    close: IntoExpr = "close",
    volume: IntoExpr = "volume",
    period: int = 14,
) -> pl.Expr:
    """Money flow index, 0-100 (TA-Lib MFI); lookback period."""
    tp = (_col(high) + _col(low) + _col(close)) / 3.0
    s = _bound(tp=tp, flow=tp * _col(volume).cast(pl.Float64))
    move = F("tp") - F("tp").shift(1)
    moved = move.abs() > EPSILON * (F("tp").abs() + F("tp").shift(1).abs())
    total = F("pos") + F("neg")
    mfi = pl.when(total > 0).then(100.0 * F("pos").clip(0.0, total) / total).otherwise(0.0)
    return _result(
        s,
        {
            "up": pl.when(moved & (move > 0)).then(F("flow")).otherwise(0.0),
            "down": pl.when(moved & (move < 0)).then(F("flow")).otherwise(0.0),
        },
        {"pos": window_sum(F("up"), period), "neg": window_sum(F("down"), period)},
        mfi=pl.when(_ready(period)).then(mfi),
    )


def _bars_since(x: pl.Expr, extreme: pl.Expr, period: int) -> pl.Expr:
    """Rows back to the most recent of the last ``period + 1`` rows where ``x == extreme``."""
    bars = pl.lit(period, dtype=pl.Int32)
    for k in range(period - 1, -1, -1):
        bars = pl.when(x.shift(k) == extreme).then(pl.lit(k, dtype=pl.Int32)).otherwise(bars)
    return bars


def _aroon_line(x: str, extreme: str, period: int) -> pl.Expr:
    """Aroon up or down from fields ``x`` and ``extreme`` (its max or min over n + 1 rows):
    100 / n x (n - rows since the extreme, the most recent one when tied)."""
    return (100.0 / period) * (period - _bars_since(F(x), F(extreme), period))


def aroon_struct(high: IntoExpr = "high", low: IntoExpr = "low", period: int = 14) -> pl.Expr:
    """Aroon as one struct expression, fields ``down`` and ``up`` (see :func:`aroon`)."""
    h, lo, ready = _col(high), _col(low), _ready(period)
    return _result(
        _bound(h=h, l=lo, hh=h.rolling_max(period + 1), ll=lo.rolling_min(period + 1)),
        {"down": _aroon_line("l", "ll", period), "up": _aroon_line("h", "hh", period)},
        out=pl.struct(down=pl.when(ready).then(F("down")), up=pl.when(ready).then(F("up"))),
    )


def aroon(
    high: IntoExpr = "high", low: IntoExpr = "low", period: int = 14
) -> tuple[pl.Expr, pl.Expr]:
    """Aroon down and up, 0-100 (TA-Lib AROON, same output order); lookback period."""
    h, lo, ready = _col(high), _col(low), _ready(period)
    down = _result(
        _bound(x=lo, extreme=lo.rolling_min(period + 1)),
        out=pl.when(ready).then(_aroon_line("x", "extreme", period)),
    )
    up = _result(
        _bound(x=h, extreme=h.rolling_max(period + 1)),
        out=pl.when(ready).then(_aroon_line("x", "extreme", period)),
    )
    return down, up


def aroon_osc(high: IntoExpr = "high", low: IntoExpr = "low", period: int = 14) -> pl.Expr:
    """Aroon oscillator, up - down, -100-100 (TA-Lib AROONOSC); lookback period."""
    h, lo = _col(high), _col(low)
    return _result(
        _bound(h=h, l=lo, hh=h.rolling_max(period + 1), ll=lo.rolling_min(period + 1)),
        {"down": _aroon_line("l", "ll", period), "up": _aroon_line("h", "hh", period)},
        osc=pl.when(_ready(period)).then(F("up") - F("down")),
    )


def linreg_slope(x: IntoExpr = "close", period: int = 14) -> pl.Expr:
    """Least-squares slope per bar through the last ``period`` values (TA-Lib LINEARREG_SLOPE);
    lookback period - 1."""
    n = period
    # With t = 0..n-1 from the oldest value: slope = (n sum(t x) - sum(t) sum(x)) / (n sum(t^2) -
    # sum(t)^2); the sums are weighted rolling sums of the window alone.
    sum_t, sum_tt = n * (n - 1) / 2.0, n * (n - 1) * (2 * n - 1) / 6.0
    s = _bound(x=_col(x).cast(pl.Float64))
    s = s.struct.with_fields(
        sx=F("x").rolling_sum(n, weights=[1.0] * n),
        stx=F("x").rolling_sum(n, weights=[float(t) for t in range(n)]),
    )
    slope = (n * F("stx") - sum_t * F("sx")) / (n * sum_tt - sum_t * sum_t)
    return _result(s, slope=pl.when(_ready(n - 1)).then(slope))


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
    spec = _wilder_spec(period, at=period, first=1)
    return _smoothed((_true_range(high, low, close), spec)).struct.field("s0")


def natr(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Normalised ATR in percent of the close, 100 ATR / close (TA-Lib NATR); lookback period."""
    s = pl.struct(atr=atr(high, low, close, period), c=_col(close))
    natr = pl.when(F("c") != 0).then(100.0 * F("atr") / F("c")).otherwise(F("atr") * 0.0)
    return _result(s, natr=natr)


def obv(close: IntoExpr = "close", volume: IntoExpr = "volume") -> pl.Expr:
    """On-balance volume (TA-Lib OBV: each ticker starts at its first bar's volume)."""
    first = (F("seg") != F("seg").shift(1)).fill_null(True)
    c, v = F("c"), F("v")
    signed = pl.when(first).then(v).when(c > c.shift(1)).then(v).when(c < c.shift(1)).then(-v)
    return _result(
        _bound(c=close, v=volume),
        signed=signed.otherwise(v * 0),
        total=F("signed").cum_sum(),
        # Take off what the running total held before each ticker's first row.
        obv=F("total") - pl.when(first).then(F("total") - F("signed")).forward_fill(),
        out=F("obv").cast(pl.Float64),
    )


def adx(
    high: IntoExpr = "high", low: IntoExpr = "low", close: IntoExpr = "close", period: int = 14
) -> pl.Expr:
    """Average directional movement index, 0-100 (TA-Lib ADX); lookback 2 period - 1."""
    h, lo = _col(high), _col(low)
    up, down = h - h.shift(1), lo.shift(1) - lo
    minus_dm = pl.when((down > 0) & (up < down)).then(down).otherwise(0.0)
    plus_dm = pl.when((up > 0) & (up > down)).then(up).otherwise(0.0)
    # Wilder's sums s = s - s/n + x are n x an EMA (alpha 1/n) seeded with sum(rows 1..n-1) / n;
    # only their ratios are used, so the factor n cancels.
    spec = _wilder_spec(period, at=period - 1, first=1)
    s = _smoothed((minus_dm, spec), (plus_dm, spec), (_true_range(high, low, close), spec))
    minus, plus, tr = F("s0"), F("s1"), F("s2")
    di_sum = 100.0 * (minus + plus) / tr
    defined = ((tr * period).abs() >= EPSILON) & (di_sum.abs() >= EPSILON) & _ready(period)
    at = 2 * period - 1
    adx = _smoothed((F("dx"), _wilder_spec(period, at, period, skip_missing=True)), seg=F("seg"))
    return _result(
        s,
        dx=pl.when(defined).then(100.0 * (minus - plus).abs() / (minus + plus)),
        adx=adx.struct.field("s0"),
        # A skipped DX (null) leaves ADX where it was.
        out=pl.when(_ready(at)).then(F("adx").forward_fill()),
    )


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
