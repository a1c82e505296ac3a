"""The market-regime detector: causal labels with probabilities, hysteresis, and its quality on the
simulated market's ground-truth regime path."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.regime.detector import (
    DETECTOR_FEATURES,
    INTRADAY_FEATURES,
    PROBABILITY_COLUMNS,
    RegimeDetector,
    change_points,
    detection_quality,
    market_daily_features,
    market_intraday_features,
)
from ats_resources.simulation.market import REGIMES, SimulatedMarket, SimulationConfig

CALM, VOLATILE, CRASH = REGIMES
# Synthetic INTRADAY_FEATURES per state (calm, volatile, crash) and their noise, shaped like the
# simulated market's: volatility steps up, crash sessions revert intraday.
LEVELS = {
    "log_market_vol": (-4.9, -4.0, -3.45),
    "market_autocorrelation": (0.0, 0.0, -0.25),
    "log_dispersion": (-4.2, -3.75, -3.4),
}
NOISE = {"log_market_vol": 0.04, "market_autocorrelation": 0.05, "log_dispersion": 0.15}
# Calm for weeks, a volatile spell with a short crash inside, calm, volatile, crash, calm.
STATES = [0] * 60 + [1] * 20 + [2] * 5 + [1] * 10 + [0] * 40 + [1] * 15 + [2] * 6 + [0] * 30


def _sessions(n: int, start: date = date(2024, 1, 2)) -> list[date]:
    return nyse_calendar().sessions_between(start, date(2026, 12, 31))[:n]


def _synthetic_features(states: list[int], seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    index = np.array(states)
    return pl.DataFrame(
        {
            "session": _sessions(len(states)),
            **{
                name: np.array(levels)[index] + NOISE[name] * rng.standard_normal(len(index))
                for name, levels in LEVELS.items()
            },
        }
    )


def _path(regimes: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"session": _sessions(len(regimes)), "regime": regimes})


def _declared(rows: list[tuple[int, str, str]], sessions: list[date]) -> pl.DataFrame:
    return pl.DataFrame(
        [(sessions[i], before, after, 1.0) for i, before, after in rows],
        schema={
            "session": pl.Date,
            "from_regime": pl.Utf8,
            "to_regime": pl.Utf8,
            "probability": pl.Float64,
        },
        orient="row",
    )


# -- features ---------------------------------------------------------------------------------


def test_daily_features_summarise_the_cross_section_of_one_session():
    bars = pl.DataFrame(
        {
            "ticker": ["AAA", "BBB"],
            "session": [date(2024, 3, 5)] * 2,
            "open": [100.0, 50.0],
            "high": [103.0, 51.0],
            "low": [99.0, 48.0],
            "close": [102.0, 49.0],
            "volume": [1000, 2000],
        }
    )
    row = market_daily_features(bars).row(0, named=True)
    assert row["n_tickers"] == 2
    assert row["market_return"] == pytest.approx(0.0)  # +2% and -2%
    assert row["mean_abs_return"] == pytest.approx(0.02)
    assert row["mean_range"] == pytest.approx(0.05)  # 4% and 6%
    spread = math.log(1.02) - math.log(0.98)
    assert row["dispersion"] == pytest.approx(spread / math.sqrt(2))
    assert row["log_range"] == pytest.approx((math.log(0.04) + math.log(0.06)) / 2)
    assert row["log_dispersion"] == pytest.approx(math.log(spread / math.sqrt(2)))


def test_intraday_features_measure_the_market_minute_returns():
    closes = [100.0, 101.0, 100.0, 101.0]  # up 1%, back, up again: perfectly reverting
    minutes = pl.datetime_range(
        pl.datetime(2024, 3, 5, 14, 30, time_zone="UTC"),
        pl.datetime(2024, 3, 5, 14, 33, time_zone="UTC"),
        "1m",
        eager=True,
    )
    bars = pl.DataFrame(
        {
            "ticker": ["AAA"] * 4 + ["BBB"] * 4,
            "session": [date(2024, 3, 5)] * 8,
            "ts": [*minutes, *minutes],
            "close": closes + [2 * c for c in closes],
        }
    )
    row = market_intraday_features(bars).row(0, named=True)
    step = math.log(1.01)  # each of the 3 market minute returns is +-step
    assert row["market_realized_vol"] == pytest.approx(math.sqrt(390) * step)  # a full session's
    assert row["log_market_vol"] == pytest.approx(math.log(math.sqrt(390) * step))
    assert row["market_autocorrelation"] == pytest.approx(-1.0)


# -- the detector -----------------------------------------------------------------------------


def _fitted(prior="calibrated") -> RegimeDetector:
    return RegimeDetector.fit(_synthetic_features(STATES), INTRADAY_FEATURES, prior=prior)


def test_an_uninformed_fit_names_its_states_by_volatility_calm_first():
    detector = _fitted(prior=None)
    assert detector.features == INTRADAY_FEATURES
    np.testing.assert_allclose(detector.means[:, 0], LEVELS["log_market_vol"], atol=0.03)
    np.testing.assert_allclose(detector.means[:, 1], LEVELS["market_autocorrelation"], atol=0.03)


def test_an_uninformed_fit_refuses_a_window_that_shows_only_two_regimes():
    calm_and_volatile = _synthetic_features([0] * 120 + [1] * 40 + [0] * 60)
    with pytest.raises(ValueError, match="three distinct regimes"):
        RegimeDetector.fit(calm_and_volatile, INTRADAY_FEATURES, prior=None)


def test_a_calm_window_keeps_the_priors_volatile_and_crash_states():
    calm = _synthetic_features([0] * 120)
    prior = RegimeDetector.calibrated(INTRADAY_FEATURES)
    detector = RegimeDetector.fit(calm, INTRADAY_FEATURES)  # the calibrated prior by default
    np.testing.assert_allclose(detector.means[1:], prior.means[1:], atol=1e-9)
    assert detector.means[0, 0] == pytest.approx(-4.9, abs=0.01)  # calm moved to the data
    assert detector.detect(calm)["regime"].unique().to_list() == [CALM]


def test_the_default_detector_reads_market_daily_features():
    assert DETECTOR_FEATURES == ("log_range", "log_dispersion")
    assert RegimeDetector.calibrated().features == DETECTOR_FEATURES


def test_detect_gives_a_label_its_probability_and_every_regimes_probability():
    features = _synthetic_features(STATES, seed=1)
    detected = _fitted().detect(features)
    assert detected.columns == ["session", "regime", "probability", *PROBABILITY_COLUMNS]
    assert PROBABILITY_COLUMNS == ("p_calm_trending", "p_volatile", "p_crash_mean_reverting")
    probabilities = detected.select(PROBABILITY_COLUMNS).to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(detected["probability"], probabilities.max(axis=1))
    agreement = (detected["regime"] == pl.Series([REGIMES[s] for s in STATES])).mean()
    assert agreement >= 0.97


def test_a_sessions_output_does_not_depend_on_later_sessions():
    detector = _fitted()
    features = _synthetic_features(STATES, seed=1)
    cut = 82  # inside the first crash spell
    altered = features.with_columns(
        [
            pl.when(pl.int_range(pl.len()) > cut).then(pl.col(name) * 3.0).otherwise(pl.col(name))
            for name in LEVELS
        ]
    )
    original, changed = detector.detect(features), detector.detect(altered)
    assert_frame_equal(original.head(cut + 1), changed.head(cut + 1))
    assert not original.tail(-cut - 1).equals(changed.tail(-cut - 1))
    last = features["session"][cut]
    assert_frame_equal(
        change_points(original).filter(pl.col("session") <= last),
        change_points(changed).filter(pl.col("session") <= last),
    )


def test_a_session_with_a_missing_feature_carries_the_prediction_forward():
    detector = _fitted()
    features = _synthetic_features(STATES, seed=1).with_columns(
        log_dispersion=pl.when(pl.int_range(pl.len()) == 100)
        .then(None)
        .otherwise(pl.col("log_dispersion"))
    )
    probabilities = detector.detect(features).select(PROBABILITY_COLUMNS).to_numpy()
    np.testing.assert_allclose(probabilities[100], probabilities[99] @ detector.transitions)


# -- change points ----------------------------------------------------------------------------


def _detected(labels: list[str], probabilities: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"session": _sessions(len(labels)), "regime": labels, "probability": probabilities}
    )


def test_a_change_is_declared_on_the_second_confident_session_of_the_new_regime():
    labels = [CALM, CALM, VOLATILE, CALM, VOLATILE, VOLATILE, VOLATILE, CALM, CALM]
    declared = change_points(_detected(labels, [0.99] * 9), min_probability=0.8, persistence=2)
    sessions = _sessions(9)
    assert declared.rows() == [
        (sessions[5], CALM, VOLATILE, 0.99),
        (sessions[8], VOLATILE, CALM, 0.99),
    ]


def test_unconfident_sessions_neither_start_nor_complete_a_change():
    labels = [CRASH, CALM, VOLATILE, VOLATILE, VOLATILE]
    probabilities = [0.5, 0.9, 0.9, 0.7, 0.9]
    declared = change_points(_detected(labels, probabilities), min_probability=0.8)
    # The crash session is not confident, so calm starts; the 0.7 session breaks the run.
    assert declared.select("from_regime", "to_regime").rows() == []
    assert change_points(_detected(labels, probabilities), min_probability=0.6).rows() == [
        (_sessions(5)[3], CALM, VOLATILE, 0.7)
    ]


# -- detection quality ------------------------------------------------------------------------

# 30 sessions: calm, volatile (8), a one-day crash, volatile (6), calm (5).
HAND_PATH = [CALM] * 10 + [VOLATILE] * 8 + [CRASH] + [VOLATILE] * 6 + [CALM] * 5


def test_quality_counts_delays_misses_and_false_alarms_on_a_hand_made_path():
    sessions = _sessions(30)
    declared = _declared(
        [
            (3, CALM, CRASH),  # false alarm: no crash anywhere near
            (4, CRASH, CALM),  # back to the truth: not a second false alarm
            (12, CALM, VOLATILE),  # the change at session 10, 2 sessions late
            (19, VOLATILE, CRASH),  # the one-day crash at 18: short, but real
            (20, CRASH, VOLATILE),  # the change back at 19, 1 session late
        ],
        sessions,
    )
    # True changes lasting >= 5 sessions: 10 (volatile), 19 (volatile), 25 (calm, never declared).
    assert detection_quality(_path(HAND_PATH), declared) == {
        "true_changes": 3,
        "detected": 2,
        "missed": 1,
        "false_alarms": 1,
        "median_delay": 1.5,
        "max_delay": 2,
    }


def test_a_regime_already_declared_when_the_truth_returns_to_it_counts_with_no_delay():
    sessions = _sessions(30)
    # Never fooled by the one-day crash: volatile is held through it, and calm comes 1 late.
    declared = _declared([(11, CALM, VOLATILE), (26, VOLATILE, CALM)], sessions)
    quality = detection_quality(_path(HAND_PATH), declared)
    assert quality == {
        "true_changes": 3,
        "detected": 3,
        "missed": 0,
        "false_alarms": 0,
        "median_delay": 1.0,
        "max_delay": 1,
    }
    assert detection_quality(_path(HAND_PATH), declared, min_episode=1)["true_changes"] == 4


def test_a_change_declared_too_late_is_missed_and_a_stale_one_is_a_false_alarm():
    path = [CALM] * 5 + [VOLATILE] * 20 + [CALM] * 5
    declared = _declared([(20, CALM, VOLATILE), (28, VOLATILE, CRASH)], _sessions(30))
    assert detection_quality(_path(path), declared, tolerance=10) == {
        "true_changes": 2,
        "detected": 0,
        "missed": 2,
        "false_alarms": 1,  # crash never happened; volatile at 20 is late but true then
        "median_delay": None,
        "max_delay": None,
    }


# -- quality on the simulated market ----------------------------------------------------------

SEED, TRAINING_YEAR, TEST_YEAR = 7, 2023, 2024


def _simulated_features(market: SimulatedMarket, start: date, end: date) -> pl.DataFrame:
    """Detector features for every session in [start, end], from the market's 1-minute bars."""
    daily, intraday = [], []
    for day in market.calendar.sessions_between(start, end):
        bars = market.day(day).bars.with_columns(session=pl.lit(day))
        daily.append(
            bars.group_by("ticker", "session").agg(
                open=pl.col("open").sort_by("ts").first(),
                high=pl.col("high").max(),
                low=pl.col("low").min(),
                close=pl.col("close").sort_by("ts").last(),
            )
        )
        intraday.append(market_intraday_features(bars))
    return market_daily_features(pl.concat(daily)).join(pl.concat(intraday), on="session")


@pytest.fixture(scope="module")
def simulated_year():
    market = SimulatedMarket(SimulationConfig(seed=SEED, n_tickers=20))
    features = _simulated_features(market, date(TRAINING_YEAR, 1, 1), date(TEST_YEAR, 12, 31))
    truth = market.regime_path(date(TEST_YEAR, 1, 1), date(TEST_YEAR, 12, 31))
    return features, truth


def _simulated_quality(simulated_year, features: tuple[str, ...]) -> dict:
    frame, truth = simulated_year
    training = frame.filter(pl.col("session").dt.year() == TRAINING_YEAR)
    detector = RegimeDetector.fit(training, features)  # from the calibrated prior
    detected = detector.detect(frame.filter(pl.col("session").dt.year() == TEST_YEAR))
    quality = detection_quality(truth, change_points(detected))
    agreement = (detected["regime"] == truth["regime"]).mean()
    print(f"\n{features}, seed {SEED}, fit on {TRAINING_YEAR}, run on {TEST_YEAR}: {quality}")
    print(f"sessions labelled as the truth: {agreement:.3f}")
    return quality


@pytest.mark.slow  # two simulated years of 1-minute bars: about 20 s
@pytest.mark.parametrize("features", [DETECTOR_FEATURES, INTRADAY_FEATURES])
def test_changes_in_a_simulated_year_are_detected_within_three_sessions(simulated_year, features):
    quality = _simulated_quality(simulated_year, features)
    assert quality["true_changes"] >= 3
    assert quality["median_delay"] <= 3
    assert quality["false_alarms"] <= 1
