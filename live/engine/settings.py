"""Every limit of the strategy engine and the fill model as a named setting with the client's default.

``StrategySettings.from_env`` reads the seed's variable names (``MAX_ACTIVE_TICKERS``,
``FOCUS_UNIVERSE_SIZE``, ``RISK_PERCENTAGE``, ``MAX_POSITION_SIZE``) and the ``ATS_*`` ones listed
in ``.env.sample``; a bad value ends in one line that names the variable and the fix.
Units: dollars, shares, fractions (0.02 = 2%), basis points (bps), minutes, ATR multiples.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ats_resources.settings import ConfigError, _bool, _float, _int


@dataclass(frozen=True)
class StrategySettings:
    # universe
    max_active_tickers: int = 150  # MAX_ACTIVE_TICKERS
    focus_universe_size: int = 40  # FOCUS_UNIVERSE_SIZE
    # sizing
    initial_capital: float = 100_000.0  # dollars
    risk_percentage: float = 0.02  # RISK_PERCENTAGE: equity risked to the stop per trade
    max_position_size: float = 2_500.0  # MAX_POSITION_SIZE: dollars per position
    # entries
    min_confidence: float = 0.5  # a prediction at the model's trading threshold has 0.5
    cost_multiple: float = 1.0  # expected return must exceed this many times the round-trip cost
    allow_short: bool = True
    entry_cutoff_minutes: int = 30  # no new entries this close to the session close
    # exits
    stop_atr_multiple: float = 2.0  # initial stop distance, in ATRs of 1-minute bars
    trail_atr_multiple: float = 2.0  # trailing distance from the peak, in ATRs
    target_atr_multiple: float = 4.0  # profit target distance, in ATRs
    peak_min_gain_atr: float = 1.5  # the peak detector arms after this favourable move
    peak_retrace_atr: float = 1.0  # ... and exits on this retracement from the peak
    max_holding_minutes: int = 30  # time exit (the models' label horizon)
    flat_at_close: bool = True
    atr_bars: int = 14
    # portfolio
    max_open_positions: int = 20
    max_gross_exposure: float = 1.0  # fraction of equity
    max_net_exposure: float = 0.5  # fraction of equity, long minus short
    max_sector_exposure: float = 0.25  # fraction of equity per sector, gross
    # kill switch
    daily_loss_limit: float = 0.02  # fraction of the session's opening equity
    max_drawdown: float = 0.10  # fraction of peak equity
    # order types
    limit_spread_bps: float = 8.0  # entries in names quoted wider than this use limit orders
    stop_limit_volatility_bps: float = (
        40.0  # entries in names with a 1-minute ATR above this use stop-limits
    )
    limit_ttl_minutes: int = 5  # unfilled rest of a limit order is cancelled after this

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StrategySettings:
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            name = _ENV_NAMES.get(f.name, f"ATS_{f.name.upper()}")
            default = f.default
            if isinstance(default, bool):
                values[f.name] = _bool(env, name, default)
            elif isinstance(default, int):
                values[f.name] = _int(env, name, default, 0)
            else:
                values[f.name] = _float(env, name, default, 0.0)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.focus_universe_size > self.max_active_tickers:
            raise ConfigError(
                f"FOCUS_UNIVERSE_SIZE={self.focus_universe_size} exceeds MAX_ACTIVE_TICKERS="
                f"{self.max_active_tickers}; the focus list is chosen from the active tickers"
            )
        for name in ("risk_percentage", "daily_loss_limit", "max_drawdown"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ConfigError(
                    f"{_ENV_NAMES.get(name, 'ATS_' + name.upper())}={value} must be a fraction "
                    "between 0 and 1 (0.02 = 2%)"
                )
        if self.max_position_size <= 0 or self.initial_capital <= 0:
            raise ConfigError("MAX_POSITION_SIZE and ATS_INITIAL_CAPITAL must be positive dollars")


_ENV_NAMES = {
    "max_active_tickers": "MAX_ACTIVE_TICKERS",
    "focus_universe_size": "FOCUS_UNIVERSE_SIZE",
    "risk_percentage": "RISK_PERCENTAGE",
    "max_position_size": "MAX_POSITION_SIZE",
}


@dataclass(frozen=True)
class ExecutionCosts:
    """The fill model's costs: slippage from spread and impact, commissions, regulatory fees.

    Defaults follow a commission-free US broker: the SEC fee on sales ($27.80 per million of sale
    proceeds) and FINRA's trading-activity fee on sales ($0.000166 per share, at most $8.30)."""

    commission_per_share: float = 0.0  # dollars
    commission_per_order: float = 0.0  # dollars per fill
    commission_min: float = 0.0  # dollars per fill, when a commission applies
    sec_fee_rate: float = 27.80e-6  # fraction of sale proceeds
    finra_taf_per_share: float = 0.000166  # dollars per share sold
    finra_taf_max: float = 8.30  # dollars per fill
    half_spread: bool = True  # market orders pay half the quoted spread
    impact_bps: float = 10.0  # impact at 100% participation; scales with sqrt(participation)
    participation_rate: float = 0.10  # most of a bar's volume a limit order can take
    default_spread_bps: float = 3.0  # when a bar has no quote

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExecutionCosts:
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            name = f"ATS_{f.name.upper()}"
            if isinstance(f.default, bool):
                values[f.name] = _bool(env, name, f.default)
            else:
                values[f.name] = _float(env, name, f.default, 0.0)
        return cls(**values)

    @classmethod
    def fixed(cls, commission_per_order: float = 0.0, commission_per_share: float = 0.0):
        """Only a fixed commission: no spread, impact or regulatory fee (reference comparisons)."""
        return cls(
            commission_per_share=commission_per_share,
            commission_per_order=commission_per_order,
            sec_fee_rate=0.0,
            finra_taf_per_share=0.0,
            half_spread=False,
            impact_bps=0.0,
            default_spread_bps=0.0,
        )

    def fees(self, side: str, qty: int, price: float) -> float:
        """Dollars of commission and regulatory fees for one fill of ``qty`` shares at ``price``."""
        commission = self.commission_per_order + self.commission_per_share * qty
        if commission > 0:
            commission = max(commission, self.commission_min)
        regulatory = 0.0
        if side == "sell":
            regulatory = self.sec_fee_rate * qty * price + min(
                self.finra_taf_per_share * qty, self.finra_taf_max
            )
        return round(commission + regulatory, 2)
