"""The time-window kernels behind the volume and options-flow features, against plain references.

``indicators.relative_to_time_of_day`` must equal x / the mean of x at the same
``minute_of_session`` over the ticker's previous 5 rows with that minute (a polars ``over``
reference), null with fewer than ``min_sessions`` of them or a mean <= 0; ``time_window_sum`` must
equal polars' ``rolling_sum_by`` per ticker over (ts - window, ts], exactly 0 when the window holds
no nonzero value. Both on several tickers at once, each ticker's values unchanged, bit for bit, by
the other tickers in the frame.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ats_assets.features import indicators as ind
from ats_assets.features import kernels

OPEN = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # 09:30 New York
MINUTE = timedelta(minutes=1)
TS = pl.Datetime("us", "UTC")


def _frame(rows: dict[str, list], value: str = "volume") -> pl.DataFrame:
    schema = {"ticker": pl.String, "ts": TS, "minute_of_session": pl.Int32, value: pl.Float64}
    return pl.DataFrame(rows, schema={k: v for k, v in schema.items() if k in rows})


def _bits(series: pl.Series) -> np.ndarray:
    return series.to_numpy().view(np.uint64)


# -- relative_to_time_of_day -------------------------------------------------------------------


def _sessions_frame(seed: int, sessions: dict[str, int], step: int) -> pl.DataFrame:
    """Bars every ``step`` minutes of a 390-minute session, 5% of them missing; ticker "A" trades
    nothing at minute 10 (a zero mean)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"ticker": [], "ts": [], "minute_of_session": [], "volume": []}
    for ticker, count in sessions.items():
        for day in range(count):
            for m in range(0, 390, step):
                if rng.random() < 0.05:
                    continue
                rows["ticker"].append(ticker)
                rows["ts"].append(OPEN + timedelta(days=day) + m * MINUTE)
                rows["minute_of_session"].append(m)
                volume = 0.0 if ticker == "A" and m == 10 else float(rng.integers(1, 5000))
                rows["volume"].append(volume)
    return _frame(rows).sort("ticker", "ts")


def _tod_reference(frame: pl.DataFrame, sessions: int, min_sessions: int) -> pl.Series:
    usual = (
        pl.col("volume")
        .shift(1)
        .rolling_mean(sessions, min_samples=min_sessions)
        .over("ticker", "minute_of_session")
    )
    return frame.select(pl.when(usual > 0).then(pl.col("volume") / usual)).to_series()


@pytest.mark.parametrize("step", [1, 5])
def test_relative_to_time_of_day_matches_reference_with_gaps_and_uneven_tickers(step: int) -> None:
    frame = _sessions_frame(7, {"A": 8, "B": 3, "C": 6}, step)
    assert frame["minute_of_session"].max() == (389 if step == 1 else 385)
    got = frame.select(ind.relative_to_time_of_day("volume", 5, 2)).to_series()
    expected = _tod_reference(frame, 5, 2)
    assert got.is_null().to_list() == expected.is_null().to_list()
    assert 0 < expected.null_count() < len(frame) // 2
    mask = expected.is_not_null().to_numpy()
    np.testing.assert_allclose(got.to_numpy()[mask], expected.to_numpy()[mask], rtol=1e-12)
    zero_minute = frame.select((pl.col("ticker") == "A") & (pl.col("minute_of_session") == 10))
    assert got.filter(zero_minute.to_series()).null_count() == zero_minute.to_series().sum()


def test_relative_to_time_of_day_uses_only_the_last_five_earlier_sessions() -> None:
    volumes = [1e6, 2e6, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    frame = _frame(
        {
            "ticker": ["A"] * 8,
            "ts": [OPEN + timedelta(days=d) for d in range(8)],
            "minute_of_session": [0] * 8,
            "volume": volumes,
        }
    )
    got = frame.select(ind.relative_to_time_of_day("volume", 5, 2)).to_series().to_list()
    expected = [None, None] + [
        volumes[i] / np.mean(volumes[max(0, i - 5) : i]) for i in range(2, 8)
    ]
    assert got[:2] == [None, None]
    np.testing.assert_allclose(got[2:], expected[2:], rtol=1e-12)
    assert got[7] == pytest.approx(2.0, rel=1e-12)  # 60 / mean(10, 20, 30, 40, 50): 1e6, 2e6 gone


@pytest.mark.parametrize("min_sessions", [1, 2, 3])
def test_relative_to_time_of_day_needs_min_sessions_earlier_rows_at_that_minute(
    min_sessions: int,
) -> None:
    # Minute 1 is missing from the first session: it has one earlier row fewer than minute 0.
    keys = [(d, m) for d in range(5) for m in (0, 1) if (d, m) != (0, 1)]
    frame = _frame(
        {
            "ticker": ["A"] * len(keys),
            "ts": [OPEN + timedelta(days=d) + m * MINUTE for d, m in keys],
            "minute_of_session": [m for _, m in keys],
            "volume": [100.0 + 10 * d + m for d, m in keys],
        }
    )
    got = frame.select(ind.relative_to_time_of_day("volume", 5, min_sessions)).to_series()
    first = {m: min_sessions + m for m in (0, 1)}  # first session with enough earlier rows
    for (day, m), value in zip(keys, got.to_list(), strict=True):
        assert (value is None) == (day < first[m]), (day, m, value)


@pytest.mark.parametrize(
    ("volumes", "last"),
    [([0.0, 0.0, 5.0], None), ([3.0, -3.0, 5.0], None), ([-1.0, -1.0, 4.0], None), ([0, 2, 3], 3)],
)
def test_relative_to_time_of_day_is_null_when_the_usual_value_is_not_positive(
    volumes: list[float], last: float | None
) -> None:
    frame = _frame(
        {
            "ticker": ["A"] * 3,
            "ts": [OPEN + timedelta(days=d) for d in range(3)],
            "minute_of_session": [0] * 3,
            "volume": [float(v) for v in volumes],
        }
    )
    got = frame.select(ind.relative_to_time_of_day("volume", 5, 2)).to_series().to_list()
    assert got == [None, None, last]


def test_relative_to_time_of_day_is_independent_of_other_tickers_bit_for_bit() -> None:
    a = _sessions_frame(11, {"A": 8}, 1).with_columns(pl.col("volume") * 1e9)
    b = _sessions_frame(12, {"B": 6}, 5)
    both = pl.concat([a, b]).sort("ticker", "ts")
    expr = ind.relative_to_time_of_day("volume", 5, 2)
    alone = b.select(expr).to_series()
    together = both.select(expr).to_series().slice(len(a))
    assert alone.null_count() < len(b)
    assert np.array_equal(_bits(alone), _bits(together))


# -- time_window_sum ---------------------------------------------------------------------------


def _irregular_frame(seed: int, tickers: dict[str, float], rows: int = 1000) -> pl.DataFrame:
    """Positive values of several magnitudes (``tickers``: the scale), 20% zeros and 10% nulls,
    at irregular times: mostly minutes apart, now and then a gap of hours (beyond the window)."""
    rng = np.random.default_rng(seed)
    parts = []
    for ticker, scale in tickers.items():
        steps = rng.exponential(3 * 60e6, rows).astype(np.int64) + 1
        gaps = rng.random(rows) < 0.02
        steps[gaps] += rng.integers(2 * 3600 * 10**6, 20 * 3600 * 10**6, gaps.sum())
        x = scale * rng.lognormal(0.0, 1.0, rows)
        x[rng.random(rows) < 0.2] = 0.0
        ts = pl.Series(np.datetime64(OPEN.replace(tzinfo=None), "us") + np.cumsum(steps))
        part = pl.DataFrame({"ticker": [ticker] * rows, "ts": ts, "x": x})
        parts.append(part.with_columns(pl.col("ts").dt.replace_time_zone("UTC")))
    frame = pl.concat(parts)
    nulls = pl.Series(np.random.default_rng(seed + 1).random(len(frame)) < 0.1)
    return frame.with_columns(x=pl.when(~nulls).then(pl.col("x"))).sort("ticker", "ts")


def _window_reference(frame: pl.DataFrame, column: str) -> pl.Series:
    rolling = pl.col(column).rolling_sum_by("ts", window_size="60m", closed="right")
    return frame.select(rolling.over("ticker")).to_series()


def test_time_window_sum_matches_rolling_sum_by_across_refreshes() -> None:
    frame = _irregular_frame(5, {"A": 1.0, "B": 1e6, "C": 1e-3})
    assert frame["x"].null_count() > 0
    assert len(frame) // 3 > 6 * kernels.REFRESH
    got = frame.select(ind.time_window_sum(pl.col("x"), timedelta(minutes=60))).to_series()
    filled = frame.with_columns(pl.col("x").fill_null(0.0))
    filled = filled.with_columns(nonzero=(pl.col("x") != 0).cast(pl.Int64))
    expected = _window_reference(filled, "x").to_numpy()
    empty = _window_reference(filled, "nonzero")  # an exact count of the window's nonzero values
    assert got.null_count() == 0
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-12)
    assert ((got == 0.0).to_numpy() == (empty == 0).to_numpy()).all()
    assert 0 < (got == 0.0).sum() < len(frame)


def test_time_window_sum_window_is_open_on_the_left() -> None:
    frame = pl.DataFrame(
        {"ticker": ["A"] * 4, "ts": [OPEN + m * MINUTE for m in (0, 30, 60, 121)]},
        schema={"ticker": pl.String, "ts": TS},
    ).with_columns(x=pl.Series([1.0, 2.0, 4.0, 8.0]))
    got = frame.select(ind.time_window_sum("x", timedelta(minutes=60))).to_series()
    assert got.to_list() == [1.0, 3.0, 6.0, 8.0]


def test_time_window_sum_is_exactly_zero_once_large_values_leave() -> None:
    values = [1e9, 0.1, 3.7e6, 0.3] + [0.0] * 150
    residue = 0.0
    for v in values[:4]:
        residue += v
    for v in values[:4]:
        residue -= v
    assert residue != 0.0  # a plain running total would leave this behind
    frame = pl.DataFrame(
        {"ticker": ["A"] * len(values), "ts": [OPEN + i * MINUTE for i in range(len(values))]},
        schema={"ticker": pl.String, "ts": TS},
    ).with_columns(x=pl.Series([None if i % 7 == 6 else v for i, v in enumerate(values)]))
    got = frame.select(ind.time_window_sum("x", timedelta(minutes=60))).to_numpy().ravel()
    assert got[0] == 1e9
    assert got[3] == pytest.approx(1e9 + 0.1 + 3.7e6 + 0.3, rel=1e-15)
    assert got[60] == pytest.approx(0.1 + 3.7e6 + 0.3, rel=1e-12)  # 1e9 (minute 0) has left
    assert got[62] > 0.0  # only the 0.3 of minute 3 is left
    assert (got[63:] == 0.0).all()  # minute 63 on: the window holds only zeros and nulls
    assert not np.signbit(got[63:]).any()


def test_time_window_sum_is_independent_of_other_tickers_bit_for_bit() -> None:
    b = _irregular_frame(21, {"B": 1.0})
    a = _irregular_frame(22, {"A": 1e15}, rows=700)
    expr = ind.time_window_sum(pl.col("x"), timedelta(minutes=60))
    alone = b.select(expr).to_series()
    together = pl.concat([a, b]).sort("ticker", "ts").select(expr).to_series().slice(len(a))
    assert np.array_equal(_bits(alone), _bits(together))


def test_null_volumes_are_skipped_and_rows_without_a_minute_are_left_out() -> None:
    """A null volume keeps its place among the 5 earlier sessions but adds nothing to the mean
    (as the polars shift-and-sum it replaced did); a row with a null or negative minute gets null
    and is not remembered."""
    days = 6
    frame = _frame(
        {
            "ticker": ["X"] * days,
            "ts": [OPEN + timedelta(days=d) for d in range(days)],
            "minute_of_session": [0] * days,
            "volume": [10.0, None, 10.0, 10.0, 20.0, 10.0],
        }
    )
    got = frame.select(ind.relative_to_time_of_day("volume", 5, 2)).to_series().to_list()
    assert got == [None, None, None, 1.0, 2.0, 10.0 / 12.5]
    odd = frame.with_columns(minute_of_session=pl.Series([0, None, -1, 0, 0, 0], dtype=pl.Int32))
    got = odd.select(ind.relative_to_time_of_day("volume", 5, 2)).to_series().to_list()
    assert got == [None, None, None, None, 2.0, 10.0 / (40.0 / 3)]


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ind.time_window_sum("value", timedelta(0))


# -- window_mean / window_std ------------------------------------------------------------------


def _window_frame(seed: int, rows: int = 700) -> pl.DataFrame:
    """Three tickers of very different scales, each with a flat stretch (exact 0 deviation), a
    NaN and a null; long enough for several refreshes of the running sums."""
    rng = np.random.default_rng(seed)
    parts = []
    for ticker, scale in {"A": 1.0, "B": 1e6, "C": 1e-3}.items():
        x = scale * (100.0 + rng.normal(0.0, 1.0, rows))
        x[200:240] = x[199]  # flat for 41 rows
        x[400] = np.nan
        part = pl.DataFrame({"ticker": [ticker] * rows, "x": x}, nan_to_null=False)
        parts.append(part.with_columns(x=pl.when(pl.int_range(rows) != 500).then(pl.col("x"))))
    return pl.concat(parts)


def _rolling_reference(x: np.ndarray, period: int, lag: int, skip: int, ddof: int) -> np.ndarray:
    """Per-window NumPy mean / deviation of one ticker's values (null as NaN), NaN where the
    window is incomplete or holds a NaN."""
    mean, sd = np.full(len(x), np.nan), np.full(len(x), np.nan)
    for i in range(len(x)):
        end = i - lag
        start = end - period + 1
        if start < skip or end < 0:
            continue
        window = x[start : end + 1]
        if not np.isnan(window).any():
            mean[i], sd[i] = window.mean(), window.std(ddof=ddof)
    return np.stack([mean, sd])


@pytest.mark.parametrize(
    ("period", "lag", "skip", "ddof"), [(20, 0, 0, 0), (30, 1, 0, 1), (5, 0, 1, 1)]
)
def test_window_mean_and_std_match_numpy_per_ticker(period, lag, skip, ddof) -> None:
    frame = _window_frame(11)
    got = frame.select(ind.window_mean_std("x", period, ddof=ddof, lag=lag, skip=skip)).unnest("x")
    assert len(frame) > 6 * kernels.REFRESH
    for ticker, part in frame.with_columns(got).group_by("ticker", maintain_order=True):
        x = part["x"].fill_null(np.nan).to_numpy()
        expected = _rolling_reference(x, period, lag, skip, ddof)
        mean, sd = (part[c].fill_null(np.nan).to_numpy() for c in ("mean", "sd"))
        scale = np.nanmax(np.abs(x))
        np.testing.assert_allclose(mean, expected[0], rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(sd, expected[1], rtol=1e-7, atol=1e-10 * scale)
        flat = np.arange(len(x))[199 + period - 1 + lag : 240 + lag]  # windows inside the flat run
        assert (sd[flat] == 0.0).all() and (mean[flat] == x[199]).all(), ticker
        assert part["mean"].null_count() == np.isnan(expected[0]).sum()
    alone = _window_frame(11).filter(pl.col("ticker") == "B")
    by_itself = alone.select(ind.window_mean_std("x", period, ddof=ddof, lag=lag, skip=skip))
    together = frame.with_columns(got).filter(pl.col("ticker") == "B").select("mean", "sd")
    assert (
        _bits(by_itself.unnest("x")["mean"].fill_null(0.0))
        == _bits(together["mean"].fill_null(0.0))
    ).all()


def test_window_std_and_mean_alone_agree_with_the_pair() -> None:
    frame = _window_frame(12)
    pair = frame.select(ind.window_mean_std("x", 20, ddof=1)).unnest("x")
    mean = frame.select(ind.window_mean("x", 20)).to_series()
    std = frame.select(ind.window_std("x", 20, ddof=1)).to_series()
    assert mean.equals(pair["mean"], check_names=False)
    assert std.equals(pair["sd"], check_names=False)


def test_window_refuses_bad_offsets() -> None:
    with pytest.raises(ValueError, match="lag, skip"):
        ind.window_mean("x", 20, lag=-1)
    with pytest.raises(ValueError, match="ddof"):
        ind.window_mean_std("x", 1, ddof=1)
    with pytest.raises(ValueError, match="positive"):
        ind.window_mean("x", 0)


# -- session kernels ---------------------------------------------------------------------------


def _session_frame() -> pl.DataFrame:
    day1, day2 = datetime(2024, 3, 4).date(), datetime(2024, 3, 5).date()
    return pl.DataFrame(
        {
            "ticker": ["A", "A", "A", "B", "B", "B"],
            "session": [day1, day1, day2, day1, day2, day2],
            "open": [10.0, 10.5, 12.0, 50.0, 49.0, 48.0],
            "high": [11.0, 12.0, 12.5, 51.0, 50.0, 49.5],
            "low": [9.0, 10.0, 11.5, 49.0, 48.0, 47.0],
            "close": [10.5, 11.0, 12.2, 50.5, 48.5, 49.0],
            "vwap": [10.0, 11.0, 12.0, 50.0, 0.0, 48.0],
            "volume": [100.0, 300.0, 50.0, 10.0, 99.0, 30.0],
        }
    )


def test_session_kernels_restart_at_each_session_and_ticker() -> None:
    got = _session_frame().select(
        gap=ind.overnight_gap(),
        position=ind.session_range_position(),
        vwap=ind.session_vwap_distance(),
    )
    gaps = got["gap"].to_list()
    assert [g is None for g in gaps] == [True, True, False, True, False, False]
    assert gaps[2] == pytest.approx(12.0 / 11.0 - 1)  # A's second session: open 12 / close 11
    assert gaps[4] == gaps[5] == pytest.approx(49.0 / 50.5 - 1)  # carried through the session
    assert got["position"].to_list() == pytest.approx([0.75, 2 / 3, 0.7, 0.75, 0.25, 2 / 3])
    without_high = _session_frame().with_columns(
        high=pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("high"))
    )
    position = without_high.select(ind.session_range_position()).to_series().to_list()
    assert position[:3] == pytest.approx([0.75, 0.5, 0.7])  # no range for that bar: neutral
    # B's second session: the first bar has no vwap (no weight), the second weighs 30 at 48
    expected_vwap = [0.05, 11.0 * 400 / 4300 - 1, 12.2 / 12.0 - 1, 0.01, 0.0, 49.0 / 48.0 - 1]
    assert got["vwap"].to_list() == pytest.approx(expected_vwap)


def test_window_skips_an_infinite_value_only_while_it_is_inside() -> None:
    rng = np.random.default_rng(3)
    x = 100.0 + rng.normal(0.0, 1.0, 300)
    x[50] = np.inf  # a log of a zero price, say
    frame = pl.DataFrame({"ticker": ["A"] * 300, "x": x})
    got = frame.select(ind.window_mean_std("x", 20, ddof=1)).unnest("x")
    expected = _rolling_reference(np.where(np.isfinite(x), x, np.nan), 20, 0, 0, 1)
    assert got["mean"][50:70].null_count() == 20 and got["mean"][70:].null_count() == 0
    np.testing.assert_allclose(got["mean"].fill_null(np.nan).to_numpy(), expected[0], rtol=1e-12)
    np.testing.assert_allclose(got["sd"].fill_null(np.nan).to_numpy(), expected[1], rtol=1e-9)


def test_window_deviation_stays_exact_after_a_level_shift() -> None:
    # 50 zeros, then 1e9 + 0/1 alternating: far from the first window's reference, a small spread
    x = np.concatenate([np.zeros(50), 1e9 + np.arange(250) % 2])
    frame = pl.DataFrame({"ticker": ["A"] * 300, "x": x})
    got = frame.select(ind.window_mean_std("x", 20, ddof=1, lag=1)).unnest("x")
    expected = _rolling_reference(x, 20, 1, 0, 1)
    np.testing.assert_allclose(got["sd"].fill_null(np.nan).to_numpy(), expected[1], rtol=1e-9)
    bands = frame.select(ind.bbands_width("x", 20)).to_series().to_numpy()[80:]
    np.testing.assert_allclose(bands, 4 * 0.5 / (1e9 + 0.5), rtol=1e-6)
