"""Indicator benchmark: our polars expressions against TA-Lib, 150 tickers x 20 sessions of minutes.

Run with ``python -m benchmarks.indicator_speed [NAME ...]`` (all indicators, or those whose name
starts with one of the NAMEs); prints a table. Input: simulated 1-minute bars of
150 tickers over 20 NYSE sessions (about 1.17M rows), sorted by ticker then ts.

- *ours*: ``frame.select(...)`` of the indicator's expression, eager, as the feature pipeline
  evaluates them: all tickers at once, the ticker column an Enum (``pipeline.compute_days``). A multi-output indicator is its ``*_struct`` expression
  (all outputs from one evaluation, as TA-Lib returns them), unnested.
- *TA-Lib*: what a user would write: a Python loop over the tickers calling ``talib`` on each
  ticker's float64 numpy arrays, then concatenating each output into one column. Splitting the
  frame into per-ticker arrays is done once beforehand and not timed, which favours TA-Lib.

Each time is the best of ``REPEATS`` runs, ours and TA-Lib's alternating. The target is
ours / TA-Lib <= 2.0. ``max rel diff`` is the largest |ours - TA-Lib| / max(|TA-Lib|, 1) over the
whole frame, TA-Lib run per ticker. Last, the time to evaluate every feature of the momentum,
trend, volatility and volume families together on the same frame, and the input rows per second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import date

import numpy as np
import polars as pl
import talib

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features import indicators as ind
from ats_assets.features.families import momentum, trend, volatility, volume
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig

TICKERS = 150
SESSIONS = 20
REPEATS = 5
TARGET_RATIO = 2.0
FEATURES = (*momentum.FEATURES, *trend.FEATURES, *volatility.FEATURES, *volume.FEATURES)

Arrays = dict[str, list[np.ndarray]]
# name -> (our expressions, TA-Lib on ticker i's arrays, number of outputs)
CASES: dict[str, tuple[Callable[[], list[pl.Expr]], Callable[[Arrays, int], object]]] = {
    "SMA(30)": (lambda: [ind.sma("close", 30)], lambda a, i: talib.SMA(a["c"][i], 30)),
    "EMA(30)": (lambda: [ind.ema("close", 30)], lambda a, i: talib.EMA(a["c"][i], 30)),
    "RSI(14)": (lambda: [ind.rsi("close", 14)], lambda a, i: talib.RSI(a["c"][i], 14)),
    "MACD(12,26,9)": (
        lambda: [ind.macd_struct("close", 12, 26, 9)],
        lambda a, i: talib.MACD(a["c"][i], 12, 26, 9),
    ),
    "BBANDS(20,2,2)": (
        lambda: [ind.bbands_struct("close", 20, 2.0, 2.0)],
        lambda a, i: talib.BBANDS(a["c"][i], 20, 2.0, 2.0, 0),
    ),
    "ROC(10)": (lambda: [ind.roc("close", 10)], lambda a, i: talib.ROC(a["c"][i], 10)),
    "STOCH(14,3,3)": (
        lambda: [ind.stoch_struct("high", "low", "close", 14, 3, 3)],
        lambda a, i: talib.STOCH(a["h"][i], a["l"][i], a["c"][i], 14, 3, 0, 3, 0),
    ),
    "WILLR(14)": (
        lambda: [ind.willr(period=14)],
        lambda a, i: talib.WILLR(a["h"][i], a["l"][i], a["c"][i], 14),
    ),
    "CCI(14)": (
        lambda: [ind.cci(period=14)],
        lambda a, i: talib.CCI(a["h"][i], a["l"][i], a["c"][i], 14),
    ),
    "MFI(14)": (
        lambda: [ind.mfi(period=14)],
        lambda a, i: talib.MFI(a["h"][i], a["l"][i], a["c"][i], a["v"][i], 14),
    ),
    "AROON(14)": (
        lambda: [ind.aroon_struct("high", "low", 14)],
        lambda a, i: talib.AROON(a["h"][i], a["l"][i], 14),
    ),
    "AROONOSC(14)": (
        lambda: [ind.aroon_osc("high", "low", 14)],
        lambda a, i: talib.AROONOSC(a["h"][i], a["l"][i], 14),
    ),
    "ATR(14)": (
        lambda: [ind.atr(period=14)],
        lambda a, i: talib.ATR(a["h"][i], a["l"][i], a["c"][i], 14),
    ),
    "NATR(14)": (
        lambda: [ind.natr(period=14)],
        lambda a, i: talib.NATR(a["h"][i], a["l"][i], a["c"][i], 14),
    ),
    "ADX(14)": (
        lambda: [ind.adx(period=14)],
        lambda a, i: talib.ADX(a["h"][i], a["l"][i], a["c"][i], 14),
    ),
    "OBV": (lambda: [ind.obv("close", "volume")], lambda a, i: talib.OBV(a["c"][i], a["v"][i])),
    "LINEARREG_SLOPE(20)": (
        lambda: [ind.linreg_slope("close", 20)],
        lambda a, i: talib.LINEARREG_SLOPE(a["c"][i], 20),
    ),
}


def build_frame() -> pl.DataFrame:
    """1-minute bars of TICKERS tickers over SESSIONS sessions, with session and minute_of_session."""
    market = SimulatedMarket(SimulationConfig(n_tickers=TICKERS))
    days = nyse_calendar().sessions_between(date(2024, 1, 2), date(2024, 12, 31))[:SESSIONS]
    frames = [
        market.day(d).bars.with_columns(
            session=pl.lit(d, dtype=pl.Date),
            minute_of_session=pl.int_range(pl.len(), dtype=pl.Int32).over("ticker"),
        )
        for d in days
    ]
    frame = pl.concat(frames).sort("ticker", "ts")
    # as the feature pipeline evaluates indicators: the ticker an Enum of the sorted tickers
    return frame.with_columns(pl.col("ticker").cast(pl.Enum(frame["ticker"].unique().sort())))


def split(frame: pl.DataFrame) -> Arrays:
    """Each ticker's float64 arrays (high, low, close, volume), in frame order."""
    sizes = frame.group_by("ticker", maintain_order=True).len()["len"].to_numpy()
    bounds = np.cumsum(sizes)[:-1]
    return {
        key: np.split(frame[column].cast(pl.Float64).to_numpy(), bounds)
        for key, column in (("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"))
    }


def ours(frame: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """Our columns: the expressions selected, struct outputs unnested."""
    out = frame.select(exprs)
    structs = [c for c, dtype in out.schema.items() if isinstance(dtype, pl.Struct)]
    return out.unnest(structs) if structs else out


def talib_columns(run: Callable[[Arrays, int], object], arrays: Arrays) -> list[np.ndarray]:
    """TA-Lib over every ticker, each output concatenated into one column."""
    results = [run(arrays, i) for i in range(len(arrays["c"]))]
    if isinstance(results[0], tuple):
        return [np.concatenate([r[k] for r in results]) for k in range(len(results[0]))]
    return [np.concatenate(results)]


def best_of(*jobs: Callable[[], object]) -> list[float]:
    """Best wall time (s) of each job over REPEATS rounds, the jobs alternating within a round."""
    best = [float("inf")] * len(jobs)
    for _ in range(REPEATS):
        for k, job in enumerate(jobs):
            began = time.perf_counter()
            job()
            best[k] = min(best[k], time.perf_counter() - began)
    return best


def max_relative_difference(ours: pl.DataFrame, theirs: list[np.ndarray]) -> float:
    worst = 0.0
    for column, expected in zip(ours.columns, theirs, strict=True):
        actual = ours[column].cast(pl.Float64).to_numpy()
        if not np.array_equal(np.isnan(actual), np.isnan(expected)):
            return float("inf")  # warm-up rows differ
        valid = ~np.isnan(expected)
        diff = np.abs(actual[valid] - expected[valid]) / np.maximum(np.abs(expected[valid]), 1.0)
        worst = max(worst, float(diff.max(initial=0.0)))
    return worst


def main(only: list[str]) -> None:
    """Benchmark every indicator, or those whose name starts with one of ``only``."""
    cases = {n: c for n, c in CASES.items() if not only or any(n.startswith(o) for o in only)}
    began = time.perf_counter()
    frame = build_frame()
    arrays = split(frame)
    print(
        f"input: {frame.height:,} 1-minute bars, {TICKERS} tickers x {SESSIONS} sessions "
        f"(built in {time.perf_counter() - began:.1f}s); polars {pl.__version__}, "
        f"TA-Lib {talib.__ta_version__.decode().split()[0]}, {pl.thread_pool_size()} threads"
    )
    header = (
        f"{'indicator':<21}{'ours ms':>9}{'TA-Lib ms':>11}{'ours/TA-Lib':>13}"
        f"{'target':>8}{'':>3}{'status':<7}{'max rel diff':>13}"
    )
    print(header)
    print("-" * len(header))
    passed = 0
    for name, (ours_exprs, run) in cases.items():
        exprs = [e.alias(f"out{k}") for k, e in enumerate(ours_exprs())]
        ours_s, theirs_s = best_of(
            lambda exprs=exprs: ours(frame, exprs), lambda run=run: talib_columns(run, arrays)
        )
        error = max_relative_difference(ours(frame, exprs), talib_columns(run, arrays))
        ratio = ours_s / theirs_s
        status = "PASS" if ratio <= TARGET_RATIO else "MISS"
        passed += status == "PASS"
        print(
            f"{name:<21}{ours_s * 1e3:>9.1f}{theirs_s * 1e3:>11.1f}{ratio:>13.2f}"
            f"{TARGET_RATIO:>8.1f}{'':>3}{status:<7}{error:>13.1e}"
        )
    print("-" * len(header))
    print(f"{passed} of {len(cases)} indicators within {TARGET_RATIO}x TA-Lib")

    exprs = [f.expr().alias(f.column("1m")) for f in FEATURES]
    (seconds,) = best_of(lambda: frame.select(exprs))
    print(
        f"all {len(FEATURES)} momentum/trend/volatility/volume features together (1m): "
        f"{seconds:.2f}s, {frame.height / seconds / 1e6:.2f}M input rows/s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
