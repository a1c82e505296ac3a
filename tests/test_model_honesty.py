"""Honesty on the simulated market: models find the planted signal, and invent none without it.

The simulated market plants a known signal (informed options-flow alerts drift the price over the
next hour) and tells us which alerts were informed. A row's *planted* value is the drift those
alerts still add over the row's holding horizon; its IC with the excess forward return is the
best any model could hope for. With the signal on, the ensemble's out-of-sample IC (a week it
never saw) must reach half of that, and its dollar profit after costs must be positive. With the
signal off, its out-of-sample IC must be statistically indistinguishable from zero: a model that
"finds" something there has leaked the future into its inputs.
"""

from datetime import date

import numpy as np
import polars as pl
import pytest

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.frames import minute_frame, resample
from ats_assets.features.pipeline import DAILY_HISTORY_SESSIONS, compute_days
from ats_assets.features.registry import catalogue
from ats_assets.models import metrics
from ats_assets.models.dataset import calibrate, score, to_matrix, with_excess_return
from ats_assets.models.labels import LabelSpec, training_rows
from ats_assets.models.neural import NeuralConfig
from ats_assets.models.serving import EnsemblePredictor, Predictor, ensemble_weights
from ats_assets.models.training import TrainingConfig, fit, split
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig

pytestmark = pytest.mark.slow

TICKERS = 120
TRAIN_SESSIONS, TEST_SESSIONS = 15, 5
SPEC = LabelSpec()
SIGNAL_MINUTES = 60  # the simulated drift lasts this long after an informed alert
T_CRITICAL = 2.776  # two-sided 95% Student t with 4 degrees of freedom (5 test sessions)


def _simulate(signal: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Labelled rows of 20 sessions and the planted (informed) alerts."""
    market = SimulatedMarket(SimulationConfig(n_tickers=TICKERS, planted_signal=signal))
    calendar = nyse_calendar()
    days = calendar.sessions_between(date(2024, 1, 2), date(2024, 12, 31))
    history = days[: DAILY_HISTORY_SESSIONS + TRAIN_SESSIONS + TEST_SESSIONS]
    wanted = history[DAILY_HISTORY_SESSIONS:]
    frames = {
        kind: pl.concat(
            [getattr(market.day(d), kind).with_columns(session=pl.lit(d)) for d in history]
        )
        for kind in ("bars", "quotes", "trades", "options_flow")
    }
    minute = minute_frame(
        frames["bars"], frames["quotes"], frames["trades"], frames["options_flow"]
    )
    features = compute_days(minute, resample(minute, "1d"), wanted, catalogue())
    rows = with_excess_return(training_rows(features, frames["bars"], SPEC))
    planted = pl.concat([market.planted_events(d) for d in wanted])
    return rows, planted.filter(pl.col("planted_drift_bps") != 0)


def _planted_value(rows: pl.DataFrame, planted: pl.DataFrame) -> np.ndarray:
    """Drift (bps) the informed alerts add between each row's entry and exit, in row order."""
    if planted.is_empty():
        return np.zeros(len(rows))
    alerts = planted.select(
        "ticker", alert=pl.col("ts").dt.truncate("1m"), drift=pl.col("planted_drift_bps")
    )
    lag = (pl.col("alert") - pl.col("ts")).dt.total_minutes()
    # the drift runs over the bars after the alert's; the trade holds the bars after the entry's
    first = pl.max_horizontal(lag + 1, pl.lit(1))
    last = pl.min_horizontal(lag + SIGNAL_MINUTES, pl.lit(SPEC.horizon_minutes))
    overlap = (last - first + 1).clip(lower_bound=0)
    value = (
        rows.select("ticker", "ts")
        .with_row_index("row")
        .join(alerts, on="ticker")
        .group_by("row")
        .agg((pl.col("drift") * overlap / SIGNAL_MINUTES).sum().alias("planted"))
    )
    out = rows.select("ticker", "ts").with_row_index("row").join(value, on="row", how="left")
    return out.sort("row")["planted"].fill_null(0.0).to_numpy()


def _ensemble_out_of_sample(rows: pl.DataFrame) -> tuple[dict, dict, np.ndarray]:
    """Train the three models and the ensemble on the first sessions, score the last week."""
    rows = rows.sort("ticker", "ts")
    sessions = sorted(rows["session"].unique().to_list())
    cut = sessions[-TEST_SESSIONS]
    train_rows = rows.filter(pl.col("session") < cut)
    test_rows = rows.filter(pl.col("session") >= cut)
    config = TrainingConfig()
    train_data = to_matrix(train_rows)
    members = {
        "xgboost": fit(train_data, "xgboost", config),
        "lstm": fit(train_data, "lstm", config, NeuralConfig("lstm", epochs=6, max_seconds=60)),
        "attention": fit(
            train_data, "attention", config, NeuralConfig("attention", epochs=4, max_seconds=60)
        ),
    }
    weights = ensemble_weights({k: m.validation["ic"] for k, m in members.items()})
    ensemble = EnsemblePredictor(
        [
            Predictor(m.kind, m.model, m.columns, m.threshold, m.scale, m.calibration)
            for m in members.values()
        ],
        [weights[k] for k in members],
        threshold=0.0,
    )
    _, valid = split(train_data, config)
    valid_frame = train_rows.join(
        pl.DataFrame({"ts": valid.ts})
        .unique()
        .with_columns(pl.col("ts").dt.replace_time_zone("UTC")),
        on="ts",
    )
    _, on_valid, _ = ensemble.raw_with_agreement(valid_frame)
    ensemble.threshold = metrics.trade_threshold(on_valid, config.trade_fraction)
    ensemble.calibration = calibrate(on_valid, to_matrix(valid_frame))
    prediction = ensemble.predict(test_rows)["prediction"].to_numpy()
    test_data = to_matrix(test_rows)
    result = score(
        prediction,
        test_data,
        threshold=ensemble.threshold,
        position_dollars=2500.0,
        calibration=ensemble.calibration,
    )
    per_model = {k: round(m.validation["ic"], 4) for k, m in members.items()}
    return result, per_model, test_rows


@pytest.fixture(scope="module")
def signal_on():
    rows, planted = _simulate(signal=True)
    result, per_model, test_rows = _ensemble_out_of_sample(rows)
    planted_value = _planted_value(test_rows, planted)
    planted_ic = metrics.pearson(planted_value, test_rows["excess_return"].to_numpy())
    return result, per_model, planted_ic


def test_with_the_signal_on_the_ensemble_finds_at_least_half_of_it(signal_on):
    result, per_model, planted_ic = signal_on
    print(
        f"\nsignal on: planted IC {planted_ic:.4f}, ensemble OOS IC {result['ic']:.4f}, "
        f"rank IC {result['rank_ic']:.4f}, validation ICs {per_model}"
    )
    assert planted_ic > 0.03  # the planted signal is there to be found
    assert result["ic"] >= 0.5 * planted_ic


def test_with_the_signal_on_the_ensemble_makes_money_after_costs(signal_on):
    result, _, _ = signal_on
    print(
        f"\nsignal on: OOS dollar profit {result['dollar_profit']:.2f} over "
        f"{result['trades']:.0f} trades, hit rate {result['hit_rate']:.3f}"
    )
    assert result["trades"] > 100
    assert result["dollar_profit"] > 0


def test_with_the_signal_off_out_of_sample_ic_is_indistinguishable_from_zero():
    rows, planted = _simulate(signal=False)
    assert planted.is_empty()
    result, per_model, _ = _ensemble_out_of_sample(rows)
    print(
        f"\nsignal off: ensemble OOS IC {result['ic']:.4f}, per-session t {result['ic_tstat']:.2f}, "
        f"validation ICs {per_model}"
    )
    assert abs(result["ic_tstat"]) < T_CRITICAL
    assert abs(result["ic"]) < 0.03
