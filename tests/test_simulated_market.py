"""The simulated market: deterministic, well-formed data with known regimes and a planted signal."""

from __future__ import annotations

import math
from datetime import date, time, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar
from ats_assets.core.validation import evaluate
from ats_assets.market_data.specs import OPTIONS_FLOW, RAW_BARS, RAW_QUOTES, conform
from ats_resources.simulation.market import REGIMES, SimulatedMarket, SimulationConfig
from ats_resources.simulation.universe import SECTORS

DAY = date(2024, 3, 5)  # an ordinary full session
NEXT_DAY = date(2024, 3, 6)
EARLY_CLOSE = date(2024, 11, 29)  # the day after Thanksgiving closes at 13:00 New York time
UTC_TS = pl.Datetime("us", "UTC")


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SimulationConfig())


@pytest.fixture(scope="module")
def day(market):
    return market.day(DAY)


def _session(day: date):
    return nyse_calendar().session(day)


def _inside_session(frame: pl.DataFrame, day: date) -> bool:
    session = _session(day)
    return frame.select(
        ((pl.col("ts") >= session.open) & (pl.col("ts") < session.close)).all()
    ).item()


# -- determinism ------------------------------------------------------------------------------


def _assert_same_day(a, b) -> None:
    assert_frame_equal(a.bars, b.bars)
    assert_frame_equal(a.quotes, b.quotes)
    assert_frame_equal(a.options_flow, b.options_flow)
    assert_frame_equal(a.planted, b.planted)


def test_equal_configs_give_identical_days_whatever_order_they_are_asked_for():
    config = SimulationConfig(seed=11, n_tickers=40)
    first, second = SimulatedMarket(config), SimulatedMarket(config)
    first_day, first_next = first.day(DAY), first.day(NEXT_DAY)
    second_next, second_day = second.day(NEXT_DAY), second.day(DAY)
    _assert_same_day(first_day, second_day)
    _assert_same_day(first_next, second_next)
    assert not first_day.bars.equals(first_next.bars)


def test_a_different_seed_gives_different_data():
    a = SimulatedMarket(SimulationConfig(seed=11, n_tickers=40)).day(DAY)
    b = SimulatedMarket(SimulationConfig(seed=12, n_tickers=40)).day(DAY)
    assert not a.bars.equals(b.bars)
    assert not a.quotes.equals(b.quotes)
    assert not a.options_flow.equals(b.options_flow)


# -- universe ---------------------------------------------------------------------------------


def test_the_default_universe_has_at_least_150_unique_tickers(market):
    tickers = market.universe.tickers.tolist()
    assert len(tickers) == SimulationConfig().n_tickers >= 150
    assert len(set(tickers)) == len(tickers)


def test_every_ticker_has_a_known_sector(market):
    frame = market.universe.frame()
    assert frame["sector"].null_count() == 0
    assert set(frame["sector"]) <= set(SECTORS)


def test_bars_cover_exactly_the_universe(market, day):
    assert sorted(day.bars["ticker"].unique()) == sorted(market.universe.tickers.tolist())


# -- bars -------------------------------------------------------------------------------------


def test_bars_have_the_spec_schema(day):
    assert day.bars.schema == pl.Schema(RAW_BARS.schema)


def test_bars_are_ohlc_consistent(day):
    bad = day.bars.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.max_horizontal("open", "close") > pl.col("high"))
    )
    assert bad.is_empty()


def test_bar_prices_are_positive(day):
    prices = day.bars.select("open", "high", "low", "close", "vwap")
    assert prices.select(pl.all().min()).min_horizontal().item() > 0
    assert prices.null_count().sum_horizontal().item() == 0


def test_bar_volume_is_at_least_one_and_trade_count_between_one_and_volume(day):
    bars = day.bars
    assert bars["volume"].min() >= 1
    assert bars.filter(
        (pl.col("trade_count") < 1) | (pl.col("trade_count") > pl.col("volume"))
    ).is_empty()


def test_bar_vwap_lies_between_low_and_high(day):
    assert day.bars.filter(
        (pl.col("vwap") < pl.col("low")) | (pl.col("vwap") > pl.col("high"))
    ).is_empty()


def test_one_bar_per_ticker_per_session_minute(day):
    per_ticker = day.bars.group_by("ticker").agg(n=pl.len(), distinct=pl.col("ts").n_unique())
    assert per_ticker["n"].unique().to_list() == [390]
    assert per_ticker["distinct"].unique().to_list() == [390]
    assert (
        day.bars.select((pl.col("ts").dt.second() == 0) & (pl.col("ts").dt.microsecond() == 0))
        .to_series()
        .all()
    )


def test_bars_are_labelled_by_open_time_in_utc_inside_the_session(day):
    session = _session(DAY)
    assert day.bars.schema["ts"] == UTC_TS
    assert day.bars["ts"].min() == session.open
    assert day.bars["ts"].max() == session.close - timedelta(minutes=1)
    assert _inside_session(day.bars, DAY)


def test_an_early_close_has_210_bars_the_last_starting_at_1259_new_york_time(market):
    bars = market.day(EARLY_CLOSE).bars
    counts = bars.group_by("ticker").len()["len"].unique().to_list()
    assert counts == [210]
    last = bars["ts"].max().astimezone(EXCHANGE_TZ)
    assert (last.date(), last.time()) == (EARLY_CLOSE, time(12, 59))
    assert _inside_session(bars, EARLY_CLOSE)


def test_the_next_sessions_first_open_is_near_the_previous_last_close(market):
    def edge(day: date, how: str, col: str) -> pl.DataFrame:
        bars = market.day(day).bars.sort("ticker", "ts")
        return bars.group_by("ticker").agg(getattr(pl.col(col), how)())

    friday, monday = date(2024, 3, 8), date(2024, 3, 11)
    joined = edge(friday, "last", "close").join(edge(monday, "first", "open"), on="ticker")
    assert joined.height == len(market.universe)
    gap = joined.select((pl.col("open") / pl.col("close") - 1).abs().max()).item()
    assert gap < 0.10


# -- quotes -----------------------------------------------------------------------------------


def test_quotes_have_the_spec_schema(day):
    assert day.quotes.schema == pl.Schema(RAW_QUOTES.schema)


def test_there_is_a_quote_per_ticker_per_minute(market, day):
    minutes = day.quotes.group_by("ticker").agg(pl.col("ts").dt.truncate("1m").n_unique())
    assert minutes.height == len(market.universe)
    assert minutes["ts"].min() == 390


def test_quotes_are_not_crossed_or_locked_and_have_positive_sizes(day):
    quotes = day.quotes
    assert quotes.filter(pl.col("bid") >= pl.col("ask")).is_empty()
    assert quotes["bid"].min() > 0
    assert quotes["bid_size"].min() > 0 and quotes["ask_size"].min() > 0


def test_quotes_lie_inside_the_session(market, day):
    assert _inside_session(day.quotes, DAY)
    assert _inside_session(market.day(EARLY_CLOSE).quotes, EARLY_CLOSE)


# -- options flow -----------------------------------------------------------------------------


def test_options_flow_has_the_spec_fields(day):
    assert day.options_flow.schema == pl.Schema(OPTIONS_FLOW.schema)
    assert day.options_flow.null_count().sum_horizontal().item() == 0


def test_options_flow_categories_take_only_their_allowed_values(day):
    flow = day.options_flow
    assert set(flow["option_type"]) == {"call", "put"}
    assert set(flow["execution"]) == {"sweep", "block", "single"}
    assert set(flow["sentiment"]) == {"bullish", "bearish"}
    assert set(flow["side"]) <= {"ask", "bid"}


def test_options_expire_on_or_after_the_session_day(day):
    assert day.options_flow["expiry"].min() >= DAY


def test_option_premium_is_price_times_size_times_100(day):
    off = day.options_flow.select(
        (pl.col("premium") - pl.col("price") * pl.col("size") * 100).abs().max()
    ).item()
    assert off <= 0.005 + 1e-9


def test_option_event_ids_are_unique(day):
    assert day.options_flow["event_id"].is_unique().all()


def test_options_flow_lies_inside_the_session(day):
    assert _inside_session(day.options_flow, DAY)


def test_at_least_150_tickers_have_an_alert_on_a_normal_day(day):
    assert day.options_flow["ticker"].n_unique() >= 150


# -- the frames pass the market-data specs' own rules -----------------------------------------


@pytest.mark.parametrize(
    ("attr", "spec"),
    [("bars", RAW_BARS), ("quotes", RAW_QUOTES), ("options_flow", OPTIONS_FLOW)],
    ids=["bars", "quotes", "options_flow"],
)
@pytest.mark.parametrize("session", [DAY, EARLY_CLOSE], ids=str)
def test_simulated_frames_pass_every_rule_of_their_spec(market, attr, spec, session):
    frame = conform(getattr(market.day(session), attr), spec, session)
    outcomes = evaluate(frame, spec.rules, bounds=nyse_calendar().bounds_frame([session]))
    assert {o.rule.name: o.failed_rows for o in outcomes if not o.passed} == {}


# -- regimes ----------------------------------------------------------------------------------


def test_the_regime_path_visits_every_regime(market):
    path = market.regime_path(date(2020, 1, 2), date(2024, 12, 31))
    assert path["session"].to_list() == nyse_calendar().sessions_between(
        date(2020, 1, 2), date(2024, 12, 31)
    )
    assert set(path["regime"]) == set(REGIMES)


def _mean_abs_session_return(market: SimulatedMarket, day: date) -> float:
    return (
        market.day(day)
        .bars.sort("ticker", "ts")
        .group_by("ticker")
        .agg((pl.col("close").last() / pl.col("open").first()).log().abs().alias("r"))["r"]
        .mean()
    )


def test_stressed_regimes_move_more_than_calm_ones(market):
    path = market.regime_path(date(2020, 1, 2), date(2024, 12, 31))
    per_regime = {}
    for regime in REGIMES:
        days = path.filter(pl.col("regime") == regime)["session"].to_list()
        sample = days[:: max(1, len(days) // 12)][:12]
        per_regime[regime] = sum(_mean_abs_session_return(market, d) for d in sample) / len(sample)
    calm = per_regime["calm_trending"]
    assert per_regime["volatile"] > 1.5 * calm
    assert per_regime["crash_mean_reverting"] > 1.5 * calm


# -- the planted signal -----------------------------------------------------------------------

SIGNAL_DAYS = nyse_calendar().sessions_between(date(2024, 3, 1), date(2024, 3, 28))[:20]


def _informed_forward_returns(market: SimulatedMarket, days: list[date]) -> pl.DataFrame:
    """Log return from the close of the informed alert's minute to the close 60 minutes later."""
    frames = []
    for day in days:
        closes = market.day(day).bars.select("ticker", "ts", "close")
        events = (
            market.planted_events(day)
            .filter(pl.col("informed"))
            .with_columns(start=pl.col("ts").dt.truncate("1m"))
            .with_columns(end=pl.col("start") + pl.duration(minutes=60))
        )
        frames.append(
            events.join(closes.rename({"ts": "start", "close": "c0"}), on=["ticker", "start"])
            # An inner join drops alerts whose +60 minutes is past the close.
            .join(closes.rename({"ts": "end", "close": "c1"}), on=["ticker", "end"])
            .select("sentiment", r=(pl.col("c1") / pl.col("c0")).log())
        )
    return pl.concat(frames)


def _bullish_minus_bearish(returns: pl.DataFrame) -> tuple[float, float]:
    """Difference of mean forward returns (bullish - bearish) and its Welch t-statistic."""
    stats = {
        row["sentiment"]: row
        for row in returns.group_by("sentiment")
        .agg(m=pl.col("r").mean(), v=pl.col("r").var(), n=pl.len())
        .iter_rows(named=True)
    }
    bull, bear = stats["bullish"], stats["bearish"]
    diff = bull["m"] - bear["m"]
    return diff, diff / math.sqrt(bull["v"] / bull["n"] + bear["v"] / bear["n"])


@pytest.fixture(scope="module")
def signal_on_and_off():
    on = SimulatedMarket(SimulationConfig(seed=7, planted_signal=True))
    off = SimulatedMarket(SimulationConfig(seed=7, planted_signal=False))
    return (
        _bullish_minus_bearish(_informed_forward_returns(on, SIGNAL_DAYS)),
        _bullish_minus_bearish(_informed_forward_returns(off, SIGNAL_DAYS)),
    )


def test_informed_bullish_alerts_are_followed_by_higher_returns_than_bearish_ones(
    signal_on_and_off,
):
    (diff, t_stat), _ = signal_on_and_off
    assert diff > 0
    assert t_stat > 5


def test_without_the_planted_signal_flow_carries_no_information(signal_on_and_off):
    _, (_, t_stat) = signal_on_and_off
    assert abs(t_stat) < 3


def test_the_planted_effect_is_close_to_its_nominal_size(signal_on_and_off):
    # Same seed, so the noise is shared; the difference is the planted drift: each side moves by
    # ~85% of signal_strength_bps over the hour, so bullish - bearish is ~1.7 x the strength.
    (diff_on, _), (diff_off, _) = signal_on_and_off
    nominal = 2 * 0.85 * SimulationConfig().signal_strength_bps * 1e-4
    assert 0.6 * nominal < diff_on - diff_off < 1.4 * nominal


def test_planted_events_match_the_options_flow(market, day):
    planted = market.planted_events(DAY)
    assert planted.columns == [
        "event_id",
        "ticker",
        "ts",
        "sentiment",
        "informed",
        "planted_drift_bps",
    ]
    assert_frame_equal(
        planted.select("event_id", "ticker", "ts", "sentiment"),
        day.options_flow.select("event_id", "ticker", "ts", "sentiment"),
    )
    assert 0 < planted["informed"].mean() < 1


def test_planted_drift_follows_sentiment_on_informed_alerts_only(market):
    planted = market.planted_events(DAY)
    strength = market.config.signal_strength_bps
    expected = (
        pl.when(~pl.col("informed"))
        .then(0.0)
        .when(pl.col("sentiment") == "bullish")
        .then(strength)
        .otherwise(-strength)
    )
    assert planted.select((pl.col("planted_drift_bps") == expected).all()).item()


def test_without_the_planted_signal_informed_alerts_have_no_drift():
    market = SimulatedMarket(SimulationConfig(seed=7, planted_signal=False))
    informed = market.planted_events(DAY).filter(pl.col("informed"))
    assert informed.height > 0
    assert (informed["planted_drift_bps"] == 0).all()


def test_options_expiring_on_a_holiday_friday_expire_the_session_before(market):
    # 2024-03-29 is Good Friday: that week's options expire on Thursday 2024-03-28.
    expiries = set(market.day(date(2024, 3, 25)).options_flow["expiry"].to_list())
    assert date(2024, 3, 29) not in expiries
    assert date(2024, 3, 28) in expiries
