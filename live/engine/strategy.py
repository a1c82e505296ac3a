"""The strategy engine: one decision step per 1-minute bar close, for backtests and live trading.

Per bar, in order: update each ticker's ATR; update the kill switch (a halt flattens every
position and blocks entries); manage open positions (peak, trailing stop, then the first exit that
applies: stop, flat-at-close, profit target, peak retracement, holding time, opposite signal);
then entries for the session's focus tickers: signals from predictions and costs, a timeframe per
name (its ATR scale), a stop, a size (2% risk, $2,500 cap), the portfolio allocator's caps, the
open-positions limit, and an order type by spread and volatility. Decisions not taken are
recorded with their reason.

The engine reads bar ``row`` of ``bars`` (a :class:`~live.backtest.panel.MinutePanel` or a live
feed with the same arrays) and of ``signals`` (:class:`SignalPanel`); it never looks past ``row``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from live.engine.allocation import Candidate, allocate
from live.engine.orders import OrderGenerator
from live.engine.peaks import peak_exit, update_peak
from live.engine.portfolio import Portfolio
from live.engine.risk import PortfolioRiskManager
from live.engine.selection import select_timeframe, timeframe_atr_scale
from live.engine.settings import StrategySettings
from live.engine.signals import entry_signals, signal_strength
from live.engine.sizing import position_size
from live.engine.stops import initial_stop, stop_hit, trail_stop
from live.engine.targets import profit_target, target_hit
from live.engine.types import Cancel, Fill, Intent, Order, OrderType, Position

HISTORY_BARS = 60  # recent closes kept per ticker for the timeframe selector
# Flat-at-close decisions start this many minutes before the close, so a market exit has two bars
# to fill in (a name without a bar in the last minute is not carried overnight for that alone).
CLOSE_DECISION_MINUTES = 2
# Exits that cancel a resting order of the position (a target limit, an entry's unfilled rest).
URGENT = (Intent.STOP, Intent.CLOSE)


@dataclass
class SignalPanel:
    """Model output per (bar, ticker): expected excess return and round-trip cost (bps), and
    confidence in [0, 1); NaN where the model made no prediction on that bar's close."""

    expected_bps: np.ndarray
    confidence: np.ndarray
    cost_bps: np.ndarray

    @classmethod
    def empty(cls, rows: int, tickers: int) -> SignalPanel:
        return cls(*(np.full((rows, tickers), np.nan) for _ in range(3)))


class StrategyEngine:
    def __init__(
        self,
        bars,
        signals: SignalPanel,
        settings: StrategySettings | None = None,
        sectors: dict[str, str] | None = None,
        focus: dict[date, list[str]] | None = None,
        holding_minutes: int | None = None,
        strategy_id: str = "ats",
    ) -> None:
        """``focus``: each session's focus tickers (all tickers when absent); ``holding_minutes``:
        the holding-period optimiser's choice (the settings' ``max_holding_minutes`` if None)."""
        self.bars = bars
        self.signals = signals
        self.settings = settings or StrategySettings()
        self.sectors = sectors or {}
        self.focus = focus or {}
        self.tickers = list(bars.tickers)
        self.column = {t: j for j, t in enumerate(self.tickers)}
        n = len(self.tickers)
        self.holding_minutes = holding_minutes or self.settings.max_holding_minutes
        self.risk = PortfolioRiskManager(self.settings)
        self.orders = OrderGenerator(strategy_id, self.settings)
        self.atr = np.full(n, np.nan)  # Wilder ATR of 1-minute bars, dollars
        self.history = np.full((HISTORY_BARS, n), np.nan)
        self._head = 0
        self.last_close = np.full(n, np.nan)
        self.focus_mask = np.ones(n, dtype=bool)
        self.session_first = True
        self.rejections: list[dict] = []
        self._entry_plan: dict[str, dict] = {}  # client order id -> stop/target plan

    # -- session ------------------------------------------------------------------------------
    def start_session(self, day: date, rows: range, portfolio: Portfolio) -> None:
        tickers = self.focus.get(day)
        self.focus_mask = (
            np.ones(len(self.tickers), dtype=bool)
            if tickers is None
            else np.isin(np.asarray(self.tickers), list(tickers))
        )
        marks = {t: v for t, v in zip(self.tickers, self.last_close, strict=True) if v == v}
        self.risk.start_session(portfolio.equity(marks))
        self.session_first = True

    def end_session(self, day: date, portfolio: Portfolio) -> None:
        self._entry_plan.clear()  # DAY orders: whatever did not fill is gone

    # -- fills --------------------------------------------------------------------------------
    def on_fill(self, fill: Fill, row: int, portfolio: Portfolio) -> None:
        plan = self._entry_plan.get(fill.client_order_id)
        position = portfolio.positions.get(fill.ticker)
        if plan is None or position is None:
            return
        # Every fill of the entry (limits fill in parts) re-anchors stop and target on the
        # position's average price; the peak starts from the first fill.
        d = position.direction
        atr = plan["atr"]
        price = position.avg_price
        position.stop = float(initial_stop(d, price, atr, self.settings.stop_atr_multiple))
        position.target = float(profit_target(d, price, atr, self.settings.target_atr_multiple))
        if math.isnan(position.peak):
            position.peak = fill.price
        position.max_holding_bars = self.holding_minutes
        position.meta["atr"] = atr

    # -- decisions ----------------------------------------------------------------------------
    def _update_bar(self, row: int) -> None:
        bars = self.bars
        high, low, close = bars.high[row], bars.low[row], bars.close[row]
        # the previous close, except at a session's first bar (an overnight gap is not a range)
        prev = self.last_close if not self.session_first else np.full_like(close, np.nan)
        with np.errstate(invalid="ignore"):
            true_range = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
        n = self.settings.atr_bars
        have = np.isfinite(true_range)
        fresh = have & ~np.isfinite(self.atr)
        self.atr[fresh] = true_range[fresh]
        update = have & ~fresh
        self.atr[update] += (true_range[update] - self.atr[update]) / n
        seen = np.isfinite(close)
        self.last_close[seen] = close[seen]
        # a ring buffer: row ``_head`` is the oldest close (see _recent_closes)
        self.history[self._head] = self.last_close
        self._head = (self._head + 1) % HISTORY_BARS
        self.session_first = False

    def on_bar(
        self, row: int, equity: float, portfolio: Portfolio, pending: dict[str, list[Order]]
    ) -> list[Order | Cancel]:
        self._update_bar(row)
        state = self.risk.update(equity)
        if state.halted:
            return self._flatten(row, portfolio, pending, state.reason)
        decisions = self._manage(row, portfolio, pending)
        busy = set(pending) | {d.ticker for d in decisions}
        return decisions + self._enter(row, equity, portfolio, busy)

    def _flatten(
        self, row: int, portfolio: Portfolio, pending: dict[str, list[Order]], reason: str
    ) -> list[Order | Cancel]:
        """Kill switch: cancel every working order but a market exit, flatten every position."""
        decisions: list[Order | Cancel] = []
        for ticker, orders in pending.items():
            for order in orders:
                if not (order.order_type is OrderType.MARKET and order.intent is not Intent.ENTRY):
                    decisions.append(
                        Cancel(order.client_order_id, ticker, f"kill switch: {reason}")
                    )
        for ticker, position in portfolio.positions.items():
            if not _exiting(pending.get(ticker, ())):
                decisions.append(self._exit(position, Intent.KILL, row, reason))
        return decisions

    def _exit(self, position: Position, intent: Intent, row: int, reason: str) -> Order:
        j = self.column[position.ticker]
        close = self.last_close[j]
        return self.orders.exit(
            position,
            intent,
            close,
            self.bars.spread_bps[row, j],
            self._volatility_bps(j),
            self.bars.ts[row],
            reason=reason,
        )

    def _recent_closes(self, j: int) -> np.ndarray:
        """Ticker ``j``'s last HISTORY_BARS closes, oldest first."""
        column = self.history[:, j]
        return np.concatenate((column[self._head :], column[: self._head]))

    def _volatility_bps(self, j: int) -> float:
        close = self.last_close[j]
        return float(self.atr[j] / close * 1e4) if close > 0 else math.nan

    def _manage(
        self, row: int, portfolio: Portfolio, pending: dict[str, list[Order]]
    ) -> list[Order | Cancel]:
        # A position whose market exit is on its way is left alone; one with a resting limit (its
        # target, or the rest of its entry) is still watched for the urgent exits.
        held = [p for t, p in portfolio.positions.items() if not _exiting(pending.get(t, ()))]
        if not held:
            return []
        s = self.settings
        bars = self.bars
        cols = np.array([self.column[p.ticker] for p in held])
        d = np.array([p.direction for p in held])
        entry = np.array([p.avg_price for p in held])
        atr = np.array([p.meta.get("atr", self.atr[j]) for p, j in zip(held, cols, strict=True)])
        high, low, close = bars.high[row, cols], bars.low[row, cols], bars.close[row, cols]
        peak = update_peak(d, np.array([p.peak for p in held]), high, low)
        stop = trail_stop(d, np.array([p.stop for p in held]), peak, atr, s.trail_atr_multiple)
        target = np.array([p.target for p in held])
        closing = s.flat_at_close and bars.minutes_to_close[row] <= CLOSE_DECISION_MINUTES
        exits = {
            Intent.STOP: stop_hit(d, stop, high, low),
            Intent.CLOSE: np.full(len(held), closing, dtype=bool),
            Intent.TARGET: target_hit(d, target, high, low),
            Intent.PEAK: peak_exit(d, entry, peak, close, atr, s),
            Intent.TIME: np.array([p.bars_held + 1 >= p.max_holding_bars > 0 for p in held]),
        }
        expected = self.signals.expected_bps[row, cols]
        cost = self.signals.cost_bps[row, cols]
        with np.errstate(invalid="ignore"):
            exits[Intent.SIGNAL_EXIT] = d * expected < -s.cost_multiple * cost
        decisions: list[Order | Cancel] = []
        for k, position in enumerate(held):
            position.bars_held += 1
            position.peak = float(peak[k])
            position.stop = float(stop[k])
            resting = pending.get(position.ticker, ())
            for intent, hit in exits.items():
                if not hit[k] or (resting and intent not in URGENT):
                    continue
                reason = _exit_reason(intent, position)
                decisions += [
                    Cancel(o.client_order_id, o.ticker, f"replaced by a {intent} exit")
                    for o in resting
                ]
                decisions.append(self._exit(position, intent, row, reason))
                break
        return decisions

    def _enter(self, row: int, equity: float, portfolio: Portfolio, busy: set[str]) -> list[Order]:
        s = self.settings
        bars = self.bars
        if bars.minutes_to_close[row] <= s.entry_cutoff_minutes:
            return []
        expected = self.signals.expected_bps[row]
        cost = self.signals.cost_bps[row]
        held = np.zeros(len(self.tickers), dtype=bool)
        held[[self.column[t] for t in set(portfolio.positions) | busy]] = True
        tradable = self.focus_mask & ~held & np.isfinite(self.atr) & np.isfinite(bars.close[row])
        direction = entry_signals(expected, self.signals.confidence[row], cost, s, tradable)
        chosen = np.flatnonzero(direction)
        if not len(chosen):
            return []
        strength = signal_strength(expected, cost)
        ts = bars.ts[row]
        candidates, plans = [], {}
        for j in chosen:
            ticker = self.tickers[j]
            d = int(direction[j])
            price = float(bars.close[row, j])
            minutes = select_timeframe(self._recent_closes(j))
            atr = float(self.atr[j] * timeframe_atr_scale(minutes))
            stop = float(initial_stop(d, price, atr, s.stop_atr_multiple))
            size = position_size(equity, price, stop, s)
            if size.shares <= 0:
                self._reject(ts, ticker, f"size 0: {size.binding}")
                continue
            signal = f"{'long' if d > 0 else 'short'} {minutes}m"
            candidates.append(
                Candidate(
                    ticker,
                    d,
                    size.shares,
                    price,
                    float(strength[j]),
                    self.sectors.get(ticker, "Unknown"),
                    signal,
                )
            )
            plans[ticker] = {"atr": atr, "binding": size.binding}
        marks = {t: float(v) for t, v in zip(self.tickers, self.last_close, strict=True) if v == v}
        accepted, rejected = allocate(
            candidates, portfolio.positions, marks, self.sectors, equity, s
        )
        for rejection in rejected:
            self._reject(ts, rejection.ticker, rejection.reason)
        orders = []
        open_count = len(portfolio.positions) + sum(1 for t in busy if t not in portfolio.positions)
        for candidate in accepted:
            allowed, why = self.risk.can_open(open_count)
            if not allowed:
                self._reject(ts, candidate.ticker, why)
                continue
            j = self.column[candidate.ticker]
            order = self.orders.entry(
                candidate.ticker,
                candidate.direction,
                candidate.qty,
                candidate.price,
                bars.spread_bps[row, j],
                self._volatility_bps(j),
                ts,
                signal=candidate.signal,
                reason=(
                    f"expected {expected[j]:+.1f} bps vs cost {cost[j]:.1f} bps, "
                    f"confidence {self.signals.confidence[row, j]:.2f}, "
                    f"size by {plans[candidate.ticker]['binding']}"
                ),
            )
            self._entry_plan[order.client_order_id] = plans[candidate.ticker]
            orders.append(order)
            open_count += 1
        return orders

    def _reject(self, ts, ticker: str, reason: str) -> None:
        self.rejections.append({"ts": ts, "ticker": ticker, "reason": reason})

    def rejections_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            self.rejections,
            schema={"ts": pl.Datetime("us", "UTC"), "ticker": pl.Utf8, "reason": pl.Utf8},
            orient="row",
        )


def _exit_reason(intent: Intent, position: Position) -> str:
    return {
        Intent.STOP: f"stop {position.stop:.2f} hit",
        Intent.CLOSE: "flat at the session close",
        Intent.TARGET: f"target {position.target:.2f} reached",
        Intent.PEAK: f"retraced from peak {position.peak:.2f}",
        Intent.TIME: f"held {position.bars_held} of {position.max_holding_bars} minutes",
        Intent.SIGNAL_EXIT: "the model now predicts the other way",
    }.get(intent, str(intent))


def _exiting(orders) -> bool:
    """Whether a market exit is already working (it fills on the next bar with a print)."""
    return any(o.order_type is OrderType.MARKET and o.intent is not Intent.ENTRY for o in orders)
