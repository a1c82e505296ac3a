"""Price, pattern, microstructure and options-flow feature families: contract and hand checks."""

from __future__ import annotations

import importlib
import math
import re
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.features.definition import FAMILIES, TIMEFRAMES, Feature
from ats_assets.features.families import microstructure, options_flow, pattern, price, volume
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from tests.bars_reference import polars_resample

MODULES = {"price": price, "pattern": pattern, "microstructure": microstructure}
MODULES["options_flow"] = options_flow
FEATURES: tuple[Feature, ...] = tuple(f for m in MODULES.values() for f in m.FEATURES)
BY_NAME = {f.name: f for f in FEATURES}
DAYS = (date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6))
T0 = datetime(2024, 3, 5, 14, 30)  # 09:30 New York
MINUTE = timedelta(minutes=1)
SUMS = (
    "buy_volume",
    "sell_volume",
    "trades",
    "call_premium",
    "put_premium",
    "bullish_premium",
    "bearish_premium",
    "net_sweep_count",
    "sweep_count",
    "flow_count",
)


# -- bar frames from the simulated market ------------------------------------------------------


def _minute_bars(market: SimulatedMarket, day: date) -> pl.DataFrame:
    """One session's 1-minute bar frame: bars + per-minute quote, trade and flow aggregates."""
    sim = market.day(day)
    minute = pl.col("ts").dt.truncate("1m")
    mid = (pl.col("bid") + pl.col("ask")) / 2
    quotes = sim.quotes.group_by("ticker", minute).agg(
        quoted_spread=(pl.col("ask") - pl.col("bid")).mean(),
        quoted_spread_bps=((pl.col("ask") - pl.col("bid")) / mid * 1e4).mean(),
        quote_imbalance=(
            (pl.col("bid_size") - pl.col("ask_size")) / (pl.col("bid_size") + pl.col("ask_size"))
        ).mean(),
        mid=mid.mean(),
    )
    side = pl.col("price") - pl.col("mid")
    trades = (
        sim.trades.with_columns(minute)
        .join(quotes.select("ticker", "ts", "mid"), on=["ticker", "ts"], how="left")
        .group_by("ticker", "ts")
        .agg(
            buy_volume=pl.col("size").filter(side > 0).sum(),
            sell_volume=pl.col("size").filter(side < 0).sum(),
            effective_spread_bps=(2 * side.abs() / pl.col("mid") * pl.col("size")).sum()
            / pl.col("size").sum()
            * 1e4,
            trades=pl.len().cast(pl.Float64),
        )
    )
    premium = pl.col("premium")
    flow = sim.options_flow.group_by("ticker", minute).agg(
        call_premium=premium.filter(pl.col("option_type") == "call").sum(),
        put_premium=premium.filter(pl.col("option_type") == "put").sum(),
        bullish_premium=premium.filter(pl.col("sentiment") == "bullish").sum(),
        bearish_premium=premium.filter(pl.col("sentiment") == "bearish").sum(),
        net_sweep_count=(
            (pl.col("execution") == "sweep").cast(pl.Float64)
            * pl.when(pl.col("sentiment") == "bullish").then(1.0).otherwise(-1.0)
        ).sum(),
        sweep_count=(pl.col("execution") == "sweep").sum().cast(pl.Float64),
        flow_count=pl.len().cast(pl.Float64),
    )
    return (
        sim.bars.join(quotes.drop("mid"), on=["ticker", "ts"], how="left")
        .join(trades, on=["ticker", "ts"], how="left")
        .join(flow, on=["ticker", "ts"], how="left")
        .with_columns(
            pl.col(SUMS).fill_null(0.0),
            session=pl.lit(day, dtype=pl.Date),
            minute_of_session=pl.int_range(pl.len()).over("ticker"),
        )
    )


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    market = SimulatedMarket(SimulationConfig(seed=3, n_tickers=3))
    minute = pl.concat([_minute_bars(market, d) for d in DAYS]).sort("ticker", "ts")
    return {"1m": minute, **{tf: polars_resample(minute, tf) for tf in TIMEFRAMES if tf != "1m"}}


def _evaluate(frame: pl.DataFrame, features=FEATURES, timeframe: str = "1m") -> pl.DataFrame:
    return frame.select(f.expr().alias(f.column(timeframe)) for f in features)


# -- tiny hand-made frames ---------------------------------------------------------------------

DEFAULTS = {
    "open": 100.0,
    "high": 101.0,
    "low": 99.0,
    "close": 100.0,
    "volume": 1000.0,
    "vwap": 100.0,
    "trade_count": 10.0,
    "quoted_spread": 0.02,
    "quoted_spread_bps": 2.0,
    "quote_imbalance": 0.0,
    "effective_spread_bps": 1.0,
    **dict.fromkeys(SUMS, 0.0),
}


def _bars(n: int, *, sessions: list[date] | None = None, ticker: str = "A", **columns):
    """``n`` 1-minute bars of one ticker with neutral defaults, overridden by ``columns``."""
    sessions = sessions or [DAYS[1]] * n
    ts, minute_of_session = [], []
    for i, s in enumerate(sessions):
        first = i == 0 or s != sessions[i - 1]
        k = 0 if first else minute_of_session[-1] + 1
        minute_of_session.append(k)
        ts.append(datetime.combine(s, T0.time()) + k * MINUTE)
    data = {
        "ticker": [ticker] * n,
        "session": sessions,
        "ts": ts,
        "minute_of_session": minute_of_session,
    }
    for name, default in DEFAULTS.items():
        value = columns.pop(name, default)
        data[name] = value if isinstance(value, list) else [value] * n
    assert not columns, f"unknown columns {sorted(columns)}"
    return pl.DataFrame(data).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC"), pl.col(list(DEFAULTS)).cast(pl.Float64)
    )


def _values(name: str, frame: pl.DataFrame) -> list:
    return frame.select(BY_NAME[name].expr()).to_series().to_list()


def _close(actual: list, expected: list) -> bool:
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected, strict=True):
        if (a is None) != (e is None) or (a is not None and not math.isclose(a, e, abs_tol=1e-12)):
            return False
    return True


# -- the catalogue -----------------------------------------------------------------------------


def test_every_feature_builds_and_evaluates_on_each_of_its_timeframes(frames):
    for timeframe, frame in frames.items():
        chosen = [f for f in FEATURES if timeframe in f.timeframes]
        out = _evaluate(frame, chosen, timeframe)
        assert out.height == frame.height
        assert all(dtype == pl.Float64 for dtype in out.dtypes), out.schema


def test_names_are_unique_across_these_and_the_other_families():
    names = [f.name for f in FEATURES]
    for family in FAMILIES:
        if family in MODULES:
            continue
        try:
            module = importlib.import_module(f"ats_assets.features.families.{family}")
        except ModuleNotFoundError:
            continue  # that family is not written yet
        names += [f.name for f in module.FEATURES]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_each_feature_is_well_formed():
    assert len(FEATURES) >= 16
    for family, module in MODULES.items():
        for f in module.FEATURES:
            assert f.family == family
            assert len(f.description) > 30, f.name
            assert f.timeframes and set(f.timeframes) <= set(TIMEFRAMES)
            assert f.warmup_bars >= 0
            assert re.fullmatch(r"[0-9a-f]{12}", f.version)
            assert re.fullmatch(r"[a-z][a-z0-9_]*", f.name)


def test_values_are_finite_after_each_features_warmup(frames):
    for timeframe in ("1m", "5m"):
        frame = frames[timeframe]
        chosen = [f for f in FEATURES if timeframe in f.timeframes]
        position = frame.select(pl.int_range(pl.len()).over("ticker")).to_series()
        out = _evaluate(frame, chosen, timeframe)
        for f in chosen:
            values = out[f.column(timeframe)].filter(position >= f.warmup_bars)
            assert values.len() > 0 or f.warmup_bars > position.max(), f.name
            assert values.null_count() == 0, f.name
            assert values.is_finite().all(), f.name


def test_features_of_one_ticker_never_see_another_tickers_rows(frames):
    minute = frames["1m"]
    last = minute["ticker"].max()
    alone = minute.filter(pl.col("ticker") == last).with_columns(ticker=pl.lit("ZZZZ"))
    # The tickers sorted before it are made extreme, so any leak across the boundary would show.
    loud = minute.filter(pl.col("ticker") != last).with_columns(
        (pl.col(c) * 1000.0).cast(minute.schema[c])
        for c in ("open", "high", "low", "close", "vwap", "volume", "trade_count", *SUMS)
    )
    together = pl.concat([loud, alone]).sort("ticker", "ts")
    mine = _evaluate(together).filter(together["ticker"] == "ZZZZ")
    assert_frame_equal(mine, _evaluate(alone))
    assert mine["log_return_1_1m"][0] is None
    assert mine["overnight_gap_1m"][0] is None


def test_no_feature_looks_ahead(frames):
    minute = frames["1m"]
    rng = np.random.default_rng(0)
    numeric = [c for c in minute.columns if c not in ("ticker", "session", "ts")]
    numeric.remove("minute_of_session")
    before = _evaluate(minute)
    cutoffs = [
        datetime(2024, 3, 4, 17, 0),  # mid first session
        datetime(2024, 3, 4, 20, 59),  # the first session's last bar
        datetime(2024, 3, 5, 14, 30),  # the second session's first bar
        datetime(2024, 3, 6, 16, 45),
    ]
    for cutoff in cutoffs:
        later = pl.col("ts") > pl.lit(cutoff).dt.replace_time_zone("UTC")
        factors = rng.uniform(0.3, 3.0, (minute.height, len(numeric)))
        changed = minute.with_columns(
            pl.when(later)
            .then(pl.col(c) * pl.Series(factors[:, k]) + 0.5)
            .otherwise(pl.col(c))
            .cast(minute.schema[c])
            .alias(c)
            for k, c in enumerate(numeric)
        )
        keep = ~minute.select(later).to_series()
        assert_frame_equal(_evaluate(changed).filter(keep), before.filter(keep))
        assert not _evaluate(changed).filter(~keep).equals(before.filter(~keep))


# -- price -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bars", [1, 5, 15])
def test_log_return_over_k_bars(bars):
    close = [100.0 * 1.01**i for i in range(20)]
    expected = [None] * bars + [math.log(close[i] / close[i - bars]) for i in range(bars, 20)]
    assert _close(_values(f"log_return_{bars}", _bars(20, close=close)), expected)


def test_overnight_gap_is_the_session_open_over_the_previous_close():
    frame = _bars(
        5,
        sessions=[DAYS[0], DAYS[0], DAYS[1], DAYS[1], DAYS[1]],
        open=[100.0, 101.0, 103.0, 104.0, 99.0],
        close=[101.0, 100.0, 104.0, 99.0, 98.0],
    )
    assert _close(_values("overnight_gap", frame), [None, None, 0.03, 0.03, 0.03])


def test_overnight_gap_on_daily_bars_is_the_open_over_the_previous_close():
    frame = _bars(3, sessions=list(DAYS), open=[50.0, 52.0, 49.0], close=[51.0, 48.0, 50.0])
    assert _close(_values("overnight_gap", frame), [None, 52 / 51 - 1, 49 / 48 - 1])


def test_session_vwap_distance_uses_the_sessions_cumulative_vwap():
    frame = _bars(
        4,
        sessions=[DAYS[0], DAYS[0], DAYS[0], DAYS[1]],
        vwap=[10.0, 11.0, 12.0, 20.0],
        volume=[100.0, 200.0, 100.0, 50.0],
        close=[10.5, 11.0, 12.1, 19.0],
    )
    session_vwap = [10.0, 3200 / 300, 4400 / 400, 20.0]  # restarts with the second session
    expected = [c / v - 1 for c, v in zip([10.5, 11.0, 12.1, 19.0], session_vwap, strict=True)]
    assert _close(_values("session_vwap_distance", frame), expected)
    assert _values("session_vwap_distance", _bars(2, volume=0.0)) == [0.0, 0.0]


def test_a_bar_without_a_finite_vwap_carries_no_weight():
    vwap = [float("nan"), 10.0, float("inf")] + [10.0] * 19
    frame = _bars(22, vwap=vwap, close=[10.5] * 22, volume=[100.0] * 22)
    assert _close(_values("session_vwap_distance", frame), [0.0] + [0.05] * 21)
    # the 20-bar VWAP: the window's bars that have one (19 of the 20 at rows 19-21)
    (vwap_distance,) = (f for f in volume.FEATURES if f.name == "vwap_distance_20")
    values = frame.select(vwap_distance.expr()).to_series().to_list()
    assert _close(values[18:], [None, 0.05, 0.05, 0.05])


def test_session_range_position_is_between_the_session_low_and_high():
    frame = _bars(
        4,
        sessions=[DAYS[0], DAYS[0], DAYS[0], DAYS[1]],
        high=[11.0, 12.0, 11.5, 10.0],
        low=[10.0, 10.5, 9.0, 10.0],
        close=[10.5, 12.0, 9.6, 10.0],
    )
    assert _close(_values("session_range_position", frame), [0.5, 1.0, 0.2, 0.5])


def test_session_open_distance_is_relative_to_the_sessions_first_open():
    frame = _bars(
        3,
        sessions=[DAYS[0], DAYS[0], DAYS[1]],
        open=[50.0, 60.0, 40.0],
        close=[51.0, 55.0, 42.0],
    )
    assert _close(_values("session_open_distance", frame), [0.02, 0.1, 0.05])


# -- patterns ----------------------------------------------------------------------------------


def test_doji_flags_a_small_body_in_a_nonzero_range():
    frame = _bars(
        3,
        open=[100.0, 100.0, 100.0],
        close=[100.2, 100.3, 100.0],
        high=[101.0, 101.0, 100.0],
        low=[99.0, 99.0, 100.0],
    )
    assert _values("doji", frame) == [1.0, 0.0, 0.0]


def test_engulfing_is_signed_by_the_engulfing_bar():
    frame = _bars(
        6,
        open=[101.0, 99.9, 99.0, 102.5, 100.0, 100.5],
        close=[100.0, 101.2, 102.0, 98.9, 100.5, 100.2],
        high=103.0,
        low=98.0,
    )
    # bullish engulfing at 1, rising-after-rising at 2, bearish at 3, plain at 4 and 5
    assert _values("engulfing", frame) == [0.0, 1.0, 0.0, -1.0, 0.0, 0.0]


def test_hammer_and_shooting_star_need_a_long_shadow_on_one_side_only():
    frame = _bars(
        3,
        open=[10.0, 9.2, 10.0],
        close=[10.2, 9.0, 10.1],
        high=[10.25, 10.0, 10.5],
        low=[9.0, 8.95, 9.5],
    )
    assert _values("hammer", frame) == [1.0, 0.0, 0.0]
    assert _values("shooting_star", frame) == [0.0, 1.0, 0.0]


def test_range_break_compares_with_the_previous_20_bars():
    close, high, low = [100.0] * 25, [101.0] * 25, [99.0] * 25
    close[3] = high[3] = 102.0  # above every earlier high, but without 20 bars of history
    close[22] = low[22] = 98.5  # below the lows of bars 2..21
    close[24] = high[24] = 101.5  # above the highs of bars 4..23 (bar 3 has left the window)
    expected = [0.0] * 25
    expected[22], expected[24] = -1.0, 1.0
    assert _values("range_break_20", _bars(25, close=close, high=high, low=low)) == expected


def test_inside_bar_is_strictly_contained_in_the_previous_range():
    frame = _bars(4, high=[102.0, 101.5, 101.5, 103.0], low=[98.0, 98.5, 98.5, 97.0])
    assert _values("inside_bar", frame) == [0.0, 1.0, 0.0, 0.0]


# -- microstructure ----------------------------------------------------------------------------


def test_quoted_spread_bps_from_a_known_quote_and_carried_over_empty_bars():
    bid, ask = 99.99, 100.01
    bps = (ask - bid) / ((ask + bid) / 2) * 1e4
    assert math.isclose(bps, 2.0, rel_tol=1e-9)
    frame = _bars(4, quoted_spread_bps=[None, bps, None, float("nan")])
    assert _close(_values("quoted_spread_bps", frame), [None, bps, bps, bps])


def test_effective_spread_bps_from_a_known_trade_and_carried_over_empty_bars():
    mid, price_ = 100.0, 100.01
    bps = 2 * abs(price_ - mid) / mid * 1e4  # 2 bps
    frame = _bars(3, effective_spread_bps=[bps, None, 3.0])
    assert _close(_values("effective_spread_bps", frame), [bps, bps, 3.0])


def test_quote_imbalance_is_neutral_without_quotes():
    frame = _bars(3, quote_imbalance=[0.25, None, -0.5])
    assert _values("quote_imbalance", frame) == [0.25, 0.0, -0.5]


def test_trade_imbalance_from_buy_and_sell_volume():
    frame = _bars(3, buy_volume=[300.0, 0.0, 0.0], sell_volume=[100.0, 0.0, 50.0])
    assert _values("trade_imbalance", frame) == [0.5, 0.0, -1.0]


def test_amihud_is_the_mean_absolute_return_per_dollar_over_20_bars():
    rng = np.random.default_rng(1)
    n = 25
    close = (100 * np.exp(rng.normal(0, 0.01, n))).tolist()
    volume = rng.uniform(500, 5000, n).tolist()
    volume[21] = 0.0  # skipped, not a zero or an infinity
    vwap = rng.uniform(99, 101, n).tolist()
    ratio = [
        abs(math.log(close[i] / 100.0)) / (vwap[i] * volume[i]) if volume[i] else None
        for i in range(n)
    ]
    expected = [None] * 19
    for i in range(19, n):
        window = [r for r in ratio[i - 19 : i + 1] if r is not None]
        expected.append(sum(window) / len(window) * 1e9)
    frame = _bars(n, close=close, volume=volume, vwap=vwap)
    actual = _values("amihud_illiquidity_20", frame)
    assert all(a is None for a in actual[:19])
    assert np.allclose(actual[19:], expected[19:], rtol=1e-12)


def test_trade_intensity_is_the_log_ratio_to_the_previous_20_bars():
    counts = [9.0] * 20 + [19.0, 9.0]
    actual = _values("trade_intensity_20", _bars(22, trade_count=counts))
    assert actual[:20] == [None] * 20
    assert math.isclose(actual[20], math.log(20 / 10))
    assert math.isclose(actual[21], math.log(10 / 10.5))


# -- options flow ------------------------------------------------------------------------------


def test_call_put_ratio_is_the_log_premium_ratio():
    frame = _bars(3, call_premium=[999.0, 0.0, 0.0], put_premium=[0.0, 0.0, 49.0])
    assert _close(_values("flow_call_put_ratio", frame), [math.log(1000), 0.0, math.log(1 / 50)])


def test_net_bullish_share_is_zero_without_flow():
    frame = _bars(3, bullish_premium=[300.0, 0.0, 0.0], bearish_premium=[100.0, 0.0, 10.0])
    assert _values("flow_net_bullish_share", frame) == [0.5, 0.0, -1.0]


@pytest.mark.parametrize(
    ("name", "column"), [("flow_sweeps_60min", "sweep_count"), ("flow_count_60min", "flow_count")]
)
def test_60_minute_counts_use_a_wall_clock_window(name, column):
    counts = [0.0] * 80
    counts[0], counts[30], counts[61] = 1.0, 2.0, 4.0
    actual = _values(name, _bars(80, **{column: counts}))
    assert actual[59] == 3.0  # bars opening at minutes 0..59
    assert actual[60] == 2.0  # minute 0 is now 60 minutes old
    assert actual[61] == 6.0
    assert actual[79] == 6.0
    # 5-minute bars: the window holds 12 of them
    five = _bars(20, **{column: 1.0}).with_columns(
        ts=pl.col("ts").first() + pl.duration(minutes=pl.int_range(20) * 5)
    )
    assert _values(name, five)[19] == 12.0
    # restarts with a new session: the previous session's bars are hours old
    restart = _bars(3, sessions=[DAYS[0], DAYS[0], DAYS[1]], **{column: 1.0})
    assert _values(name, restart) == [1.0, 2.0, 1.0]


def test_net_sweeps_count_bullish_minus_bearish_sweeps_in_the_window():
    net = [0.0] * 70
    net[0], net[10], net[40] = 2.0, -1.0, 1.0  # two bullish sweeps, one bearish, one bullish
    assert _values("flow_net_sweeps_30min", _bars(70, net_sweep_count=net))[29] == 1.0
    values = _values("flow_net_sweeps_30min", _bars(70, net_sweep_count=net))
    assert values[30] == -1.0  # minute 0 has left the 30-minute window
    assert values[39] == -1.0
    assert values[40] == 1.0  # minute 10 has left, minute 40 has come
    assert values[69] == 1.0
    assert _values("flow_net_sweeps_60min", _bars(70, net_sweep_count=net))[59] == 2.0


def test_net_premium_is_a_signed_log_of_the_windowed_dollars():
    bullish, bearish = [0.0] * 5, [0.0] * 5
    bullish[0], bearish[2] = 1000.0, 3000.0
    values = _values(
        "flow_net_premium_60min", _bars(5, bullish_premium=bullish, bearish_premium=bearish)
    )
    assert values[0] == pytest.approx(math.log1p(1000.0))
    assert values[2] == pytest.approx(-math.log1p(2000.0))


def test_premium_zscore_against_the_previous_30_bars():
    rng = np.random.default_rng(2)
    n = 40
    calls = np.where(rng.random(n) < 0.4, rng.uniform(1e3, 1e5, n), 0.0)
    puts = np.where(rng.random(n) < 0.3, rng.uniform(1e3, 1e5, n), 0.0)
    x = np.log1p(calls + puts)
    expected = [None] * 30 + [
        (x[i] - x[i - 30 : i].mean()) / max(x[i - 30 : i].std(ddof=1), 1.0) for i in range(30, n)
    ]
    frame = _bars(n, call_premium=calls.tolist(), put_premium=puts.tolist())
    actual = _values("flow_premium_zscore_30", frame)
    assert actual[:30] == expected[:30]
    assert np.allclose(actual[30:], expected[30:], rtol=1e-9)


def test_premium_zscore_is_finite_after_a_silent_window():
    calls = [0.0] * 30 + [math.e**10 - 1]
    actual = _values("flow_premium_zscore_30", _bars(31, call_premium=calls))
    assert math.isclose(actual[30], 10.0)  # std floored at one log unit
