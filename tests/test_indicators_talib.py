"""Technical indicators against TA-Lib, and the momentum / trend / volatility / volume families.

``ats_assets.features.indicators`` must equal TA-Lib (rtol 1e-6) from TA-Lib's first value on, with
nulls exactly where TA-Lib returns NaN: on GOOG's daily bars (one ticker) and on simulated 1-minute
bars of several tickers at once, TA-Lib being run on each ticker's rows alone. The families must
build, evaluate without gaps after their warm-up and never look ahead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import date

import numpy as np
import polars as pl
import pytest
import talib
from backtesting.test import GOOG
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features import indicators as ind
from ats_assets.features.definition import FAMILIES, TIMEFRAMES, Feature
from ats_assets.features.families import momentum, trend, volatility, volume
from ats_assets.features.frames import BAR_VALUES
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from tests.bars_reference import polars_resample

RTOL, ATOL = 1e-6, 1e-9
MODULES = {"momentum": momentum, "trend": trend, "volatility": volatility, "volume": volume}
FEATURES: tuple[Feature, ...] = tuple(f for m in MODULES.values() for f in m.FEATURES)

# name -> (our expressions, TA-Lib on one ticker's arrays (high, low, close, volume), lookback)
Case = tuple[Callable[[], list[pl.Expr]], Callable[..., list[np.ndarray]], int]
CASES: dict[str, Case] = {
    "SMA": (lambda: [ind.sma("close", 30)], lambda h, lo, c, v: [talib.SMA(c, 30)], 29),
    "EMA": (lambda: [ind.ema("close", 30)], lambda h, lo, c, v: [talib.EMA(c, 30)], 29),
    "RSI": (lambda: [ind.rsi("close", 14)], lambda h, lo, c, v: [talib.RSI(c, 14)], 14),
    "MACD": (
        lambda: list(ind.macd("close", 12, 26, 9)),
        lambda h, lo, c, v: list(talib.MACD(c, 12, 26, 9)),
        33,
    ),
    "BBANDS": (
        lambda: list(ind.bbands("close", 20, 2.0, 2.0)),
        lambda h, lo, c, v: list(talib.BBANDS(c, 20, 2.0, 2.0, 0)),
        19,
    ),
    "ROC": (lambda: [ind.roc("close", 10)], lambda h, lo, c, v: [talib.ROC(c, 10)], 10),
    "STOCH": (
        lambda: list(ind.stoch("high", "low", "close", 14, 3, 3)),
        lambda h, lo, c, v: list(talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)),
        17,
    ),
    "WILLR": (lambda: [ind.willr(period=14)], lambda h, lo, c, v: [talib.WILLR(h, lo, c, 14)], 13),
    "CCI": (lambda: [ind.cci(period=14)], lambda h, lo, c, v: [talib.CCI(h, lo, c, 14)], 13),
    "MFI": (lambda: [ind.mfi(period=14)], lambda h, lo, c, v: [talib.MFI(h, lo, c, v, 14)], 14),
    "AROON": (
        lambda: list(ind.aroon("high", "low", 14)),
        lambda h, lo, c, v: list(talib.AROON(h, lo, 14)),
        14,
    ),
    "AROONOSC": (
        lambda: [ind.aroon_osc("high", "low", 14)],
        lambda h, lo, c, v: [talib.AROONOSC(h, lo, 14)],
        14,
    ),
    "TRANGE": (lambda: [ind.trange()], lambda h, lo, c, v: [talib.TRANGE(h, lo, c)], 1),
    "ATR": (lambda: [ind.atr(period=14)], lambda h, lo, c, v: [talib.ATR(h, lo, c, 14)], 14),
    "NATR": (lambda: [ind.natr(period=14)], lambda h, lo, c, v: [talib.NATR(h, lo, c, 14)], 14),
    "ADX": (lambda: [ind.adx(period=14)], lambda h, lo, c, v: [talib.ADX(h, lo, c, 14)], 27),
    "OBV": (lambda: [ind.obv("close", "volume")], lambda h, lo, c, v: [talib.OBV(c, v)], 0),
    "LINEARREG_SLOPE": (
        lambda: [ind.linreg_slope(pl.col("close").log(), 20)],
        lambda h, lo, c, v: [talib.LINEARREG_SLOPE(np.log(c), 20)],
        19,
    ),
}
LOOKBACK_NAMES = {
    "SMA": ("sma", {"period": 30}),
    "EMA": ("ema", {"period": 30}),
    "RSI": ("rsi", {}),
    "MACD": ("macd", {}),
    "BBANDS": ("bbands", {}),
    "ROC": ("roc", {}),
    "STOCH": ("stoch", {}),
    "WILLR": ("willr", {}),
    "CCI": ("cci", {}),
    "MFI": ("mfi", {}),
    "AROON": ("aroon", {}),
    "AROONOSC": ("aroon_osc", {}),
    "TRANGE": ("trange", {}),
    "ATR": ("atr", {}),
    "NATR": ("natr", {}),
    "ADX": ("adx", {}),
    "OBV": ("obv", {}),
    "LINEARREG_SLOPE": ("linreg_slope", {"period": 20}),
}


# -- data ------------------------------------------------------------------------------------


def _goog() -> pl.DataFrame:
    g = GOOG.reset_index()
    return pl.DataFrame(
        {
            "ticker": ["GOOG"] * len(g),
            "open": g["Open"].to_numpy(np.float64),
            "high": g["High"].to_numpy(np.float64),
            "low": g["Low"].to_numpy(np.float64),
            "close": g["Close"].to_numpy(np.float64),
            "volume": g["Volume"].to_numpy(np.int64),
        }
    )


def _simulated(n_tickers: int, sessions: int, seed: int = 11) -> pl.DataFrame:
    """1-minute bar frames of consecutive sessions, with ``session`` and ``minute_of_session``."""
    market = SimulatedMarket(SimulationConfig(seed=seed, n_tickers=n_tickers))
    days = nyse_calendar().sessions_between(date(2024, 5, 1), date(2024, 6, 28))[:sessions]
    frames = [
        market.day(d).bars.with_columns(
            session=pl.lit(d, dtype=pl.Date),
            minute_of_session=pl.int_range(pl.len(), dtype=pl.Int32).over("ticker"),
        )
        for d in days
    ]
    return pl.concat(frames).sort("ticker", "ts")


@pytest.fixture(scope="module")
def goog() -> pl.DataFrame:
    return _goog()


@pytest.fixture(scope="module")
def minutes() -> pl.DataFrame:
    """Four tickers, three sessions of 1-minute bars (1,170 rows each)."""
    return _simulated(n_tickers=4, sessions=3)


def _arrays(frame: pl.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(frame[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close", "volume"))


def _ticker_slices(frame: pl.DataFrame) -> list[tuple[str, int, int]]:
    bounds = (
        frame.with_row_index("_row")
        .group_by("ticker", maintain_order=True)
        .agg(pl.col("_row").min().alias("start"), pl.len().alias("n"))
    )
    return [(t, s, n) for t, s, n in bounds.iter_rows()]


def _assert_matches_talib(frame: pl.DataFrame, name: str) -> None:
    ours_f, theirs_f, lookback = CASES[name]
    ours = frame.select(e.alias(f"out{i}") for i, e in enumerate(ours_f()))
    for ticker, start, n in _ticker_slices(frame):
        theirs = theirs_f(*_arrays(frame.slice(start, n)))
        assert len(theirs) == ours.width
        for i, expected in enumerate(theirs):
            actual = ours[f"out{i}"].slice(start, n).cast(pl.Float64).to_numpy()
            where = f"{name}[{i}] {ticker}"
            # Nulls (NaN here) exactly where TA-Lib has none yet: its lookback.
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=where)
            assert np.isnan(expected[:lookback]).all() and not np.isnan(expected[lookback:]).any()
            valid = ~np.isnan(expected)
            np.testing.assert_allclose(
                actual[valid], expected[valid], rtol=RTOL, atol=ATOL, err_msg=where
            )


# -- equality with TA-Lib ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_equals_talib_on_goog_daily_bars(goog, name):
    _assert_matches_talib(goog, name)


@pytest.mark.parametrize("name", CASES)
def test_equals_talib_per_ticker_on_simulated_minutes_of_several_tickers(minutes, name):
    assert minutes["ticker"].n_unique() == 4
    _assert_matches_talib(minutes, name)


@pytest.mark.parametrize("name", CASES)
def test_lookback_is_talibs(name):
    indicator, params = LOOKBACK_NAMES[name]
    assert ind.lookback(indicator, **params) == CASES[name][2]


@pytest.mark.parametrize("name", CASES)
def test_second_ticker_does_not_use_the_first_tickers_rows(goog, name):
    """Ticker B after ticker A: B's values are those of B alone, bit for bit, whatever A holds."""
    b = goog.head(300).with_columns(ticker=pl.lit("B"))
    a_low = goog.slice(1000, 80).with_columns(ticker=pl.lit("A"))
    # A different first ticker: 100x the prices, other volumes, a flat stretch at the end.
    a_high = a_low.with_columns(
        pl.col("open", "high", "low", "close") * 100.0, pl.col("volume") * 7
    ).with_columns(
        pl.when(pl.int_range(pl.len()) >= 60).then(pl.col(c).last()).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )
    exprs = lambda: [e.alias(f"out{i}") for i, e in enumerate(CASES[name][0]())]  # noqa: E731
    alone = b.select(exprs())
    for first in (a_low, a_high):
        together = pl.concat([first, b]).select(exprs()).slice(first.height)
        for column in alone.columns:
            x, y = alone[column].to_numpy(), together[column].to_numpy()
            np.testing.assert_array_equal(y, x, err_msg=name)
    _assert_matches_talib(pl.concat([a_high, b]), name)


def test_a_single_row_ticker_and_a_ticker_shorter_than_the_lookback(goog):
    frame = pl.concat(
        [
            goog.slice(0, 1).with_columns(ticker=pl.lit("A")),
            goog.slice(10, 12).with_columns(ticker=pl.lit("B")),
            goog.slice(100, 60).with_columns(ticker=pl.lit("C")),
        ]
    )
    for name in CASES:
        _assert_matches_talib(frame, name)


@pytest.mark.parametrize("period", [2, 3, 5, 14, 30])
def test_window_extremes_across_blocks_of_every_ticker_length(goog, period):
    # %R and %K take a window's extremes from blocks of ``period`` rows: tickers of every length
    # around the block size and its multiples, each equal to TA-Lib run on it alone
    lengths = [1, period - 1, period, period + 1, 2 * period - 1, 2 * period, 2 * period + 3, 97]
    offsets = np.cumsum([0, *lengths])
    frame = pl.concat(
        goog.slice(int(o) % 2000, n).with_columns(ticker=pl.lit(f"T{k:02d}"))
        for k, (o, n) in enumerate(zip(offsets, lengths, strict=False))
        if n > 0
    )
    ours = frame.select(
        ind.willr(period=period).alias("willr"), ind.stoch_struct(fastk_period=period).alias("k")
    ).unnest("k")
    for ticker, start, n in _ticker_slices(frame):
        h, low, c, _ = _arrays(frame.slice(start, n))
        expected = {"willr": talib.WILLR(h, low, c, period), "k": talib.STOCH(h, low, c, period)[0]}
        for column, values in expected.items():
            actual = ours[column].slice(start, n).cast(pl.Float64).to_numpy()
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(values), err_msg=ticker)
            np.testing.assert_allclose(actual, values, rtol=RTOL, atol=ATOL, err_msg=ticker)


@pytest.mark.parametrize("dtype", ["categorical", "enum"])
def test_a_categorical_ticker_gives_the_same_values_bit_for_bit(minutes, dtype):
    # the pipeline's frames carry the ticker as an Enum, whose codes the kernels take as segments
    categories = minutes["ticker"].unique().sort()
    cast = pl.Categorical() if dtype == "categorical" else pl.Enum(categories)
    coded = minutes.with_columns(pl.col("ticker").cast(cast))
    for name, (exprs, _, _) in CASES.items():
        expected = minutes.select(e.alias(f"{name}{i}") for i, e in enumerate(exprs()))
        actual = coded.select(e.alias(f"{name}{i}") for i, e in enumerate(exprs()))
        assert_frame_equal(actual, expected)


def test_struct_variants_give_the_tuple_outputs(minutes):
    pairs = [
        (ind.macd_struct(), ind.macd(), ("line", "signal", "hist")),
        (ind.bbands_struct(), ind.bbands(), ("upper", "middle", "lower")),
        (ind.stoch_struct(), ind.stoch(), ("k", "d")),
        (ind.aroon_struct(), ind.aroon(), ("down", "up")),
    ]
    for struct, outputs, names in pairs:
        together = minutes.select(struct.alias("s")).unnest("s")
        assert together.columns == list(names)
        for name, expr in zip(names, outputs, strict=True):
            alone = minutes.select(expr.alias(name))
            np.testing.assert_array_equal(together[name].to_numpy(), alone[name].to_numpy())


def test_obv_starts_each_ticker_at_its_first_volume(minutes):
    obv = minutes.select(ind.obv("close", "volume")).to_series()
    for _, start, _ in _ticker_slices(minutes):
        assert obv[start] == minutes["volume"][start]


def test_flat_and_tiny_prices_follow_talibs_zero_conventions():
    """Flat windows (zero range, no gains, no money flow) and an instrument quoted near 1e-6."""
    rng = np.random.default_rng(5)
    n = 200
    flat = np.round(100 + np.cumsum(rng.choice([-0.01, 0.0, 0.0, 0.01], n)), 2)
    flat[:40] = 100.0
    flat[120:160] = flat[120]
    tiny = 1e-6 * (1 + 0.01 * np.cumsum(rng.standard_normal(n)))
    tiny[60:100] = tiny[60]
    residue = np.full(n, 0.3)
    residue[::3] = 0.1 + 0.2  # 0.30000000000000004
    frames = []
    for ticker, close, spread in (
        ("FLAT", flat, 0.01),
        ("TINY", tiny, 1e-9),
        ("RES", residue, 0.1),
    ):
        frames.append(
            pl.DataFrame(
                {
                    "ticker": [ticker] * n,
                    "open": close,
                    "high": close + spread * rng.integers(0, 2, n),
                    "low": close - spread * rng.integers(0, 2, n),
                    "close": close,
                    "volume": rng.integers(0, 3, n) * 100,
                }
            )
        )
    frame = pl.concat(frames)
    for name in CASES:
        _assert_matches_talib(frame, name)


def test_a_window_without_change_has_exactly_zero_spread_and_flow_after_a_long_history():
    """Running window totals (Bollinger, MFI) carry rounding residue from the rows that left the
    window; a window without a price change must still give a deviation of exactly 0 (bands on
    the price, %B 0.5, width 0) and a window without money flow an MFI of exactly 0."""
    rng = np.random.default_rng(9)
    n = 700  # several refreshes of the running totals, and a flat stretch between two of them
    close = 100 + np.cumsum(rng.standard_normal(n)) * 0.37
    close[500:560] = close[500]
    volume = rng.integers(1_000, 9_000_000, n)
    frame = pl.DataFrame(
        {
            "ticker": ["X"] * n,
            "open": close,
            "high": close + 0.01 * (np.arange(n) < 500),
            "low": close - 0.01 * (np.arange(n) < 500),
            "close": close,
            "volume": volume,
        }
    )
    out = frame.select(
        ind.bbands_struct("close", 20).alias("bands"),
        ind.bbands_percent_b("close", 20).alias("pct"),
        ind.bbands_width("close", 20).alias("width"),
        ind.mfi(period=14).alias("mfi"),
    ).unnest("bands")
    flat = out.slice(519, 41)  # windows of 20 inside rows 500..559
    assert (flat["upper"] == close[500]).all() and (flat["lower"] == close[500]).all()
    assert (flat["pct"] == 0.5).all() and (flat["width"] == 0.0).all()
    assert (out.slice(514, 46)["mfi"] == 0.0).all()  # 14 bars without a move of the price
    assert (out.slice(519, 41)["middle"] == close[500]).all()
    _assert_matches_talib(frame, "BBANDS")
    _assert_matches_talib(frame, "MFI")


def test_a_null_or_nan_input_is_refused_with_the_indicators_name(goog):
    """The kernels take no missing values (TA-Lib knows none): a null, NaN or infinite close is an
    error naming the indicator, never a value computed from it."""
    for bad in (None, float("nan"), float("inf")):
        frame = goog.head(100).with_columns(
            close=pl.when(pl.int_range(pl.len()) == 50).then(bad).otherwise(pl.col("close"))
        )
        for name in ("RSI", "ADX", "MFI", "LINEARREG_SLOPE", "BBANDS", "EMA"):
            with pytest.raises(Exception, match="holds nulls, NaN or infinite values"):
                frame.select(CASES[name][0]())


@pytest.mark.parametrize("period", [0, -3])
def test_a_period_below_one_is_refused_when_the_expression_is_built(period):
    for build in (ind.sma, ind.ema, ind.rsi, ind.roc, ind.linreg_slope):
        with pytest.raises(ValueError, match="must be positive"):
            build("close", period)
    with pytest.raises(ValueError, match="must be positive"):
        ind.willr(period=period)


def test_warm_up_loads_every_kernel():
    from numba.core.registry import CPUDispatcher

    from ats_assets.features import kernels

    assert ind.warm_up() > 0
    public = {
        name: f
        for name, f in vars(kernels).items()
        if isinstance(f, CPUDispatcher) and not name.startswith("_") and name != "finite"
    }
    assert len(public) >= 18  # kernels the expressions call (helpers such as _bounds aside)
    # every kernel an expression can call has its compiled signature in this process
    assert not [name for name, f in public.items() if not f.signatures], "not warmed"


# -- the families -----------------------------------------------------------------------------


def test_family_modules_export_their_features():
    for family, module in MODULES.items():
        assert module.FEATURES, family
        assert all(isinstance(f, Feature) and f.family == family for f in module.FEATURES)
    assert 22 <= len(FEATURES) <= 30


def test_features_build_with_unique_names_and_descriptions():
    names = [f.name for f in FEATURES]
    assert len(set(names)) == len(names)
    others = []
    for family in FAMILIES:
        if family in MODULES:
            continue
        try:
            module = importlib.import_module(f"ats_assets.features.families.{family}")
        except ImportError:
            continue
        others += [f.name for f in module.FEATURES]
    assert not set(names) & set(others)
    for f in FEATURES:
        assert isinstance(f.expr(), pl.Expr), f.name
        assert len(f.description) > 40, f.name
        assert f.timeframes and set(f.timeframes) <= set(TIMEFRAMES), f.name
        assert f.warmup_bars >= 0, f.name
        assert f.params.get("impl") == ind.VERSION, f.name  # versions follow the indicators
        assert len(f.version) == 12


@pytest.fixture(scope="module")
def feature_values(minutes) -> pl.DataFrame:
    return minutes.select(f.expr().alias(f.name) for f in FEATURES)


@pytest.mark.parametrize("family", MODULES)
def test_family_evaluates_without_gaps_after_warmup(minutes, feature_values, family):
    """Three simulated sessions of 1-minute bars: finite values from each ticker's warm-up on."""
    row = minutes.select(ind.row_in_ticker()).to_series().to_numpy()
    for f in MODULES[family].FEATURES:
        values = feature_values[f.name]
        assert values.dtype == pl.Float64, f.name
        array = values.to_numpy()
        after = row >= f.warmup_bars
        assert after.any(), f.name
        assert np.isfinite(array[after]).all(), f"{f.name}: gaps after its warm-up"
        assert np.isnan(array[row < f.warmup_bars]).all(), f"{f.name}: a value during warm-up"


def _resample(minute: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Coarser bars by the shared reference; these bars have no quote, trade or flow columns,
    which it then aggregates as missing (null)."""
    absent = [c for c in BAR_VALUES if c not in minute.columns]
    return polars_resample(
        minute.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in absent), timeframe
    )


@pytest.mark.parametrize("timeframe", [tf for tf in TIMEFRAMES if tf != "1m"])
def test_features_evaluate_on_their_coarser_timeframes(minutes, timeframe):
    bars = _resample(minutes, timeframe)
    chosen = [f for f in FEATURES if timeframe in f.timeframes]
    out = bars.select(f.expr().alias(f.column(timeframe)) for f in chosen)
    assert out.height == bars.height
    assert all(dtype == pl.Float64 for dtype in out.dtypes)
    finite = out.select(pl.all().is_finite().any())
    for f in chosen:  # each has values somewhere (1d: three sessions only, all in warm-up)
        if f.warmup_bars < bars.group_by("ticker").len()["len"].min():
            assert finite[f.column(timeframe)].item(), (f.name, timeframe)


def test_no_look_ahead(minutes):
    """Changing every bar after row t of one ticker leaves every value at rows <= t unchanged."""
    target = minutes["ticker"].unique().sort()[1]
    rows = minutes.with_row_index("_row").filter(pl.col("ticker") == target)["_row"]
    cut = int(rows[0]) + 800  # inside the third session (relative volume has values)
    rng = np.random.default_rng(3)
    factor = pl.Series(rng.uniform(0.7, 1.4, minutes.height))
    after = (pl.int_range(pl.len()) > cut) & (pl.col("ticker") == target)
    altered = minutes.with_columns(
        *[
            pl.when(after).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close", "vwap")
        ],
        pl.when(after)
        .then((pl.col("volume") * factor * 3).round().cast(pl.Int64))
        .otherwise(pl.col("volume"))
        .alias("volume"),
    )
    assert not altered.slice(cut + 1, 5).equals(minutes.slice(cut + 1, 5))
    exprs = [f.expr().alias(f.name) for f in FEATURES]
    before, changed = minutes.select(exprs), altered.select(exprs)
    keep = (pl.int_range(pl.len()) <= cut) | (minutes["ticker"] != target).to_frame().to_series()
    keep_mask = minutes.select(keep).to_series().to_numpy()
    for f in FEATURES:
        x = before[f.name].to_numpy()[keep_mask]
        y = changed[f.name].to_numpy()[keep_mask]
        np.testing.assert_array_equal(x, y, err_msg=f.name)
    # and the change is visible after the cut for the price-based features
    assert not np.array_equal(
        before["rsi_14"].to_numpy()[cut + 1 : cut + 50],
        changed["rsi_14"].to_numpy()[cut + 1 : cut + 50],
    )
