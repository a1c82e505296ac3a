"""The position sizer: 2% of equity risked to the stop, at most $2,500 and the buying power."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from live.engine.settings import StrategySettings
from live.engine.sizing import Size, position_size, whole_shares

SETTINGS = StrategySettings()  # 2% risk, $2,500 per position


def test_max_position_binds_with_a_tight_stop_on_a_large_account():
    # $2,000 risk / $0.10 stop = 20,000 shares, but $2,500 / $25 = 100
    assert position_size(100_000, 25.0, 24.90, SETTINGS) == Size(100, "max_position")


def test_cap_applies_after_the_two_percent_rule():
    # $10k * 2% = $200 risk / $2 stop = 100 shares = $5,000 > $2,500, so 50 shares
    assert position_size(10_000, 50.0, 48.0, SETTINGS) == Size(50, "max_position")


def test_risk_binds_when_the_stop_is_wide():
    # $200 risk / $2 stop = 100 shares = $2,000, under the $2,500 cap (125 shares)
    assert position_size(10_000, 20.0, 18.0, SETTINGS) == Size(100, "risk")


def test_buying_power_binds_when_it_is_the_smallest_limit():
    # risk allows 20,000 and the cap 100 shares; $1,000 of buying power buys 40 at $25
    assert position_size(100_000, 25.0, 24.90, SETTINGS, buying_power=1_000) == Size(
        40, "buying_power"
    )


def test_infinite_buying_power_is_no_limit():
    assert position_size(100_000, 25.0, 24.90, SETTINGS, buying_power=math.inf) == Size(
        100, "max_position"
    )


def test_shares_are_rounded_down_to_whole_shares():
    # $200 / $3 = 66.67 shares
    assert position_size(10_000, 20.0, 17.0, SETTINGS) == Size(66, "risk")


def test_float_noise_does_not_lose_a_share():
    # 10.30 - 10.20 = 0.10000000000000142, and 200 / that = 1999.99999999997
    roomy = replace(SETTINGS, max_position_size=1_000_000)
    assert position_size(10_000, 10.30, 10.20, roomy) == Size(2000, "risk")


def test_exact_cap_quotient_gives_the_whole_number():
    assert whole_shares(2_500, 25.0) == 100
    assert whole_shares(0.3, 0.1) == 3  # 0.3 / 0.1 = 2.9999999999999996


def test_a_short_with_its_stop_above_entry_is_sized_by_the_distance():
    assert position_size(10_000, 20.0, 22.0, SETTINGS) == Size(100, "risk")


def test_risk_smaller_than_one_share_gives_zero_shares():
    # $1,000 * 2% = $20 risk, a $30 stop distance
    assert position_size(1_000, 100.0, 70.0, SETTINGS) == Size(0, "risk")


def test_no_buying_power_gives_zero_shares():
    assert position_size(100_000, 25.0, 24.90, SETTINGS, buying_power=0.0) == Size(
        0, "buying_power"
    )


@pytest.mark.parametrize("price", [0.0, -5.0, math.nan, math.inf])
def test_invalid_entry_price_gives_zero_shares(price):
    assert position_size(100_000, price, 24.90, SETTINGS) == Size(0, "invalid_price")


@pytest.mark.parametrize("stop", [math.nan, math.inf, -1.0])
def test_invalid_stop_gives_zero_shares(stop):
    assert position_size(100_000, 25.0, stop, SETTINGS) == Size(0, "invalid_stop")


def test_stop_at_entry_gives_zero_shares():
    assert position_size(100_000, 25.0, 25.0, SETTINGS) == Size(0, "zero_stop_distance")


@pytest.mark.parametrize("equity", [0.0, -1_000.0, math.nan])
def test_no_equity_gives_zero_shares(equity):
    assert position_size(equity, 25.0, 24.0, SETTINGS) == Size(0, "invalid_equity")


def test_nan_buying_power_gives_zero_shares():
    assert position_size(100_000, 25.0, 24.0, SETTINGS, buying_power=math.nan) == Size(
        0, "invalid_buying_power"
    )
