"""The portfolio risk manager: daily-loss and drawdown kill switches, latching, open positions."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from live.engine.risk import PortfolioRiskManager, RiskState
from live.engine.settings import StrategySettings

SETTINGS = StrategySettings()  # 2% daily loss, 10% drawdown, 20 open positions
DAILY_LOSS = (
    "daily loss limit: lost $2,100.00 of $100,000.00 session open (limit 2.00% = $2,000.00)"
)


def manager(**overrides) -> PortfolioRiskManager:
    return PortfolioRiskManager(replace(SETTINGS, **overrides))


def test_a_loss_within_the_daily_limit_does_not_halt():
    risk = manager()
    risk.start_session(100_000)
    assert risk.update(98_500) == RiskState(False, "", -1_500.0, 0.015)


def test_a_loss_of_exactly_the_daily_limit_does_not_halt():
    risk = manager()
    risk.start_session(100_000)
    assert risk.update(98_000).halted is False


def test_a_loss_beyond_the_daily_limit_halts():
    risk = manager()
    risk.start_session(100_000)
    state = risk.update(97_900)
    assert state == RiskState(True, DAILY_LOSS, -2_100.0, 0.021)
    assert risk.halted is True


def test_the_daily_halt_latches_for_the_rest_of_the_session():
    risk = manager()
    risk.start_session(100_000)
    risk.update(97_900)
    assert risk.update(100_500) == RiskState(True, DAILY_LOSS, 500.0, 0.0)


def test_a_new_session_clears_the_daily_halt():
    risk = manager()
    risk.start_session(100_000)
    risk.update(97_900)
    assert risk.start_session(97_900) == RiskState(False, "", 0.0, 0.021)


def test_a_drawdown_beyond_the_limit_halts_even_on_a_winning_day():
    risk = manager(daily_loss_limit=0.5)
    risk.start_session(100_000)
    risk.update(120_000)
    state = risk.update(107_000)  # 10.83% below the $120,000 peak, +$7,000 on the day
    assert state.halted is True
    assert state.reason == "max drawdown: 10.83% below peak $120,000.00 (limit 10.00%)"
    assert state.daily_pnl == 7_000.0
    assert state.drawdown == 13_000 / 120_000


def test_the_drawdown_halt_survives_a_new_session():
    risk = manager(daily_loss_limit=0.5)
    risk.start_session(100_000)
    risk.update(120_000)
    risk.update(107_000)
    state = risk.start_session(107_000)
    assert state.halted is True
    assert state.reason.startswith("max drawdown")


def test_the_peak_carries_across_sessions():
    # two sessions each within the 2% daily limit, together 10.8% below the first session's peak
    risk = manager(daily_loss_limit=0.1)
    risk.start_session(100_000)
    risk.update(98_000)
    risk.start_session(98_000)
    assert (
        risk.update(89_200).reason == "max drawdown: 10.80% below peak $100,000.00 (limit 10.00%)"
    )


def test_reset_clears_the_drawdown_halt_and_restarts_the_peak():
    risk = manager(daily_loss_limit=0.5)
    risk.start_session(100_000)
    risk.update(120_000)
    risk.update(107_000)
    risk.reset()
    assert risk.halted is False
    assert risk.peak_equity == 107_000
    assert risk.update(106_000) == RiskState(False, "", -1_000.0, 1_000 / 107_000)


def test_reset_at_a_given_equity_restarts_the_session_there():
    risk = manager()
    risk.start_session(100_000)
    risk.update(97_900)
    risk.reset(97_500)
    assert risk.update(97_500) == RiskState(False, "", 0.0, 0.0)


def test_update_before_a_session_is_an_error():
    with pytest.raises(RuntimeError, match="start_session"):
        manager().update(100_000)


def test_an_equity_that_is_not_a_number_halts_until_the_next_session():
    risk = manager()
    risk.start_session(100_000)
    state = risk.update(math.nan)
    assert (state.halted, state.reason) == (True, "equity is not a number (nan)")
    assert risk.start_session(100_000).halted is False


def test_can_open_below_the_open_position_limit():
    risk = manager()
    risk.start_session(100_000)
    assert risk.can_open(19) == (True, "")


def test_cannot_open_at_the_open_position_limit():
    risk = manager()
    risk.start_session(100_000)
    assert risk.can_open(20) == (False, "max open positions: 20 of 20")


def test_cannot_open_while_halted():
    risk = manager()
    risk.start_session(100_000)
    risk.update(97_900)
    assert risk.can_open(0) == (False, DAILY_LOSS)
