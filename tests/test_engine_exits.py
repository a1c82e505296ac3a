"""Exits: the peak detector, the trailing ATR stop, the profit target and the holding period."""

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from live.engine.holding import forward_returns, optimal_holding
from live.engine.peaks import peak_exit, update_peak
from live.engine.settings import StrategySettings
from live.engine.stops import initial_stop, stop_hit, trail_stop
from live.engine.targets import profit_target, target_hit

NAN = float("nan")
# arms after 1.5 ATRs in favour, exits on a 1 ATR retracement from the peak
PEAKS = StrategySettings(peak_min_gain_atr=1.5, peak_retrace_atr=1.0)

# --- peak detector ------------------------------------------------------------------------------


def test_peak_is_the_highest_high_for_longs_and_the_lowest_low_for_shorts():
    peak = update_peak([1, -1], [101.0, 99.0], high=[102.0, 100.0], low=[100.0, 98.0])
    assert peak.tolist() == [102.0, 98.0]


def test_peak_never_moves_against_the_position():
    peak = update_peak([1, -1], [101.0, 99.0], high=[100.5, 100.5], low=[99.5, 99.5])
    assert peak.tolist() == [101.0, 99.0]


def test_a_new_position_starts_its_peak_from_the_bar_and_a_missing_bar_keeps_it():
    peak = update_peak(
        [1, -1, 1], [NAN, NAN, 101.0], high=[100.5, 100.5, NAN], low=[99.5, 99.5, NAN]
    )
    assert peak.tolist() == [100.5, 99.5, 101.0]


def test_flat_tickers_have_no_peak():
    assert np.isnan(update_peak(0, 50.0, 51.0, 49.0))


def test_peak_detector_does_not_exit_before_it_is_armed_however_far_price_falls_back():
    # 1.4 ATRs of gain, then all of it given back
    assert not peak_exit(1, 100.0, 101.4, 100.0, 1.0, PEAKS)
    assert not peak_exit(-1, 100.0, 98.6, 100.0, 1.0, PEAKS)


def test_armed_peak_detector_exits_on_a_retracement_of_the_set_atrs():
    exits = peak_exit([1, -1], 100.0, [101.5, 98.5], [100.5, 99.5], 1.0, PEAKS)
    assert exits.tolist() == [True, True]


def test_armed_peak_detector_holds_while_the_retracement_is_smaller():
    exits = peak_exit([1, -1], 100.0, [103.0, 97.0], [102.1, 97.9], 1.0, PEAKS)
    assert exits.tolist() == [False, False]


def test_peak_exit_is_false_for_flat_tickers_and_missing_data():
    exits = peak_exit([0, 1, 1, 1], 100.0, [103.0, NAN, 103.0, 103.0], [100.0, 100.0, 100.0, NAN],
                      [1.0, 1.0, NAN, 1.0], PEAKS)  # fmt: skip
    assert exits.tolist() == [False, False, False, False]


def test_a_long_rides_up_past_the_arming_gain_and_exits_on_the_first_close_one_atr_off_the_peak():
    highs = [100.5, 101.0, 102.0, 101.8, 101.2, 100.9]
    lows = [99.8, 100.4, 101.0, 101.3, 100.9, 100.6]
    closes = [100.3, 100.8, 101.8, 101.5, 101.1, 100.9]
    peak, exits = NAN, []
    for high, low, close in zip(highs, lows, closes, strict=True):
        peak = update_peak(1, peak, high, low)
        exits.append(bool(peak_exit(1, 100.0, peak, close, 1.0, PEAKS)))
    assert exits == [False, False, False, False, False, True]
    assert peak == 102.0


# --- stops --------------------------------------------------------------------------------------


def test_initial_stop_is_multiple_atrs_below_a_long_entry_and_above_a_short_entry():
    stop = initial_stop([1, -1, 0], 100.0, 0.5, 2.0)
    assert stop[:2].tolist() == [99.0, 101.0]
    assert np.isnan(stop[2])


def test_trailing_stop_of_a_long_follows_the_peak_up_and_never_loosens():
    stop, stops = 98.0, []
    # the peak dips, then the ATR triples: neither may pull the stop down
    for peak, atr in [(100.0, 1.0), (101.0, 1.0), (100.5, 1.0), (103.0, 3.0)]:
        stop = trail_stop(1, stop, peak, atr, 2.0)
        stops.append(float(stop))
    assert stops == [98.0, 99.0, 99.0, 99.0]


def test_trailing_stop_of_a_short_follows_the_peak_down_and_never_loosens():
    stop, stops = 102.0, []
    for peak, atr in [(100.0, 1.0), (99.0, 1.0), (99.5, 1.0), (97.0, 3.0)]:
        stop = trail_stop(-1, stop, peak, atr, 2.0)
        stops.append(float(stop))
    assert stops == [102.0, 101.0, 101.0, 101.0]


def test_a_missing_atr_keeps_the_stop():
    stop = trail_stop([1, -1], [99.0, 101.0], [105.0, 95.0], NAN, 2.0)
    assert stop.tolist() == [99.0, 101.0]


def test_long_stop_is_hit_when_the_low_touches_it_and_short_stop_when_the_high_does():
    hit = stop_hit([1, 1, -1, -1], [99.0, 99.0, 101.0, 101.0],
                   high=[100.0, 100.0, 101.0, 100.99], low=[99.0, 99.01, 100.0, 100.0])  # fmt: skip
    assert hit.tolist() == [True, False, True, False]


def test_stop_is_never_hit_for_flat_tickers_or_missing_bars():
    hit = stop_hit([0, 1, -1], [99.0, 99.0, 101.0], high=[200.0, NAN, NAN], low=[0.0, NAN, NAN])
    assert hit.tolist() == [False, False, False]


# --- targets ------------------------------------------------------------------------------------


def test_profit_target_is_multiple_atrs_above_a_long_entry_and_below_a_short_entry():
    target = profit_target([1, -1, 0], 100.0, 0.5, 4.0)
    assert target[:2].tolist() == [102.0, 98.0]
    assert np.isnan(target[2])


def test_long_target_is_hit_when_the_high_reaches_it_and_short_target_when_the_low_does():
    hit = target_hit([1, 1, -1, -1], [102.0, 102.0, 98.0, 98.0],
                     high=[102.0, 101.99, 99.0, 99.0], low=[101.0, 101.0, 98.0, 98.01])  # fmt: skip
    assert hit.tolist() == [True, False, True, False]


def test_target_is_never_hit_for_flat_tickers_or_missing_targets():
    hit = target_hit([0, 1], [102.0, NAN], high=[200.0, 200.0], low=[0.0, 0.0])
    assert hit.tolist() == [False, False]


# --- holding period -----------------------------------------------------------------------------

HORIZONS = (5, 10, 15, 30)


def past_signals(gross_bps: dict[int, float], trades: int = 40, cost_bps: float = 2.0):
    """``trades`` signals, alternately long and short, each earning ``gross_bps[h]`` +/- 1 bp
    (alternating, so the spread is known) in its direction after h minutes."""
    direction = np.where(np.arange(trades) % 2 == 0, 1, -1)
    noise = np.where(np.arange(trades) % 4 < 2, 1.0, -1.0)
    columns = {f"ret_{h}m": direction * (gross + noise) / 1e4 for h, gross in gross_bps.items()}
    return pl.DataFrame({"direction": direction, "cost_bps": cost_bps, **columns})


def test_holding_choice_is_the_horizon_with_the_best_mean_net_return():
    # net of 2 bps cost: 1, 4, 7 and 2 bps a trade
    choice = optimal_holding(past_signals({5: 3.0, 10: 6.0, 15: 9.0, 30: 4.0}), HORIZONS)
    assert choice.minutes == 15
    assert choice.table["horizon"].to_list() == [5, 10, 15, 30]
    assert choice.table["trades"].to_list() == [40, 40, 40, 40]
    assert choice.table["mean_net_bps"].to_list() == pytest.approx([1.0, 4.0, 7.0, 2.0])
    # +/- 1 bp around the mean over 40 trades: standard error sqrt(40/39)/sqrt(40) = 1/sqrt(39)
    expected_t = [m * np.sqrt(39) for m in (1.0, 4.0, 7.0, 2.0)]
    assert choice.table["t_stat"].to_list() == pytest.approx(expected_t)
    assert choice.reason.startswith("15 minutes")


def test_holding_falls_back_to_the_default_with_too_few_trades():
    signals = past_signals({5: 3.0, 10: 6.0, 15: 9.0, 30: 4.0}, trades=29)
    choice = optimal_holding(signals, HORIZONS, min_trades=30, default=30)
    assert choice.minutes == 30
    assert choice.table["trades"].to_list() == [29, 29, 29, 29]
    assert "29 signals" in choice.reason


def test_holding_falls_back_to_the_default_when_no_horizon_beats_its_costs():
    choice = optimal_holding(
        past_signals({5: 1.0, 10: 0.5, 15: 2.0, 30: 1.5}), HORIZONS, default=20
    )
    assert choice.minutes == 20
    assert "no horizon" in choice.reason


def test_a_horizon_that_too_few_signals_lived_long_enough_to_reach_is_not_chosen():
    signals = past_signals({5: 3.0, 10: 6.0, 15: 9.0, 30: 20.0})
    # only 10 of the 40 signals came early enough in the session to have a 30-minute return
    signals = signals.with_columns(
        pl.when(pl.int_range(pl.len()) < 10).then(pl.col("ret_30m")).alias("ret_30m")
    )
    choice = optimal_holding(signals, HORIZONS, min_trades=30)
    assert choice.minutes == 15
    assert choice.table.filter(pl.col("horizon") == 30)["trades"].item() == 10


def test_forward_returns_stay_inside_the_ticker_and_session():
    d1, d2 = date(2024, 11, 4), date(2024, 11, 5)
    minute = timedelta(minutes=1)
    t1, t2 = datetime(2024, 11, 4, 20, 57), datetime(2024, 11, 5, 14, 30)
    a_times = [t1, t1 + minute, t1 + 2 * minute, t2, t2 + minute]
    b_times = a_times[:3]
    bars = pl.DataFrame(
        {
            "ticker": ["A"] * 5 + ["B"] * 3,
            "session": [d1, d1, d1, d2, d2, d1, d1, d1],
            "ts": [*a_times, *b_times],
            "close": [10.0, 11.0, 12.0, 20.0, 22.0, 5.0, 5.5, 6.0],
        }
    )
    out = forward_returns(bars, (1, 2))
    ret_1m, ret_2m = out["ret_1m"].to_list(), out["ret_2m"].to_list()
    # the last bars of a session have no return rather than one into the next session or ticker
    assert [r is None for r in ret_1m] == [False, False, True, False, True, False, False, True]
    assert [r is None for r in ret_2m] == [False, True, True, True, True, False, True, True]
    assert [r for r in ret_1m if r is not None] == pytest.approx([0.1, 1 / 11, 0.1, 0.1, 1 / 11])
    assert [r for r in ret_2m if r is not None] == pytest.approx([0.2, 0.2])


def test_scalar_inputs_give_numpy_arrays():
    results = [
        update_peak(1, NAN, 101.0, 99.0),
        peak_exit(1, 100.0, 102.0, 100.5, 1.0, PEAKS),
        initial_stop(1, 100.0, 1.0, 2.0),
        trail_stop(1, 98.0, 101.0, 1.0, 2.0),
        stop_hit(1, 98.0, 101.0, 99.0),
        profit_target(1, 100.0, 1.0, 4.0),
        target_hit(1, 104.0, 101.0, 99.0),
    ]
    assert all(isinstance(r, np.ndarray) and r.shape == () for r in results)
    assert [r.item() for r in results] == [101.0, True, 98.0, 99.0, False, 104.0, False]
