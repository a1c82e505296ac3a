"""Ticker and timeframe selection: active list from daily bars, focus list, cleanest timeframe."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from live.engine.selection import (
    select_active,
    select_focus,
    select_timeframe,
    selection_stats,
    timeframe_atr_scale,
)
from live.engine.settings import StrategySettings

D1, D2, D3, D4, D5 = (date(2024, 11, 4) + timedelta(days=i) for i in range(5))


def daily(rows: list[tuple]) -> pl.DataFrame:
    """Daily bars from (ticker, session, high, low, close, volume); open is the close."""
    ticker, session, high, low, close, volume = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "ticker": ticker,
            "session": session,
            "open": close,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


# true ranges: 2 (no prior close), 2, and 3 (a gap up from 11 to a 13-14 range)
THREE_SESSIONS = [
    ("AAA", D1, 11.0, 9.0, 10.0, 1000.0),
    ("AAA", D2, 12.0, 10.0, 11.0, 2000.0),
    ("AAA", D3, 14.0, 13.0, 13.5, 3000.0),
]


def test_stats_are_median_dollar_volume_mean_true_range_over_close_last_close_and_count():
    stats = selection_stats(daily(THREE_SESSIONS), as_of=D4)
    row = stats.row(0, named=True)
    assert row["ticker"] == "AAA"
    assert row["dollar_volume"] == 22_000.0  # median of 10,000, 22,000 and 40,500 dollars
    assert row["volatility"] == pytest.approx((2 / 10 + 2 / 11 + 3 / 13.5) / 3)
    assert row["price"] == 13.5
    assert row["sessions"] == 3


def test_stats_use_only_the_last_lookback_sessions_but_their_first_true_range_sees_the_prior_close():
    stats = selection_stats(daily(THREE_SESSIONS), as_of=D4, lookback=2)
    row = stats.row(0, named=True)
    assert row["sessions"] == 2
    assert row["dollar_volume"] == 31_250.0
    assert row["volatility"] == pytest.approx((2 / 11 + 3 / 13.5) / 2)


def test_stats_ignore_the_as_of_session_and_later_ones():
    future = [
        ("AAA", D3, 500.0, 1.0, 400.0, 1e9),
        ("AAA", D4, 500.0, 1.0, 400.0, 1e9),
        ("AAA", D5, 500.0, 1.0, 400.0, 1e9),
        ("NEW", D3, 50.0, 40.0, 45.0, 1e9),  # listed on the as-of session: not known yet
    ]
    before = selection_stats(daily(THREE_SESSIONS[:2]), as_of=D3)
    with_future = selection_stats(daily(THREE_SESSIONS[:2] + future), as_of=D3)
    assert with_future.equals(before)
    assert with_future["ticker"].to_list() == ["AAA"]
    assert with_future["sessions"].to_list() == [2]


def stats_frame(rows: list[tuple]) -> pl.DataFrame:
    """Stats from (ticker, dollar_volume, volatility, price)."""
    ticker, dollar_volume, volatility, price = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "ticker": ticker,
            "dollar_volume": dollar_volume,
            "volatility": volatility,
            "price": price,
            "sessions": [20] * len(rows),
        }
    )


# ranks among the five eligible names (dollar volume, volatility): A 5+1, B 4+4, C 3+5, D 2+3, E 1+2
FIVE_NAMES = [
    ("A", 5e7, 0.01, 50.0),
    ("B", 4e7, 0.04, 50.0),
    ("C", 3e7, 0.05, 50.0),
    ("D", 2e7, 0.03, 50.0),
    ("E", 1e7, 0.02, 50.0),
]
UNTRADABLE = [
    ("CHEAP", 9e7, 0.09, 4.99),  # best on both, but under $5
    ("THIN", 999_999.0, 0.10, 50.0),  # under $1M a day
    ("NODATA", 9e7, float("nan"), 50.0),
]


def test_active_selection_keeps_the_top_n_by_mean_rank_of_liquidity_and_volatility():
    active = select_active(stats_frame(FIVE_NAMES + UNTRADABLE), n=3)
    assert active["ticker"].to_list() == ["B", "C", "A"]  # B and C tie at 0.8: by ticker
    assert active["score"].to_list() == pytest.approx([0.8, 0.8, 0.6])
    assert active["rank"].to_list() == [1, 2, 3]
    assert active.columns == [
        "ticker",
        "score",
        "rank",
        "dollar_volume",
        "volatility",
        "price",
        "sessions",
    ]


def test_names_under_min_price_or_min_dollar_volume_are_not_ranked():
    active = select_active(stats_frame(FIVE_NAMES + UNTRADABLE), n=10)
    assert active["ticker"].to_list() == ["B", "C", "A", "D", "E"]
    assert active.height == 5


def test_active_then_focus_shrink_the_universe_to_the_configured_sizes():
    settings = StrategySettings()
    rng = np.random.default_rng(7)
    tickers = [f"T{i:03d}" for i in range(200)]
    stats = stats_frame(
        list(
            zip(
                tickers,
                rng.uniform(2e6, 5e8, 200),
                rng.uniform(0.005, 0.08, 200),
                rng.uniform(6, 300, 200),
                strict=True,
            )
        )
    )
    active = select_active(stats, settings.max_active_tickers)
    confidence = pl.DataFrame({"ticker": tickers[:100], "confidence": rng.uniform(0, 1, 100)})
    focus = select_focus(active, confidence, settings.focus_universe_size)
    assert active.height == 150
    assert active["rank"].to_list() == list(range(1, 151))
    assert focus.height == 40
    assert focus["focus_rank"].to_list() == list(range(1, 41))
    assert set(focus["ticker"]) <= set(active["ticker"])
    assert focus["focus_score"].is_sorted(descending=True)


# confidence ranks: A and C missing (0) share 1.5, B 3, D 4, E 5; weighted sums (1, 1, 2) over 20:
# A (5+1+3) 0.45, B (4+4+6) 0.7, C (3+5+3) 0.55, D (2+3+8) 0.65, E (1+2+10) 0.65
CONFIDENCE = pl.DataFrame({"ticker": ["E", "D", "B"], "confidence": [0.9, 0.8, 0.6]})


def test_focus_selection_weights_confidence_twice_and_breaks_ties_by_ticker():
    active = select_active(stats_frame(FIVE_NAMES), n=5)
    focus = select_focus(active, CONFIDENCE, n=3)
    assert focus.columns == ["ticker", "focus_score", "focus_rank"]
    assert focus["ticker"].to_list() == ["B", "D", "E"]
    assert focus["focus_score"].to_list() == pytest.approx([0.7, 0.65, 0.65])
    assert focus["focus_rank"].to_list() == [1, 2, 3]


def test_tickers_missing_from_confidence_count_as_zero_confidence():
    active = select_active(stats_frame(FIVE_NAMES), n=5)
    explicit = pl.concat(
        [CONFIDENCE, pl.DataFrame({"ticker": ["A", "C"], "confidence": [0.0, 0.0]})]
    )
    assert select_focus(active, CONFIDENCE, n=5).equals(select_focus(active, explicit, n=5))


def sawtooth_trend(period: int, minutes: int = 120) -> np.ndarray:
    """A steady 1-cent-a-minute rise with a 20-cent-a-minute sawtooth of ``period`` minutes."""
    t = np.arange(minutes)
    return 100.0 + 0.01 * t + 0.2 * (t % period)


def test_timeframe_selector_picks_the_timeframe_that_sees_a_five_minute_cycle_as_a_clean_trend():
    # 5- and 15-minute bars both see the pure trend; the tie goes to the shorter
    assert select_timeframe(sawtooth_trend(period=5)) == 5


def test_timeframe_selector_picks_fifteen_minutes_when_the_noise_cycle_is_fifteen_minutes():
    assert select_timeframe(sawtooth_trend(period=15)) == 15


def test_a_clean_one_minute_trend_stays_on_one_minute_bars():
    assert select_timeframe(100.0 + 0.01 * np.arange(120)) == 1


def test_too_few_closes_for_the_longer_timeframes_gives_the_shortest():
    assert select_timeframe(sawtooth_trend(period=5, minutes=10)) == 1
    assert select_timeframe(np.array([])) == 1
    assert select_timeframe(np.full(60, np.nan), timeframes=(5, 15)) == 5


def test_timeframe_atr_scale_is_the_square_root_of_the_minutes():
    assert timeframe_atr_scale(1) == 1.0
    assert timeframe_atr_scale(15) == pytest.approx(3.872983346207417)
