"""Segmented kernels: TA-Lib's indicators, and the features' time windows, as one compiled pass
per ticker.

A kernel takes ``seg``, the ticker's run id per row of a frame sorted by ticker then time (see
``indicators._segment``), and float64 input columns, and returns float64 columns of the same
length: NaN during each ticker's warm-up (the caller turns it into null), the indicator after it.
Each ticker's rows are a *segment* computed on their own, from its first row, so a ticker's values
never depend on the other tickers in the frame (bit for bit).

Why compiled loops: recursive filters (EMA, Wilder's smoothing) and scans that keep state (a
window's extreme and where it is) are one pass per ticker in TA-Lib; polars has no segmented scan,
and composing them from whole-column polars operations costs several passes per indicator.
``numba`` compiles each kernel once (about 10 s for all of them on the reference machine; cached
on disk, beside this file or in ``NUMBA_CACHE_DIR``, and loaded in about 2 s by a new process) and
releases the GIL, so polars evaluates several indicator expressions in parallel.

Arithmetic, and how it may differ from TA-Lib's in the last bits (the tests hold every kernel to
TA-Lib within 1e-6 relative; the differences measured are below 1e-10):

- Recursions are written as one fused multiply-add per row, ``y = a y + b x`` with the
  coefficients precomputed (TA-Lib divides by the period every row): the same filter, a shorter
  dependency chain.
- Window sums are running totals (add the row entering, subtract the row leaving), as in TA-Lib's
  SMA and the stochastic's 3-bar smoothing. Where a convention tests a sum or a range for 0 (money flow, a flat Bollinger window), the
  kernel also counts the window's nonzero terms / price changes, an exact integer, so that an
  all-zero window gives exactly 0 whatever residue the running total holds. Totals other than
  those two TA-Lib SMAs are recomputed from their window every ``REFRESH`` rows, so residue never builds up over a
  long history. CCI's mean deviation is about each window's own mean: its windows are summed
  afresh, as TA-Lib does.
- Aroon tracks a window's maximum / minimum with its index, rescanning the window only when it
  leaves it (TA-Lib's method; ties go to the most recent row); %K and %R, which need only the
  values, scan each short window afresh.

The indicator kernels take no NaN (TA-Lib knows no missing values either): the expressions in
``indicators`` refuse a null or NaN input with an error instead of computing wrong values, and
refuse a period below 1. The time-window kernels handle NaN as their docstrings say.
"""

import math
import os
import tempfile
from pathlib import Path

import numpy as np

# numba caches compiled kernels beside this file, else under ~/.cache; where neither is writable
# (a read-only install without a home) it would refuse to load them: use the temp folder then.
# Deployments set NUMBA_CACHE_DIR to a folder compiled into at build time (deployment/docker).
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).parent, os.W_OK):
    home_cache = Path.home() / ".cache"
    if not os.access(home_cache if home_cache.exists() else Path.home(), os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "ats-numba-cache")

from numba import njit  # imported after the cache folder is chosen

from ats_assets.features.indicators import EPSILON  # TA-Lib's TA_EPSILON, one definition

REFRESH = 128  # rows between recomputations of a running window total
DRIFT = 1e6  # a window's squared mean / variance about its reference that calls for a refresh
# Row indices are unsigned: with signed ones every x[i - k] carries a negative-index check, which
# keeps LLVM from vectorizing the loops (ROC: 5 ms -> 1.3 ms for 1.17M rows). An int literal would
# turn an unsigned expression into a float, so index arithmetic uses these constants.
U = np.uint64
_1, _2 = U(1), U(2)
# error_model="numpy": a division by zero gives inf / NaN instead of raising (the indicators'
# divisions are guarded by their own zero tests); "contract": a * b + c may be one fused
# multiply-add.
_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


@njit(**_JIT)
def _bounds(seg):
    """Start of each segment, then the frame's length: segment k is rows ``b[k]:b[k + 1]``."""
    n = seg.shape[0]
    count = 0
    for i in range(n):
        if i == 0 or seg[i] != seg[i - 1]:
            count += 1
    out = np.empty(count + 1, np.uint64)
    k = 0
    for i in range(n):
        if i == 0 or seg[i] != seg[i - 1]:
            out[k] = i
            k += 1
    out[count] = n
    return out


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def finite(x):
    """Whether every value of x is finite: x * 0 sums to 0 unless a value is NaN or infinite
    (one vectorized pass, no temporary array)."""
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * 0.0
    return total == 0.0


@njit(**_JIT)
def _nan(n):
    out = np.empty(n, np.float64)
    out[:] = np.nan
    return out


@njit(**_JIT)
def _true_range(high, low, prev_close):
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


@njit(**_JIT)
def _flat(highest, lowest):
    """TA-Lib's scale-aware zero test of a range."""
    return abs(highest - lowest) <= EPSILON * (abs(highest) + abs(lowest))


@njit(**_JIT)
def _range_oscillator(seg, high, low, close, window, fastk):
    """From each ticker's row window - 1 on, where the close sits in the range of the last
    ``window`` bars: fast %K, 100 (close - LL) / (HH - LL) (``fastk``), or Williams' %R,
    -100 (HH - close) / (HH - LL); 0 on a flat range.

    The window's extremes come from van Herk and Gil-Werman's method: the ticker's rows cut into
    blocks of ``window`` rows, each row keeps the extreme from its block's start up to it and
    from it to its block's end; a window spans at most two blocks, so its extreme is that of the
    end part of its first row's block and the start part of its last row's. Three passes without
    unpredictable branches, the same values as a scan (an extreme is exact)."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    w = U(window)
    longest = U(0)
    for k in range(b.shape[0] - 1):
        longest = max(longest, b[k + 1] - b[k])
    up_h, up_l, down_h, down_l = _nan(longest), _nan(longest), _nan(longest), _nan(longest)
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        size = e - s
        if size < w:
            continue
        for start in range(U(0), size, w):  # from the block's start up to r
            up_h[start], up_l[start] = high[s + start], low[s + start]
            for r in range(start + _1, min(start + w, size)):
                up_h[r] = max(up_h[r - _1], high[s + r])
                up_l[r] = min(up_l[r - _1], low[s + r])
        for start in range(U(0), size, w):  # from r to its block's end
            last = min(start + w, size) - _1
            down_h[last], down_l[last] = high[s + last], low[s + last]
            for j in range(last - start):
                q = last - _1 - j
                down_h[q] = max(down_h[q + _1], high[s + q])
                down_l[q] = min(down_l[q + _1], low[s + q])
        for r in range(w - _1, size):
            first = r + _1 - w
            hh = max(down_h[first], up_h[r])
            ll = min(down_l[first], up_l[r])
            i = s + r
            if _flat(hh, ll):
                out[i] = 0.0
            elif fastk:
                out[i] = (close[i] - ll) / (hh - ll) * 100.0
            else:
                out[i] = -100.0 * (hh - close[i]) / (hh - ll)
    return out


@njit(**_JIT)
def _aroon(seg, high, low, period, oscillator):
    """From each ticker's row ``period`` on: Aroon down and up, 100 / n x (n - bars since the
    extreme of the last n + 1 bars, the most recent one when tied), or (``oscillator``) up - down
    as the first output. The extremes are tracked with their index, TA-Lib's way: a window is
    rescanned only when its extreme has left it."""
    b = _bounds(seg)
    n = high.shape[0]
    out, second = _nan(n), _nan(0 if oscillator else n)
    factor = 100.0 / period
    p = U(period)
    for k in range(b.shape[0] - 1):
        s = b[k]
        at_hi, hh, at_lo, ll = s, 0.0, s, 0.0
        for i in range(s + p, b[k + 1]):
            first = i - p
            if at_hi < first or i == s + p:
                at_hi, hh = first, high[first]
                for j in range(first + _1, i + _1):
                    if high[j] >= hh:
                        at_hi, hh = j, high[j]
            elif high[i] >= hh:
                at_hi, hh = i, high[i]
            if at_lo < first or i == s + p:
                at_lo, ll = first, low[first]
                for j in range(first + _1, i + _1):
                    if low[j] <= ll:
                        at_lo, ll = j, low[j]
            elif low[i] <= ll:
                at_lo, ll = i, low[i]
            if oscillator:
                out[i] = factor * (float(at_hi) - float(at_lo))
            else:
                out[i] = factor * (p - (i - at_lo))
                second[i] = factor * (p - (i - at_hi))
    return out, second


# -- overlap studies -------------------------------------------------------------------------


@njit(**_JIT)
def sma(seg, x, period):
    """TA-Lib SMA: a running total over the ticker's rows; first value at row period - 1."""
    b = _bounds(seg)
    out = _nan(x.shape[0])
    p = U(period)
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s < p:
            continue
        total = 0.0
        for i in range(s, s + p - _1):
            total += x[i]
        for i in range(s + p - _1, e):
            total += x[i]
            out[i] = total / period
            total -= x[i + _1 - p]
    return out


@njit(**_JIT)
def ema(seg, x, period):
    """TA-Lib EMA: seeded with the mean of the first ``period`` rows, at row period - 1, then
    y = k x + (1 - k) y with k = 2 / (period + 1)."""
    b = _bounds(seg)
    out = _nan(x.shape[0])
    p = U(period)
    k_new = 2.0 / (period + 1)
    k_old = 1.0 - k_new
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s < p:
            continue
        total = 0.0
        for i in range(s, s + p):
            total += x[i]
        y = total / period
        out[s + p - _1] = y
        for i in range(s + p, e):
            y = x[i] * k_new + y * k_old
            out[i] = y
    return out


@njit(**_JIT)
def macd(seg, x, fast, slow, signal):
    """TA-Lib MACD: line, signal, histogram, all from row slow + signal - 2. Both EMAs are
    written from row slow - 1 (the fast one seeded with the mean of the ``fast`` rows ending
    there), the signal EMA is seeded with the mean of the first ``signal`` MACD values."""
    b = _bounds(seg)
    n = x.shape[0]
    line, sig, hist = _nan(n), _nan(n), _nan(n)
    f_p, s_p = U(fast), U(slow)
    start = s_p - _1
    first = start + U(signal) - _1
    kf, ks, kg = 2.0 / (fast + 1), 2.0 / (slow + 1), 2.0 / (signal + 1)
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s <= first:
            continue
        fast_total = 0.0
        for i in range(s + s_p - f_p, s + s_p):
            fast_total += x[i]
        slow_total = 0.0
        for i in range(s, s + s_p):
            slow_total += x[i]
        f = fast_total / fast
        w = slow_total / slow
        signal_total = 0.0
        g = 0.0
        for i in range(s + start, e):
            if i > s + start:
                f = x[i] * kf + f * (1.0 - kf)
                w = x[i] * ks + w * (1.0 - ks)
            d = f - w
            row = i - s
            if row < first:
                signal_total += d
                continue
            g = (signal_total + d) / signal if row == first else d * kg + g * (1.0 - kg)
            line[i] = d
            sig[i] = g
            hist[i] = d - g
    return line, sig, hist


@njit(**_JIT)
def _drifted(s1, s2, period):
    """Whether the window's mean lies more than 1,000 deviations from the reference: the sums'
    difference s2 - s1 m has then lost about six of its digits, and the window is summed afresh
    (about a reference inside it, the mean can lie at most about sqrt(period) deviations away)."""
    m = s1 / period
    return m * m > DRIFT * max(s2 - s1 * m, 0.0) / period


@njit(**_JIT)
def bollinger(seg, x, period):
    """Mean and population standard deviation of each window of ``period`` rows, from row
    period - 1: the families' window pass (``_window_stats``: running sums about a reference,
    summed afresh every ``REFRESH`` windows and on a drift of the mean, so the variance is free
    of cancellation; a window without a price change has a deviation of exactly 0)."""
    mean, sd = _nan(x.shape[0]), _nan(x.shape[0])
    _window_stats(seg, x, period, 0, 0, 0, mean, sd)
    return mean, sd


# -- momentum ----------------------------------------------------------------------------------


@njit(**_JIT)
def rsi(seg, x, period):
    """TA-Lib RSI: Wilder-smoothed gains and losses seeded with the mean of the first ``period``
    changes; 100 gain / (gain + loss), 0 when both are 0; first value at row period."""
    b = _bounds(seg)
    out = _nan(x.shape[0])
    p = U(period)
    keep, add = (period - 1.0) / period, 1.0 / period
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s <= p:
            continue
        gain = 0.0
        loss = 0.0
        for i in range(s + _1, s + p + _1):
            change = x[i] - x[i - _1]
            if change < 0:
                loss -= change
            else:
                gain += change
        gain /= period
        loss /= period
        for i in range(s + p, e):
            if i > s + p:
                change = x[i] - x[i - _1]
                gain = gain * keep + max(change, 0.0) * add
                loss = loss * keep + max(-change, 0.0) * add
            total = gain + loss
            out[i] = 100.0 * (gain / total) if total > 0 else 0.0
    return out


@njit(**_JIT)
def roc(seg, x, period):
    """TA-Lib ROC: 100 (x / x[-period] - 1), 0 when x[-period] == 0; from row period."""
    b = _bounds(seg)
    out = _nan(x.shape[0])
    p = U(period)
    for k in range(b.shape[0] - 1):
        # Two loops: the first has no branch (it vectorizes), the second fixes a zero divisor.
        for i in range(b[k] + p, b[k + 1]):
            out[i] = (x[i] / x[i - p] - 1.0) * 100.0
        for i in range(b[k] + p, b[k + 1]):
            if x[i - p] == 0:
                out[i] = 0.0
    return out


@njit(**_JIT)
def stoch(seg, high, low, close, fastk_period, slowk_period, slowd_period):
    """TA-Lib STOCH with SMA smoothing: fast %K = 100 (close - LL) / (HH - LL) (0 on a flat
    range), slow %K its SMA, slow %D the SMA of slow %K (running totals, as TA-Lib's SMA); both
    from row fastk + slowk + slowd - 3."""
    fastk = _range_oscillator(seg, high, low, close, fastk_period, True)
    b = _bounds(seg)
    n = close.shape[0]
    k_out, d_out = _nan(n), _nan(n)
    fk, sk, sd = U(fastk_period), U(slowk_period), U(slowd_period)
    first_k = fk + sk - _2
    first = first_k + sd - _1
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s <= first:
            continue
        k_total, d_total = 0.0, 0.0
        for i in range(s + fk - _1, e):
            row = i - s
            k_total += fastk[i]
            if row < first_k:
                continue
            if row > first_k:
                k_total -= fastk[i - sk]
            k_out[i] = k_total / slowk_period  # slow %K, kept for %D; nulled in warm-up below
            d_total += k_out[i]
            if row < first:
                continue
            if row > first:
                d_total -= k_out[i - sd]
            d_out[i] = d_total / slowd_period
        k_out[s + first_k : s + first] = np.nan
    return k_out, d_out


@njit(**_JIT)
def willr(seg, high, low, close, period):
    """TA-Lib WILLR: -100 (HH - close) / (HH - LL), 0 on a flat range; from row period - 1."""
    return _range_oscillator(seg, high, low, close, period, False)


@njit(**_JIT)
def cci(seg, high, low, close, period):
    """TA-Lib CCI on the typical price, the mean absolute deviation taken about each window's own
    mean; 0 when the deviation or the mean deviation is <= 1e-14 |mean|; from row period - 1."""
    b = _bounds(seg)
    n = close.shape[0]
    tp = (high + low + close) / 3.0
    out = _nan(n)
    p = U(period)
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        for i in range(s + p - _1, e):
            total = 0.0
            for j in range(i + _1 - p, i + _1):
                total += tp[j]
            avg = total / period
            mad = 0.0
            for j in range(i + _1 - p, i + _1):
                mad += abs(tp[j] - avg)
            mad /= period
            dev = tp[i] - avg
            tiny = EPSILON * abs(avg)
            out[i] = 0.0 if abs(dev) <= tiny or mad <= tiny else dev / (0.015 * mad)
    return out


# -- volume ------------------------------------------------------------------------------------


@njit(**_JIT)
def _money_flow(tp, volume, j):
    """Row j's (positive, negative) money flow: tp x volume on the side tp moved to, none when
    |tp - tp[-1]| <= 1e-14 (|tp| + |tp[-1]|)."""
    move = tp[j] - tp[j - _1]
    if abs(move) <= EPSILON * (abs(tp[j]) + abs(tp[j - _1])):
        return 0.0, 0.0
    flow = tp[j] * volume[j]
    return (flow, 0.0) if move > 0 else (0.0, flow)


@njit(**_JIT)
def mfi(seg, high, low, close, volume, period):
    """TA-Lib MFI: positive / negative money flow summed over the last ``period`` bars (rows
    1..period for the first value, at row period); 0 when both sums are 0."""
    b = _bounds(seg)
    n = close.shape[0]
    tp = (high + low + close) / 3.0
    out = _nan(n)
    p = U(period)
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        pos, neg, n_pos, n_neg, since = 0.0, 0.0, 0, 0, REFRESH
        for i in range(s + p, e):
            if since == REFRESH:
                pos, neg, n_pos, n_neg, since = 0.0, 0.0, 0, 0, 0
                for j in range(i + _1 - p, i + _1):
                    up, down = _money_flow(tp, volume, j)
                    pos += up
                    neg += down
                    n_pos += up != 0
                    n_neg += down != 0
            else:
                up, down = _money_flow(tp, volume, i)
                gone_up, gone_down = _money_flow(tp, volume, i - p)
                pos += up - gone_up
                neg += down - gone_down
                n_pos += (up != 0) - (gone_up != 0)
                n_neg += (down != 0) - (gone_down != 0)
            since += 1
            positive = pos if n_pos else 0.0
            total = positive + (neg if n_neg else 0.0)
            out[i] = 100.0 * (min(max(positive, 0.0), total) / total) if total > 0 else 0.0
    return out


@njit(**_JIT)
def obv(seg, close, volume):
    """TA-Lib OBV: each ticker starts at its first bar's volume, then adds the volume on an up
    close and subtracts it on a down close."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        total = volume[s]
        out[s] = total
        for i in range(s + _1, e):
            if close[i] > close[i - _1]:
                total += volume[i]
            elif close[i] < close[i - _1]:
                total -= volume[i]
            out[i] = total
    return out


# -- trend -------------------------------------------------------------------------------------


@njit(**_JIT)
def aroon(seg, high, low, period):
    """TA-Lib AROON (down, up): 100 / n x (n - bars since the extreme of the last n + 1 bars, the
    most recent one when tied); from row period."""
    return _aroon(seg, high, low, period, False)


@njit(**_JIT)
def aroon_osc(seg, high, low, period):
    """TA-Lib AROONOSC: up - down = 100 / n x (index of the high - index of the low); from row
    period."""
    return _aroon(seg, high, low, period, True)[0]


@njit(**_JIT)
def _regression_sums(x, i, p):
    """Sum of the window's values and of each value times its distance back from row i."""
    sum_y = 0.0
    sum_xy = 0.0
    for back in range(p):
        value = x[i - back]
        sum_y += value
        sum_xy += back * value
    return sum_y, sum_xy


@njit(**_JIT)
def linreg_slope(seg, x, period):
    """TA-Lib LINEARREG_SLOPE: least-squares slope per bar over each window; from row
    period - 1. The sums slide with the window: sum_xy gains sum_y and loses period x the row
    leaving."""
    b = _bounds(seg)
    out = _nan(x.shape[0])
    p = U(period)
    sum_x = period * (period - 1) * 0.5
    sum_x_sqr = period * (period - 1) * (2 * period - 1) / 6.0
    divisor = sum_x * sum_x - period * sum_x_sqr
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        sum_y, sum_xy, since = 0.0, 0.0, REFRESH
        for i in range(s + p - _1, e):
            if since == REFRESH:
                sum_y, sum_xy = _regression_sums(x, i, p)
                since = 0
            else:
                gone = x[i - p]
                sum_xy += sum_y - period * gone
                sum_y += x[i] - gone
            since += 1
            out[i] = (period * sum_xy - sum_x * sum_y) / divisor
    return out


@njit(**_JIT)
def adx(seg, high, low, close, period):
    """TA-Lib ADX: Wilder sums (s = s - s / n + x) of +DM, -DM and TR seeded over rows 1..n-1, ADX
    seeded with the mean of the DX of rows n..2n-1, then Wilder-smoothed. A DX whose TR or DI sum
    is below 1e-14 is skipped: it counts 0 in the seed and leaves ADX as it was. First value at
    row 2n - 1."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    p = U(period)
    first = _2 * p - _1
    keep, add = (period - 1.0) / period, 1.0 / period
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s <= first:
            continue
        plus = 0.0
        minus = 0.0
        tr = 0.0
        sum_dx = 0.0
        value = 0.0
        for i in range(s + _1, e):
            row = i - s
            up = high[i] - high[i - _1]
            down = low[i - _1] - low[i]
            plus_dm = up if up > 0 and up > down else 0.0
            minus_dm = down if down > 0 and up < down else 0.0
            true_range = _true_range(high[i], low[i], close[i - _1])
            if row < p:
                plus += plus_dm
                minus += minus_dm
                tr += true_range
                continue
            plus = plus * keep + plus_dm
            minus = minus * keep + minus_dm
            tr = tr * keep + true_range
            dx = -1.0
            if abs(tr) >= EPSILON:
                minus_di = 100.0 * minus / tr
                plus_di = 100.0 * plus / tr
                di_sum = minus_di + plus_di
                if abs(di_sum) >= EPSILON:
                    dx = 100.0 * abs(minus_di - plus_di) / di_sum
            if row < first:
                sum_dx += max(dx, 0.0)
                continue
            if row == first:
                value = (sum_dx + max(dx, 0.0)) / period
            elif dx >= 0:
                value = value * keep + dx * add
            out[i] = value
    return out


# -- volatility --------------------------------------------------------------------------------


@njit(**_JIT)
def atr(seg, high, low, close, period, normalised=False):
    """TA-Lib ATR: Wilder's smoothing of the true range seeded with the mean of rows 1..period;
    first value at row period. ``normalised``: TA-Lib NATR, 100 ATR / close (0 when close is 0)."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    p = U(period)
    keep, add = (period - 1.0) / period, 1.0 / period
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        if e - s <= p:
            continue
        total = 0.0
        for i in range(s + _1, s + p + _1):
            total += _true_range(high[i], low[i], close[i - _1])
        value = total / period
        for i in range(s + p, e):
            if i > s + p:
                value = value * keep + _true_range(high[i], low[i], close[i - _1]) * add
            if not normalised:
                out[i] = value
            else:
                out[i] = (value / close[i]) * 100.0 if close[i] != 0 else 0.0
    return out


# -- time windows ------------------------------------------------------------------------------


@njit(**_JIT)
def relative_to_time_of_day(seg, minute, x, sessions, min_sessions):
    """x / the mean of x at the same minute of the session (``minute``) over the ticker's last
    ``sessions`` earlier rows with that minute: NaN x among them are skipped (they still take a
    place), at least ``min_sessions`` values and a mean above 0 are needed (NaN otherwise). The
    earlier values are added from the most recent back. A row whose minute is NaN or negative
    has no place: NaN, and it is not remembered."""
    b = _bounds(seg)
    n = x.shape[0]
    out = _nan(n)
    slots = 1
    for i in range(n):
        if minute[i] >= 0:  # False for NaN
            slots = max(slots, int(minute[i]) + 1)
    recent = np.empty((slots, sessions), np.float64)  # per minute, a ring of the last values
    count = np.zeros(slots, np.int64)
    for k in range(b.shape[0] - 1):
        count[:] = 0
        for i in range(b[k], b[k + 1]):
            if not minute[i] >= 0:
                continue
            m = int(minute[i])
            c = count[m]
            total = 0.0
            have = 0
            for back in range(1, min(c, sessions) + 1):
                value = recent[m, (c - back) % sessions]
                if not math.isnan(value):
                    total += value
                    have += 1
            if have >= min_sessions and total / have > 0:
                out[i] = x[i] / (total / have)
            recent[m, c % sessions] = x[i]
            count[m] = c + 1
    return out


@njit(**_JIT)
def time_window_sum(seg, ts, x, window):
    """Sum of x over the ticker's rows with ts in (ts_i - window, ts_i] (ts and a positive window
    in one unit, as float64): a running total between two pointers, recomputed every ``REFRESH``
    rows, with exact counts of the window's nonzero values (a sum of exactly 0 without them) and
    NaN values (the sum is then NaN)."""
    b = _bounds(seg)
    out = _nan(x.shape[0])
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        lo = s
        total, nonzero, nans, since = 0.0, 0, 0, 0
        for i in range(s, e):
            while ts[lo] <= ts[i] - window:
                if math.isnan(x[lo]):
                    nans -= 1
                else:
                    total -= x[lo]
                nonzero -= x[lo] != 0
                lo += _1
            if math.isnan(x[i]):
                nans += 1
            else:
                total += x[i]
            nonzero += x[i] != 0
            since += 1
            if since == REFRESH:
                total, since = 0.0, 0
                for j in range(lo, i + _1):
                    if not math.isnan(x[j]):
                        total += x[j]
            if nans == 0:
                out[i] = total if nonzero else 0.0
    return out


# -- windows of rows, sessions (the families' helpers) ------------------------------------------


@njit(**_JIT)
def _afresh(x, lo, hi):
    """A window ``lo:hi`` summed afresh: a reference (its first finite value, else 0), the sums
    of the other finite values' differences from it and of their squares, its count of values
    that are not finite (NaN, infinite), and how many adjacent pairs in it differ."""
    ref = 0.0
    for j in range(lo, hi):
        if math.isfinite(x[j]):
            ref = x[j]
            break
    s1, s2, bad, changes = 0.0, 0.0, 0, 0
    for j in range(lo, hi):
        if math.isfinite(x[j]):
            d = x[j] - ref
            s1 += d
            s2 += d * d
        else:
            bad += 1
        if j > lo:
            changes += x[j] != x[j - _1]
    return ref, s1, s2, bad, changes


@njit(**_JIT)
def _window_stats(seg, x, period, lag, skip, ddof, mean, sd):
    """Into ``mean`` (and ``sd`` unless it is empty): the mean (standard deviation with ``ddof``)
    of each window of ``period`` rows that ends ``lag`` rows before the row and starts at or
    after the ticker's row ``skip``; NaN while the window holds a NaN or an infinite value.
    Running sums of the differences from a reference keep the variance free of cancellation:
    they are summed afresh every ``REFRESH`` windows (no residue builds up) and whenever the
    window's mean has drifted far from the reference (``_drifted``); a window without a change
    in value has exactly its value as mean and a deviation of exactly 0."""
    b = _bounds(seg)
    p, back, first_row = U(period), U(lag), U(skip)
    with_sd = sd.shape[0] > 0
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        first = s + first_row + p - _1  # the first window's last row
        if first + back >= e:
            continue
        ref, s1, s2, bad, changes, since = 0.0, 0.0, 0.0, 0, 0, REFRESH
        for end in range(first, e - back):
            lo = end + _1 - p
            if since < REFRESH:
                old, new = x[lo - _1], x[end]
                if math.isfinite(old):
                    s1 -= old - ref
                    s2 -= (old - ref) * (old - ref)
                else:
                    bad -= 1
                if math.isfinite(new):
                    s1 += new - ref
                    s2 += (new - ref) * (new - ref)
                else:
                    bad += 1
                changes += (new != x[end - _1]) - (x[lo] != old)
                if bad == 0 and changes and _drifted(s1, s2, period):
                    since = REFRESH
            if since == REFRESH:
                ref, s1, s2, bad, changes = _afresh(x, lo, end + _1)
                since = 0
            since += 1
            if bad:
                continue
            i = end + back
            if changes == 0:
                mean[i] = x[end]
                if with_sd:
                    sd[i] = 0.0
            else:
                m = s1 / period
                mean[i] = ref + m
                if with_sd:
                    sd[i] = math.sqrt(max((s2 - s1 * m) / (period - ddof), 0.0))


@njit(**_JIT)
def window_mean(seg, x, period, lag, skip):
    """Mean of each window of ``period`` rows ending ``lag`` rows back (see ``_window_stats``)."""
    mean = _nan(x.shape[0])
    _window_stats(seg, x, period, lag, skip, 0, mean, _nan(0))
    return mean


@njit(**_JIT)
def window_mean_std(seg, x, period, lag, skip, ddof):
    """Mean and standard deviation of each window (see ``_window_stats``)."""
    mean, sd = _nan(x.shape[0]), _nan(x.shape[0])
    _window_stats(seg, x, period, lag, skip, ddof, mean, sd)
    return mean, sd


@njit(**_JIT)
def _new_session(session, i, s):
    """Whether row i starts a session of the ticker whose rows start at s."""
    return i == s or session[i] != session[i - _1]


@njit(**_JIT)
def session_range_position(seg, session, high, low, close):
    """Where the close sits between the session's lowest low and highest high so far, 0-1; 0.5
    while that range is flat, and on a bar without a high or low (NaN: it adds nothing to the
    range either)."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        top, bottom = -np.inf, np.inf
        for i in range(s, e):
            if _new_session(session, i, s):
                top, bottom = -np.inf, np.inf
            if high[i] != high[i] or low[i] != low[i]:  # no range for this bar: neutral
                out[i] = 0.5
                continue
            top, bottom = max(top, high[i]), min(bottom, low[i])
            width = top - bottom
            out[i] = (close[i] - bottom) / width if width > 0 else 0.5
    return out


@njit(**_JIT)
def session_vwap_distance(seg, session, close, vwap, volume):
    """close / the session's volume-weighted average price so far - 1; 0 while the session has
    no weight. A bar weighs its volume where its vwap is above 0 (a vwap or volume that is NaN or
    infinite: none)."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        dollars, shares = 0.0, 0.0
        for i in range(s, e):
            if _new_session(session, i, s):
                dollars, shares = 0.0, 0.0
            if vwap[i] > 0 and math.isfinite(vwap[i]) and math.isfinite(volume[i]):
                dollars += vwap[i] * volume[i]
                shares += volume[i]
            out[i] = close[i] * shares / dollars - 1.0 if shares > 0 and dollars > 0 else 0.0
    return out


@njit(**_JIT)
def overnight_gap(seg, session, open_, close):
    """The session's first open / the ticker's last close before the session - 1, on every row
    of the session; NaN in the ticker's first session."""
    b = _bounds(seg)
    out = _nan(close.shape[0])
    for k in range(b.shape[0] - 1):
        s, e = b[k], b[k + 1]
        gap = np.nan
        for i in range(s, e):
            if i == s:
                gap = np.nan
            elif session[i] != session[i - _1]:
                gap = open_[i] / close[i - _1] - 1.0
            out[i] = gap
    return out
