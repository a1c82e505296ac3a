"""Entry signals: expected return must clear a multiple of the cost, with enough confidence."""

import numpy as np
import pytest

from live.engine.settings import StrategySettings
from live.engine.signals import entry_signals, signal_strength

# a hurdle of 2 * 5 bps = 10 bps and confidence of at least 0.6
SETTINGS = StrategySettings(cost_multiple=2.0, min_confidence=0.6, allow_short=True)


def test_long_needs_expected_return_strictly_above_cost_multiple_times_cost():
    signals = entry_signals([9.9, 10.0, 10.1], [0.9, 0.9, 0.9], 5.0, SETTINGS)
    assert signals.tolist() == [0, 0, 1]
    assert signals.dtype == np.int8


def test_confidence_at_the_threshold_passes_and_below_it_does_not():
    signals = entry_signals([20.0, 20.0, 20.0], [0.59, 0.6, 0.61], 5.0, SETTINGS)
    assert signals.tolist() == [0, 1, 1]


def test_short_is_the_mirror_of_long():
    signals = entry_signals([-10.1, -10.0, -20.0], [0.9, 0.9, 0.59], 5.0, SETTINGS)
    assert signals.tolist() == [-1, 0, 0]


def test_no_shorts_when_shorting_is_switched_off():
    no_shorts = StrategySettings(cost_multiple=2.0, min_confidence=0.6, allow_short=False)
    signals = entry_signals([-20.0, 20.0], [0.9, 0.9], 5.0, no_shorts)
    assert signals.tolist() == [0, 1]


def test_cost_is_per_ticker():
    signals = entry_signals([15.0, 15.0], [0.9, 0.9], [5.0, 10.0], SETTINGS)
    assert signals.tolist() == [1, 0]


def test_nan_in_any_input_gives_no_signal():
    nan = float("nan")
    signals = entry_signals(
        [nan, 20.0, 20.0, -20.0], [0.9, nan, 0.9, 0.9], [5.0, 5.0, nan, nan], SETTINGS
    )
    assert signals.tolist() == [0, 0, 0, 0]


def test_untradable_tickers_get_no_signal():
    signals = entry_signals([20.0, -20.0, 20.0], 0.9, 5.0, SETTINGS, tradable=[False, False, True])
    assert signals.tolist() == [0, 0, 1]


def test_scalars_give_a_zero_dimensional_array():
    signal = entry_signals(20.0, 0.9, 5.0, SETTINGS)
    assert isinstance(signal, np.ndarray)
    assert signal.shape == ()
    assert signal == 1


def test_signal_strength_is_edge_over_cost_in_cost_multiples_and_never_negative():
    strength = signal_strength([15.0, -15.0, 5.0, 3.0], 5.0)
    assert strength.tolist() == [2.0, 2.0, 0.0, 0.0]


def test_signal_strength_is_zero_where_an_input_is_missing():
    nan = float("nan")
    assert signal_strength([nan, 15.0], [5.0, nan]).tolist() == [0.0, 0.0]


def test_signal_strength_of_a_free_trade_is_its_expected_return_in_bps():
    assert signal_strength(-3.0, 0.0) == pytest.approx(3.0)
