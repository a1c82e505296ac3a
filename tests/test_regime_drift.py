"""Drift statistics: PSI and KS against a reference window, and prediction-performance decay."""

import math

import numpy as np
import polars as pl

from ats_assets.regime.drift import drift_summary, feature_drift, ks, performance_decay, psi

RNG = np.random.default_rng(3)
REFERENCE = RNG.normal(0.0, 1.0, 20_000)


def test_the_same_distribution_is_stable():
    same = RNG.normal(0.0, 1.0, 20_000)
    assert psi(REFERENCE, same) < 0.01
    assert ks(REFERENCE, same) < 0.03


def test_a_shift_of_one_standard_deviation_is_a_significant_psi():
    shifted = RNG.normal(1.0, 1.0, 20_000)
    assert psi(REFERENCE, shifted) > 0.25
    # KS of N(0,1) against N(1,1): 2 * Phi(0.5) - 1 = 0.383
    assert abs(ks(REFERENCE, shifted) - 0.383) < 0.02


def test_psi_of_hand_counted_bins():
    # reference deciles of 0..99 put ten values in each bin; all current values in the top bin
    reference = np.arange(100.0)
    current = np.full(50, 99.0)
    expected = 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (1.0 - 0.1) * math.log(1.0 / 0.1)
    assert abs(psi(reference, current) - expected) < 1e-9


def test_nan_values_are_ignored_and_too_few_values_give_nan():
    with_nan = np.concatenate([REFERENCE[:1000], np.full(500, np.nan)])
    assert psi(REFERENCE, with_nan) < 0.05
    assert math.isnan(psi(REFERENCE, np.array([1.0, 2.0])))


def test_feature_drift_ranks_the_drifted_feature_first_and_summarises():
    reference = pl.DataFrame({"a": REFERENCE, "b": REFERENCE})
    current = pl.DataFrame({"a": RNG.normal(0, 1, 20_000), "b": RNG.normal(2, 1, 20_000)})
    drift = feature_drift(reference, current, ["a", "b", "missing"])
    assert drift["feature"].to_list() == ["b", "a"]
    summary = drift_summary(drift)
    assert summary["psi_share_drifted"] == 0.5
    assert summary["psi_max"] == drift["psi"][0]


def test_decay_is_the_lost_share_of_the_validation_ic():
    assert performance_decay(0.03, 0.06) == 0.5
    assert performance_decay(-0.03, 0.06) == 1.5
    assert math.isnan(performance_decay(0.03, 0.0))
