"""Prediction metrics: correlations with forward returns and the dollars the predictions make."""

import math

import numpy as np
import polars as pl
import pytest

from ats_assets.models.metrics import evaluate, pearson, spearman, trade_threshold

POSITION = 2500.0
COST_BPS = 3.0


def market(sessions: int = 10, times: int = 20, tickers: int = 10, seed: int = 0):
    """Returns of ``tickers`` names at ``times`` decision times in each of ``sessions`` days."""
    rng = np.random.default_rng(seed)
    day = np.arange(sessions).repeat(times * tickers)
    minute = np.tile(np.arange(times).repeat(tickers), sessions)
    start = np.datetime64("2024-11-04T14:30", "ns")
    ts = start + day * np.timedelta64(1, "D") + minute * np.timedelta64(5, "m")
    fwd_return = rng.normal(0.0, 0.01, ts.size)
    return ts, fwd_return, rng


def test_perfect_predictions_have_ic_one_hit_rate_one_and_earn_every_move_less_costs():
    ts, r, _ = market()
    result = evaluate(r, r, ts, position_dollars=POSITION, cost_bps=COST_BPS)
    assert result["ic"] == pytest.approx(1.0)
    assert result["rank_ic"] == pytest.approx(1.0)
    assert result["ic_mean"] == pytest.approx(1.0)
    assert result["hit_rate"] == 1.0
    assert result["trades"] == r.size
    expected = np.abs(r).sum() * POSITION - r.size * POSITION * COST_BPS / 1e4
    assert result["dollar_profit"] == pytest.approx(expected)
    assert result["profit_per_trade"] == pytest.approx(expected / r.size)


def test_reversed_predictions_have_ic_minus_one_and_lose_every_move_plus_costs():
    ts, r, _ = market()
    result = evaluate(-r, r, ts, position_dollars=POSITION, cost_bps=COST_BPS)
    assert result["ic"] == pytest.approx(-1.0)
    assert result["rank_ic"] == pytest.approx(-1.0)
    assert result["ic_mean"] == pytest.approx(-1.0)
    assert result["hit_rate"] == 0.0
    expected = -np.abs(r).sum() * POSITION - r.size * POSITION * COST_BPS / 1e4
    assert result["dollar_profit"] == pytest.approx(expected)


def test_the_threshold_limits_trades_to_the_strongest_predictions():
    ts, r, rng = market()
    prediction = r + rng.normal(0.0, 0.01, r.size)
    threshold = trade_threshold(prediction, fraction=0.1)
    result = evaluate(prediction, r, ts, threshold=threshold)
    assert result["trades"] == r.size // 10
    traded = np.abs(prediction) >= threshold
    expected = (POSITION * (np.sign(prediction) * r - COST_BPS / 1e4))[traded].sum()
    assert result["dollar_profit"] == pytest.approx(expected)
    assert result["rows"] == r.size  # correlations still use every row


def test_a_threshold_chosen_on_validation_applies_out_of_sample():
    rng = np.random.default_rng(1)
    validation = rng.normal(size=10_000)
    threshold = trade_threshold(validation, fraction=0.2)
    assert np.mean(np.abs(validation) >= threshold) == pytest.approx(0.2)
    out_of_sample = rng.normal(size=10_000)
    assert np.mean(np.abs(out_of_sample) >= threshold) == pytest.approx(0.2, abs=0.02)


def test_trade_threshold_rejects_a_fraction_outside_zero_to_one_and_no_predictions():
    with pytest.raises(ValueError, match="fraction"):
        trade_threshold([0.1, 0.2], fraction=0.0)
    with pytest.raises(ValueError, match="fraction"):
        trade_threshold([0.1, 0.2], fraction=1.5)
    with pytest.raises(ValueError, match="finite"):
        trade_threshold([np.nan])


def test_zero_predictions_never_trade():
    ts, r, _ = market(sessions=2)
    prediction = r.copy()
    prediction[::2] = 0.0
    result = evaluate(prediction, r, ts)
    assert result["trades"] == r.size // 2
    assert result["hit_rate"] == 1.0


def test_per_row_costs_are_charged_to_their_own_trades():
    ts = np.array(["2024-11-04T15:00", "2024-11-04T15:05"], dtype="datetime64[ns]")
    result = evaluate([1.0, -1.0], [0.01, -0.02], ts, position_dollars=1000.0, cost_bps=[2.0, 10.0])
    assert result["dollar_profit"] == pytest.approx(1000 * 0.01 - 0.2 + 1000 * 0.02 - 1.0)


def test_nans_in_either_input_are_dropped_pairwise_and_counted():
    ts, r, _ = market(sessions=3)
    prediction = r.copy()
    prediction[[0, 5, 9]] = np.nan
    returns = r.copy()
    returns[[5, 11]] = np.nan
    result = evaluate(prediction, returns, ts)
    assert result["dropped"] == 4
    assert result["rows"] == r.size - 4
    assert result["ic"] == pytest.approx(1.0)
    assert all(math.isfinite(value) for value in result.values())


def test_constant_predictions_have_zero_ic_not_nan():
    ts, r, _ = market(sessions=3)
    result = evaluate(np.full(r.size, 0.5), r, ts)
    assert result["ic"] == 0.0
    assert result["rank_ic"] == 0.0
    assert result["ic_mean"] == 0.0
    assert result["ic_tstat"] == 0.0
    assert result["long_short_sharpe"] == 0.0
    assert all(math.isfinite(value) for value in result.values())


def test_every_value_is_a_plain_python_float():
    ts, r, rng = market(sessions=3)
    result = evaluate(rng.normal(size=r.size), r, ts)
    assert {
        "rows",
        "dropped",
        "ic",
        "rank_ic",
        "ic_mean",
        "ic_tstat",
        "hit_rate",
        "trades",
        "dollar_profit",
        "profit_per_trade",
        "long_short_sharpe",
    } <= result.keys()
    assert all(type(value) is float for value in result.values())


def test_no_rows_give_zeros():
    empty = np.array([], dtype=np.float64)
    result = evaluate(empty, empty, np.array([], dtype="datetime64[ns]"))
    assert result["rows"] == 0.0
    assert all(value == 0.0 for value in result.values())


def test_the_per_session_t_statistic_matches_a_hand_computation():
    ts, r, rng = market(sessions=6)
    prediction = r + rng.normal(0.0, 0.02, r.size)
    day = ts.astype("datetime64[D]")
    ics = np.array([spearman(prediction[day == d], r[day == d]) for d in np.unique(day)])
    result = evaluate(prediction, r, ts)
    assert result["ic_mean"] == pytest.approx(ics.mean())
    expected = ics.mean() / (ics.std(ddof=1) / math.sqrt(ics.size))
    assert result["ic_tstat"] == pytest.approx(expected)


def test_per_session_ics_with_many_ties_match_polars_spearman():
    ts, r, rng = market(sessions=5)
    prediction = np.round(r + rng.normal(0.0, 0.01, r.size), 2)  # a handful of distinct values
    frame = pl.DataFrame({"day": ts.astype("datetime64[D]"), "p": prediction, "r": np.round(r, 2)})
    ics = (
        frame.group_by("day")
        .agg(ic=pl.corr("p", "r", method="spearman"))
        .get_column("ic")
        .to_numpy()
    )
    result = evaluate(prediction, np.round(r, 2), ts)
    assert result["ic_mean"] == pytest.approx(ics.mean())
    assert result["ic_tstat"] == pytest.approx(ics.mean() / (ics.std(ddof=1) / math.sqrt(5)))
    assert result["rank_ic"] == pytest.approx(
        frame.select(pl.corr("p", "r", method="spearman")).item()
    )


def test_a_single_session_has_no_t_statistic_or_sharpe():
    ts, r, _ = market(sessions=1)
    result = evaluate(r, r, ts)
    assert result["ic_tstat"] == 0.0
    assert result["long_short_sharpe"] == 0.0


def test_sessions_given_explicitly_override_the_utc_date():
    ts, r, rng = market(sessions=4)
    prediction = r + rng.normal(0.0, 0.02, r.size)
    one_session = np.full(r.size, np.datetime64("2024-11-04"))
    result = evaluate(prediction, r, ts, session=one_session)
    assert result["sessions"] == 1
    assert result["ic_mean"] == pytest.approx(result["rank_ic"])
    assert result["ic_tstat"] == 0.0


def test_sessions_may_be_date_objects():
    ts, r, rng = market(sessions=4)
    prediction = r + rng.normal(0.0, 0.02, r.size)
    dates = np.array([d.item() for d in ts.astype("datetime64[D]")], dtype=object)
    assert evaluate(prediction, r, ts, session=dates) == evaluate(prediction, r, ts)


def test_decision_times_must_be_datetimes():
    with pytest.raises(ValueError, match="datetimes"):
        evaluate([1.0, 2.0], [1.0, 2.0], [0.0, 1.0])


def test_random_predictions_on_random_returns_have_small_t_statistics_on_average():
    tstats = []
    for seed in range(30):
        ts, r, rng = market(sessions=20, times=5, tickers=20, seed=seed)
        tstats.append(evaluate(rng.normal(size=r.size), r, ts)["ic_tstat"])
    # Under the null the statistic is roughly Student t with 19 degrees of freedom: E|t| ≈ 0.8.
    assert np.mean(np.abs(tstats)) < 1.3
    assert abs(np.mean(tstats)) < 0.6


def test_long_short_sharpe_is_positive_when_predictions_are_the_returns():
    ts, r, _ = market()
    assert evaluate(r, r, ts)["long_short_sharpe"] > 0
    assert evaluate(-r, r, ts)["long_short_sharpe"] < 0


def test_long_short_sharpe_annualises_the_daily_top_minus_bottom_quintile_spread():
    # Two sessions, one decision time each, ten names: quintiles are two names each.
    ts = np.repeat(np.array(["2024-11-04T15:00", "2024-11-05T15:00"], dtype="datetime64[ns]"), 10)
    prediction = np.tile(np.arange(10.0), 2)
    r = np.concatenate([np.arange(10.0) / 100, np.arange(10.0) / 50])
    spread = np.array([(8.5 - 0.5) / 100, (8.5 - 0.5) / 50])
    expected = spread.mean() / spread.std(ddof=1) * math.sqrt(252)
    assert evaluate(prediction, r, ts)["long_short_sharpe"] == pytest.approx(expected)


def test_decision_times_with_fewer_than_five_rows_are_not_ranked():
    ts, r, _ = market(tickers=4)
    assert evaluate(r, r, ts)["long_short_sharpe"] == 0.0


def test_spearman_gives_tied_values_their_average_rank():
    # ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_spearman_ignores_monotone_transforms_and_pearson_matches_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=500), rng.normal(size=500)
    b = a + b
    assert spearman(np.exp(a), b**3) == pytest.approx(spearman(a, b))
    assert pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_correlation_helpers_skip_nans_and_give_zero_for_constant_input():
    assert pearson([1.0, np.nan, 3.0, 4.0], [2.0, 5.0, 6.0, 8.0]) == pytest.approx(
        np.corrcoef([1.0, 3.0, 4.0], [2.0, 6.0, 8.0])[0, 1]
    )
    assert spearman([1.0, np.nan, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert pearson([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]) == 0.0
    assert spearman([1.0, 2.0, 3.0], [7.0, 7.0, 7.0]) == 0.0
    assert pearson([1.0], [2.0]) == 0.0


def test_mismatched_lengths_are_rejected():
    ts = np.array(["2024-11-04T15:00"] * 3, dtype="datetime64[ns]")
    with pytest.raises(ValueError, match="one value per row"):
        evaluate([1.0, 2.0], [1.0, 2.0, 3.0], ts)


def test_a_million_rows_evaluate_in_under_a_second():
    rng = np.random.default_rng(4)
    n = 1_000_000
    start = np.datetime64("2024-01-02T14:30", "ns")
    # 250 sessions x 40 decision times x 100 names
    ts = (
        start
        + np.arange(250).repeat(4000) * np.timedelta64(1, "D")
        + np.tile(np.arange(40).repeat(100), 250) * np.timedelta64(5, "m")
    )
    r = rng.normal(0.0, 0.01, n)
    prediction = r + rng.normal(0.0, 0.05, n)
    result = evaluate(prediction, r, ts)  # speed is measured by the benchmark, not asserted here
    assert result["rows"] == n
