"""Adaptation's pure parts: the ensemble re-weighting, the bounded tuner, importance drift."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from ats_assets.adaptation.importance import gain_shares, importance_drift
from ats_assets.adaptation.tuner import TUNED, Bound, TunerSettings, neighbours, start_point, tune
from ats_assets.adaptation.weighting import WeightingSettings, reweight, session_ics

PRIOR = {"a": 0.5, "b": 0.3, "c": 0.2}


def _ics(values: dict[str, list[float]]) -> pl.DataFrame:
    rows = []
    for member, ics in values.items():
        for i, ic in enumerate(ics):
            rows.append(
                {"session": date(2024, 1, 1) + timedelta(days=i), "member": member, "ic": ic}
            )
    return pl.DataFrame(rows)


def test_session_ics_are_spearman_per_session_and_member():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=400)
    scored = pl.DataFrame(
        {
            "session": [date(2024, 1, 1)] * 200 + [date(2024, 1, 2)] * 200,
            "excess_return": truth,
            "good": truth + rng.normal(scale=0.1, size=400),
            "noise": rng.normal(size=400),
        }
    )
    ics = session_ics(scored, ["good", "noise"])
    assert len(ics) == 4
    assert ics.filter(pl.col("member") == "good")["ic"].min() > 0.9
    assert ics.filter(pl.col("member") == "noise")["ic"].abs().max() < 0.25


def test_reweight_moves_toward_the_member_that_performed_and_keeps_the_floor():
    ics = _ics({"a": [-0.02] * 5, "b": [0.01] * 5, "c": [0.05] * 5})
    out = reweight(PRIOR, ics, WeightingSettings(strength=5.0, floor=0.05))
    weights = dict(zip(out["member"], out["weight"], strict=True))
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["c"] > PRIOR["c"] and weights["a"] < PRIOR["a"]
    # half-way to the target after as many sessions as the prior's strength
    target_c = 0.05 / 0.06
    assert weights["c"] == pytest.approx(0.5 * PRIOR["c"] + 0.5 * target_c, rel=1e-9)
    # a floor of 0.3 lifts the loser to 0.3 and the others share the rest
    floored = reweight(PRIOR, ics, WeightingSettings(strength=0.0, floor=0.3))
    assert floored["weight"].min() == pytest.approx(0.3)
    assert floored["weight"].sum() == pytest.approx(1.0)


def test_reweight_keeps_the_prior_without_evidence():
    out = reweight(PRIOR, _ics({"a": [-0.01] * 3, "b": [-0.02] * 3, "c": [0.0] * 3}))
    assert out["weight"].to_list() == pytest.approx(list(PRIOR.values()))
    empty = reweight(PRIOR, pl.DataFrame(schema={"session": pl.Date, "member": pl.String,
                                                  "ic": pl.Float64}))  # fmt: skip
    assert empty["weight"].to_list() == pytest.approx(list(PRIOR.values()))
    assert empty["sessions"].to_list() == [0, 0, 0]


def test_reweight_weighs_recent_sessions_more():
    # c was best long ago and worst lately; b the reverse
    ics = _ics({"a": [0.0] * 6, "b": [0.0, 0.0, 0.0, 0.04, 0.04, 0.04],
                "c": [0.04, 0.04, 0.04, 0.0, 0.0, 0.0]})  # fmt: skip
    out = reweight(PRIOR, ics, WeightingSettings(halflife=1.0))
    realized = dict(zip(out["member"], out["realized_ic"], strict=True))
    assert realized["b"] > realized["c"]


def test_neighbours_move_one_parameter_one_step_inside_the_bounds():
    current = start_point({"cost_multiple": 9.0, "min_confidence": 0.5, "stop_atr_multiple": 2.0,
                           "target_atr_multiple": 4.0})  # fmt: skip
    assert current["cost_multiple"] == 3.0  # clipped into its bound
    moves = dict(neighbours(current))
    assert "cost_multiple+" not in moves and "min_confidence-" not in moves
    assert moves["stop_atr_multiple+"]["stop_atr_multiple"] == 2.5
    assert len(moves) == 1 + 2 * len(TUNED) - 2


def test_tune_takes_the_best_move_only_when_it_gains_enough():
    bounds = (Bound("x", 0.0, 1.0, 0.25), Bound("y", 0.0, 1.0, 0.5))

    def evaluate(params):  # best at x = 1, y = 0
        return {"pnl": 100 * params["x"] - 40 * params["y"], "trades": 30}

    chosen, reason, records = tune({"x": 0.5, "y": 0.5}, evaluate, TunerSettings(10.0, 20), bounds)
    assert chosen == {"x": 0.75, "y": 0.5}
    assert reason.startswith("moved x+") and len(records) == 5
    kept, why, _ = tune({"x": 0.5, "y": 0.5}, evaluate, TunerSettings(30.0, 20), bounds)
    assert kept == {"x": 0.5, "y": 0.5} and "parameters kept" in why
    thin, why, _ = tune({"x": 0.5, "y": 0.5}, lambda p: {"pnl": 1e6, "trades": 3},
                        TunerSettings(1.0, 20), bounds)  # fmt: skip
    assert thin == {"x": 0.5, "y": 0.5} and "20+ trades" in why


def test_tuning_repeatedly_walks_to_the_optimum_and_stops_at_the_bound():
    bounds = (Bound("x", 0.0, 1.0, 0.25),)
    params = {"x": 0.0}
    path = []
    for _ in range(6):
        params, _, _ = tune(params, lambda p: {"pnl": 100 * p["x"], "trades": 50},
                            TunerSettings(1.0, 1), bounds)  # fmt: skip
        path.append(params["x"])
    assert path == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_importance_drift_between_weeks():
    columns = [f"f{i}" for i in range(30)]
    week1 = gain_shares({c: 30 - i for i, c in enumerate(columns)}, columns)
    assert week1["importance"].sum() == pytest.approx(1.0)
    assert week1["feature"][0] == "f0" and week1["rank"][0] == 1
    same = importance_drift(week1, week1)
    assert same["rank_correlation"] == pytest.approx(1.0) and same["top_overlap"] == 1.0
    reversed_gains = gain_shares({c: i + 1 for i, c in enumerate(columns)}, columns)
    flipped = importance_drift(reversed_gains, week1)
    assert flipped["rank_correlation"] == pytest.approx(-1.0)
    assert flipped["entered_top"] == sorted(f"f{i}" for i in range(20, 30))
    # a feature the booster never used counts zero
    sparse = gain_shares({"f0": 1.0}, columns)
    assert sparse["importance"].sum() == pytest.approx(1.0) and sparse["importance"][1] == 0.0
