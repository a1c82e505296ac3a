"""The feature pipeline: no look-ahead on any timeframe, day boundaries, the registry."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features import pipeline
from ats_assets.features.definition import FAMILIES, TIMEFRAMES, Feature
from ats_assets.features.frames import (
    BAR_VALUES,
    QUOTE_MEANS,
    minute_frame,
    resample,
)
from ats_assets.features.pipeline import (
    MINUTE_LOOKBACK_SESSIONS,
    _last_completed,
    compute_day,
    compute_days,
    minute_lookback,
)
from ats_assets.features.registry import catalogue, catalogue_version, registry_frame
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from tests.bars_reference import polars_resample

NY = ZoneInfo("America/New_York")
TICKERS = 6


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SimulationConfig(n_tickers=TICKERS))


def raw(market: SimulatedMarket, days: list[date]) -> dict[str, pl.DataFrame]:
    return {
        kind: pl.concat(
            [getattr(market.day(d), kind).with_columns(session=pl.lit(d)) for d in days]
        )
        for kind in ("bars", "quotes", "trades", "options_flow")
    }


def features_for(data: dict[str, pl.DataFrame], days: list[date]) -> pl.DataFrame:
    minute = minute_frame(data["bars"], data["quotes"], data["trades"], data["options_flow"])
    return compute_days(minute, resample(minute, "1d"), days, catalogue())


def test_the_registry_lists_at_least_80_features_in_eight_families_and_five_timeframes():
    registry = registry_frame()
    assert len(registry) >= 80
    assert set(registry["family"]) == set(FAMILIES)
    assert set(registry["timeframe"]) == set(TIMEFRAMES)
    assert registry["column"].is_unique().all()
    assert registry.select(pl.col("description").str.len_chars().min()).item() > 0


def test_changing_a_definition_changes_its_version_and_the_catalogue_version():
    feature = catalogue()[0]
    changed = replace(feature, params={**feature.params, "_probe": 1})
    assert changed.version != feature.version
    assert catalogue_version((changed, *catalogue()[1:])) != catalogue_version()


def test_the_same_definition_keeps_its_version():
    rebuilt = [
        Feature(f.name, f.family, f.build, dict(f.params), f.description, f.timeframes)
        for f in catalogue()
    ]
    assert [f.version for f in rebuilt] == [f.version for f in catalogue()]


def test_every_feature_column_is_produced(market):
    days = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 6))
    table = features_for(raw(market, days), days[-1:])
    assert set(registry_frame()["column"]) <= set(table.columns)
    assert len(table) == TICKERS * 390


def test_altering_every_bar_after_t_leaves_every_feature_at_t_unchanged(market):
    days = nyse_calendar().sessions_between(date(2024, 3, 1), date(2024, 3, 6))
    day = days[-1]
    cutoff = datetime(day.year, day.month, day.day, 11, 4, tzinfo=NY).astimezone(
        UTC
    )  # end of a 5m bucket
    data = raw(market, days)
    after = pl.col("ts") > cutoff  # bars are labelled by their open
    # quotes, trades and alerts inside the cutoff's own minute belong to that bar: keep them
    later = pl.col("ts") >= cutoff + timedelta(minutes=1)
    altered = {
        "bars": data["bars"].with_columns(
            [
                pl.when(after).then(pl.col(c) * 1.7).otherwise(pl.col(c))
                for c in ("open", "high", "low", "close", "vwap")
            ]
            + [pl.when(after).then(pl.col("volume") * 5).otherwise(pl.col("volume"))]
        ),
        "quotes": data["quotes"].with_columns(
            [pl.when(later).then(pl.col(c) * 1.7).otherwise(pl.col(c)) for c in ("bid", "ask")]
        ),
        "trades": data["trades"].with_columns(
            pl.when(later).then(pl.col("size") * 9).otherwise(pl.col("size"))
        ),
        "options_flow": data["options_flow"].with_columns(
            pl.when(later).then(pl.col("premium") * 50).otherwise(pl.col("premium"))
        ),
    }
    before = features_for(data, [day]).filter(pl.col("ts") <= cutoff)
    after_change = features_for(altered, [day]).filter(pl.col("ts") <= cutoff)
    assert len(before) == TICKERS * 95  # 09:30 .. 11:04 New York, inclusive
    assert_frame_equal(before, after_change)
    # and the alteration did change later rows, so the comparison above could fail
    rest = features_for(altered, [day]).filter(pl.col("ts") > cutoff + timedelta(minutes=70))
    assert not rest.equals(
        features_for(data, [day]).filter(pl.col("ts") > cutoff + timedelta(minutes=70))
    )


def test_features_computed_from_the_day_so_far_equal_the_whole_days(market):
    """What live trading computes at 11:07 (no bar, quote, trade or alert after it exists yet,
    and the 15m and 1h bars in progress are partial) equals the whole day's features there."""
    days = nyse_calendar().sessions_between(date(2024, 3, 1), date(2024, 3, 6))
    day = days[-1]
    cutoff = datetime(day.year, day.month, day.day, 11, 7, tzinfo=NY).astimezone(UTC)
    data = raw(market, days)
    so_far = {
        kind: frame.filter(pl.col("ts") < cutoff + timedelta(minutes=1))
        for kind, frame in data.items()
    }
    whole = features_for(data, [day]).filter(pl.col("ts") <= cutoff)
    live = features_for(so_far, [day])
    assert live["ts"].max() == cutoff and len(live) == len(whole) == TICKERS * 98
    assert_frame_equal(live, whole)


def test_a_day_is_identical_alone_and_inside_a_30_day_backfill(market):
    calendar = nyse_calendar()
    days = calendar.sessions_between(date(2024, 2, 1), date(2024, 3, 28))
    backfill = days[-30:]
    data = raw(market, days)
    minute = minute_frame(data["bars"], data["quotes"], data["trades"], data["options_flow"])
    daily = resample(minute, "1d")
    together = compute_days(minute, daily, backfill, catalogue())
    day = backfill[17]
    alone = compute_day(minute, daily, day, catalogue())
    assert_frame_equal(alone, together.filter(pl.col("session") == day))


def test_blocks_computed_at_once_give_the_frame_of_one_at_a_time(market, monkeypatch):
    days = nyse_calendar().sessions_between(date(2024, 2, 1), date(2024, 3, 1))
    data = raw(market, days)
    requested = days[-12:]
    assert len({pipeline.block_start(d) for d in requested}) >= 3
    together = features_for(data, requested)  # BLOCKS_AT_ONCE blocks in threads
    monkeypatch.setattr(pipeline, "BLOCKS_AT_ONCE", 1)
    assert_frame_equal(together, features_for(data, requested))  # rows in block order, same bits


def test_each_minute_feature_gets_the_history_its_warm_up_needs(market, monkeypatch):
    lookback = {f.name: minute_lookback(f) for f in catalogue() if "1m" in f.timeframes}
    assert lookback["relative_volume_tod_5"] == MINUTE_LOOKBACK_SESSIONS == 2  # 780 bars
    assert lookback["overnight_gap"] == 2  # 390 bars: more than a half day
    assert lookback["rsi_14"] == lookback["adx_14"] == lookback["doji"] == 1
    calendar = nyse_calendar()
    # the block of 2024-12-26 follows the half day of 12-24 (210 bars) and 12-23
    days = calendar.sessions_between(date(2024, 12, 18), date(2024, 12, 31))
    requested = calendar.sessions_between(date(2024, 12, 26), date(2024, 12, 30))
    assert pipeline.block_start(requested[0]) == date(2024, 12, 26)
    data = raw(market, days)
    windows: list[int] = []

    def evaluate(frame: pl.DataFrame, columns: list[pl.Expr]) -> pl.DataFrame:
        windows.append(len(frame))
        return evaluate_as_before(frame, columns)

    evaluate_as_before = pipeline._evaluate
    monkeypatch.setattr(pipeline, "_evaluate", evaluate)
    trimmed = features_for(data, requested)
    bars = data["bars"]
    one_before = bars.filter(pl.col("session").is_between(date(2024, 12, 24), requested[-1]))
    two_before = bars.filter(pl.col("session").is_between(date(2024, 12, 23), requested[-1]))
    assert len(one_before) == len(two_before) - TICKERS * 390  # 12-23 is a whole session
    assert {len(one_before), len(two_before)} <= set(windows)  # the two 1m groups' windows
    # every feature on two sessions instead: the recursive filters (EMA, Wilder's smoothing)
    # then start 390 bars earlier. After a whole session their seeds no longer show in float32;
    # after this half day ADX moves by up to 1e-5 relative (1.3e-4 on its 0-100 scale) at the
    # block's start, RSI by 5e-7, MACD by 6e-9 absolute
    monkeypatch.setattr(pipeline, "minute_lookback", lambda feature: MINUTE_LOOKBACK_SESSIONS)
    full = features_for(data, requested)
    assert_frame_equal(trimmed, full, check_exact=False, rel_tol=3e-5, abs_tol=1e-8)
    later = pl.col("session") > requested[0]
    assert_frame_equal(trimmed.filter(later), full.filter(later), check_exact=False, rel_tol=1e-6)


def test_higher_timeframes_use_only_completed_bars(market):
    days = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 6))
    table = features_for(raw(market, days), days[-1:])
    first_hour = table.filter(pl.col("ts") < table["ts"].min() + timedelta(minutes=59))
    hourly = [c for c in table.columns if c.endswith("_1h")]
    # the first hourly bar of the day completes at 10:30: before that, 1h values come from the
    # previous session's bars, so they are the same on every row of that first hour per ticker
    spread = first_hour.group_by("ticker").agg(pl.col(hourly).n_unique().max()).drop("ticker")
    assert spread.max_horizontal().max() == 1


@pytest.mark.parametrize(
    ("timeframe", "bars_per_session"), [("5m", 78), ("15m", 26), ("1h", 7), ("1d", 1)]
)
def test_resampling_gives_the_bars_of_each_timeframe_within_the_session(
    market, timeframe, bars_per_session
):
    days = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 5))
    data = raw(market, days)
    minute = minute_frame(data["bars"], data["quotes"], data["trades"], data["options_flow"])
    bars = resample(minute, timeframe)
    assert len(bars) == TICKERS * len(days) * bars_per_session
    first = bars.filter(pl.col("ticker") == bars["ticker"][0]).head(1)
    source = minute.filter(pl.col("ticker") == bars["ticker"][0], pl.col("session") == days[0])
    n = len(source) if timeframe == "1d" else {"5m": 5, "15m": 15, "1h": 60}[timeframe]
    assert first["volume"].item() == source["volume"].head(n).sum()
    assert first["high"].item() == source["high"].head(n).max()
    assert first["available_at"].item() == source["ts"][n - 1] + timedelta(minutes=1)


def test_an_early_close_has_a_short_last_hour(market):
    day = date(2024, 11, 29)
    data = raw(market, [day])
    minute = minute_frame(data["bars"], data["quotes"], data["trades"], data["options_flow"])
    hours = resample(minute, "1h").filter(pl.col("ticker") == minute["ticker"][0])
    assert len(hours) == 4  # 09:30, 10:30, 11:30, 12:30-13:00
    assert hours["available_at"][-1] == nyse_calendar().session_close(day)


def test_the_compiled_as_of_join_matches_polars_join_asof():
    # bars of four tickers, irregular times, one ticker without bars; rows in any order,
    # tickers as strings (the pipeline's are an Enum), one of them unknown to the bars
    start = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    bars = pl.DataFrame(
        {
            "ticker": ["A"] * 4 + ["B"] * 3 + ["D"] * 2,
            "available_at": [start + timedelta(minutes=m) for m in (5, 10, 10, 20, 1, 2, 60, 3, 4)],
        }
    ).with_row_index("bar")
    rows = pl.DataFrame(
        {
            "ticker": ["A", "B", "C", "D", "A", "B", "A", "D", "E", "A"],
            "ts": [start + timedelta(minutes=m) for m in (9, 0, 7, 30, 3, 59, 19, 2, 5, 4)],
        }
    )
    got = _last_completed(rows, bars.drop("bar"))
    expected = (
        rows.with_row_index("row")
        .with_columns(known_at=pl.col("ts") + timedelta(minutes=1))
        .sort("known_at")
        .join_asof(
            bars, left_on="known_at", right_on="available_at", by="ticker", check_sortedness=False
        )
        .sort("row")["bar"]
    )
    assert got.to_list() == expected.to_list()
    assert got.to_list()[:4] == [2, 4, None, 8]  # the later of two bars at one time

    categorical = bars.drop("bar").with_columns(pl.col("ticker").cast(pl.Categorical))
    assert _last_completed(rows, categorical).to_list() == got.to_list()

    with pytest.raises(ValueError, match="sorted by ticker"):
        _last_completed(rows, bars.drop("bar").reverse())


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h", "1d"])
def test_compiled_resampling_matches_polars_aggregations_with_missing_values(market, timeframe):
    days = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 5))
    data = raw(market, days)
    minute = minute_frame(data["bars"], data["quotes"], data["trades"], data["options_flow"])
    holes = pl.int_range(pl.len()) % 17 == 3  # nulls in every aggregated column, now and then
    minute = minute.with_columns(
        pl.when(holes).then(None).otherwise(pl.col(c)).alias(c) for c in BAR_VALUES
    ).with_columns(  # and a whole 5-minute bar of one ticker without volume or quotes
        pl.when(pl.int_range(pl.len()) < 5).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("volume", "effective_spread_bps", *QUOTE_MEANS)
    )
    expected = polars_resample(minute, timeframe)
    for frame in (minute, minute.with_columns(pl.col("ticker").cast(pl.Categorical))):
        got = resample(frame, timeframe).drop("available_at")
        assert_frame_equal(
            got.with_columns(pl.col("ticker").cast(pl.String)),
            expected,
            check_exact=False,
            rel_tol=1e-12,
        )
    if timeframe == "5m":  # the bar without volume or quotes: its last close, no spreads
        first = expected.row(0, named=True)
        assert first["vwap"] == first["close"] and first["volume"] == 0
        assert first["quoted_spread"] is None and first["effective_spread_bps"] is None
