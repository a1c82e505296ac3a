"""The portfolio risk manager: a latching kill switch on daily loss and drawdown, and a position limit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from live.engine.settings import StrategySettings


@dataclass(frozen=True)
class RiskState:
    """The kill switch after an equity update.

    ``daily_pnl`` is dollars since the session opened; ``drawdown`` a fraction of peak equity
    (0.05 = 5% below the peak); ``reason`` says why trading is halted (empty when it is not)."""

    halted: bool
    reason: str
    daily_pnl: float
    drawdown: float


class PortfolioRiskManager:
    """Halts new risk when the session loses ``daily_loss_limit`` of its opening equity (until the
    next session) or equity falls ``max_drawdown`` below its peak (until ``reset``)."""

    def __init__(self, settings: StrategySettings) -> None:
        self._daily_loss_limit = settings.daily_loss_limit
        self._max_drawdown = settings.max_drawdown
        self._max_open_positions = settings.max_open_positions
        self._session_open: float | None = None
        self._peak: float | None = None
        self._last_equity: float | None = None
        # two latches because they clear at different times
        self._session_halt = ""
        self._drawdown_halt = ""

    @property
    def halted(self) -> bool:
        return bool(self._session_halt or self._drawdown_halt)

    @property
    def reason(self) -> str:
        """Why trading is halted; the drawdown latch wins as it outlives the session."""
        return self._drawdown_halt or self._session_halt

    @property
    def peak_equity(self) -> float | None:
        """Highest equity seen (dollars) since construction or the last ``reset``."""
        return self._peak

    def start_session(self, equity: float) -> RiskState:
        """Open a session at ``equity`` dollars: clears a daily-loss halt, never a drawdown halt."""
        self._session_halt = ""
        self._session_open = equity
        return self.update(equity)

    def update(self, equity: float) -> RiskState:
        """Mark the portfolio at ``equity`` dollars and latch a halt if a limit is exceeded."""
        if self._session_open is None:
            raise RuntimeError("PortfolioRiskManager.update before start_session")
        if not math.isfinite(equity) or not math.isfinite(self._session_open):
            # a broken equity feed must not let trading continue blind
            self._session_halt = self._session_halt or f"equity is not a number ({equity})"
            return RiskState(self.halted, self.reason, math.nan, math.nan)

        self._last_equity = equity
        self._peak = equity if self._peak is None else max(self._peak, equity)
        daily_pnl = equity - self._session_open
        drawdown = (self._peak - equity) / self._peak if self._peak > 0 else 0.0

        loss_limit = self._daily_loss_limit * self._session_open
        if -daily_pnl > loss_limit and not self._session_halt:
            self._session_halt = (
                f"daily loss limit: lost ${-daily_pnl:,.2f} of ${self._session_open:,.2f} "
                f"session open (limit {self._daily_loss_limit:.2%} = ${loss_limit:,.2f})"
            )
        if drawdown > self._max_drawdown and not self._drawdown_halt:
            self._drawdown_halt = (
                f"max drawdown: {drawdown:.2%} below peak ${self._peak:,.2f} "
                f"(limit {self._max_drawdown:.2%})"
            )
        return RiskState(self.halted, self.reason, daily_pnl, drawdown)

    def reset(self, equity: float | None = None) -> None:
        """Operator's release of both latches. Peak and session-open equity restart at ``equity``
        dollars (default: the last equity seen) so the old losses do not trip the switch at once."""
        self._session_halt = ""
        self._drawdown_halt = ""
        base = equity if equity is not None else self._last_equity
        self._peak = base
        self._last_equity = base
        if self._session_open is not None and base is not None:
            self._session_open = base

    def can_open(self, open_positions: int) -> tuple[bool, str]:
        """Whether one more position may be opened with ``open_positions`` already open."""
        if self.halted:
            return False, self.reason
        if open_positions >= self._max_open_positions:
            return False, f"max open positions: {open_positions} of {self._max_open_positions}"
        return True, ""
