"""One trading session: bars arrive, the broker fills, the engine decides, orders go out.

Per bar, in the backtest's order (``live.backtest.simulator.run_backtest``): the broker's fills
of that bar are booked and handed to the engine, equity is marked at the bar's close, the
model's signals for the bar are computed, the engine decides on the close, and every decision
passes the pre-trade guards (``guards.py``) before it reaches the broker. With the simulated
broker a replayed day therefore trades exactly as the backtest does on that day.

Safety:
- every order carries the engine's deterministic ``client_order_id``; the broker's ``submit`` is
  idempotent on it, so a retry never places a second order;
- positions and open orders are reconciled with the broker on start (the broker is the truth:
  its positions are adopted, stale orders of an earlier run cancelled) and after any broker error;
- the engine's kill switch (daily loss, drawdown) flattens and halts; the guards then refuse all
  but position-reducing orders; a notification goes out once;
- every decision that does not reach the broker is recorded with its reason.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from live.backtest.simulator import TRADE_SCHEMA
from live.brokers.base import Broker, BrokerError, OrderRejected
from live.engine.portfolio import Portfolio
from live.engine.settings import StrategySettings
from live.engine.strategy import StrategyEngine
from live.engine.types import Cancel, Fill, Intent, Order
from live.session.guards import GuardState, check
from live.session.records import SessionRecords
from live.session.signals import SignalUpdater

Notify = Callable[[str, str, str], None]  # (severity, title, text)


def _no_notify(severity: str, title: str, text: str) -> None:
    return None


@dataclass
class SessionResult:
    day: date
    records: SessionRecords
    trades: pl.DataFrame
    portfolio: Portfolio
    halted: bool
    bars: int
    latency_ms: np.ndarray  # per bar: from the bar's arrival to the last order handed over
    rejections: pl.DataFrame = field(default_factory=pl.DataFrame)
    error: str | None = None  # why the session stopped early (its records are still complete)

    @property
    def pnl(self) -> float:
        return float(self.trades["pnl"].sum()) if self.trades.height else 0.0


class LiveSession:
    def __init__(
        self,
        *,
        day: date,
        engine: StrategyEngine,
        feed,
        updater: SignalUpdater,
        broker: Broker,
        settings: StrategySettings,
        clock,
        portfolio: Portfolio,
        sectors: dict[str, str] | None = None,
        notify: Notify = _no_notify,
        snapshot_minutes: int = 15,
        notify_fills: bool = True,
    ) -> None:
        self.day = day
        self.engine = engine
        self.feed = feed
        self.panel = feed.panel
        self.updater = updater
        self.broker = broker
        self.settings = settings
        self.clock = clock
        self.portfolio = portfolio
        self.sectors = sectors or {}
        self.notify = notify
        self.snapshot_minutes = snapshot_minutes
        self.notify_fills = notify_fills
        self.records = SessionRecords(day)
        self.orders: dict[str, Order] = {}
        self.column = self.panel.column()
        self.last = np.full(len(self.panel.tickers), np.nan)
        self._halt_reported = False
        self._buying_power = math.inf
        self.row = 0
        self.error: str | None = None
        self.settle_polls, self.settle_wait_s = 10, 0.2  # at most 2 s per cancel

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> SessionResult:
        panel = self.panel
        rows = len(panel.ts)
        latency = np.full(rows, np.nan)
        self.reconcile(panel.ts[0], starting=True)
        self.engine.start_session(self.day, range(rows), self.portfolio)
        focus = set(self.engine.focus.get(self.day, self.panel.tickers))
        self.notify("info", f"Live session {self.day} started",
                    f"broker {self.broker.name}; {len(focus)} focus tickers")  # fmt: skip
        on_bar = getattr(self.broker, "on_bar", None)
        self._check_broker_clock(panel.ts[0])
        for i in range(rows):
            ts = panel.ts[i]
            self.row = i
            try:
                self.clock.wait_for_bar(ts)
                self.feed.deliver(i)
                began = time.perf_counter()
                if on_bar is not None:
                    on_bar(i)
                for fill in self._poll_fills(ts):
                    self._book(fill, i)
                close = panel.close[i]
                seen = np.isfinite(close)
                self.last[seen] = close[seen]
                equity = self._equity()
                self._expire(ts)
                self.updater.update(i, ts, focus | set(self.portfolio.positions))
                pending = self._pending()
                decisions = self.engine.on_bar(i, equity, self.portfolio, pending)
                self._report_halt(ts)
                for decision in decisions:
                    self._act(decision, i, ts)
                latency[i] = (time.perf_counter() - began) * 1e3
                if (i + 1) % self.snapshot_minutes == 0 or i == rows - 1:
                    self._snapshot(ts, equity)
            except Exception as error:  # the session stops; its records and the alert must not
                self._abort(ts, error)
                break
        self._end(panel.ts[-1])
        trades = pl.DataFrame(
            [t.record(self.sectors.get(t.ticker, "unknown")) for t in self.portfolio.round_trips],
            schema=TRADE_SCHEMA,
            orient="row",
        )
        pnl = float(trades["pnl"].sum()) if trades.height else 0.0
        self.notify("info", f"Live session {self.day} ended",
                    f"{trades.height} round trips, P&L ${pnl:,.2f}; "
                    f"{len(self.records.fills)} fills")  # fmt: skip
        return SessionResult(
            day=self.day,
            records=self.records,
            trades=trades,
            portfolio=self.portfolio,
            halted=self.engine.risk.halted,
            bars=rows,
            latency_ms=latency,
            rejections=self.engine.rejections_frame(),
            error=self.error,
        )

    def _abort(self, ts: datetime, error: Exception) -> None:
        """An unexpected error stops the session: cancel its working orders, say so loudly.
        Open positions are left to the next start's reconciliation (listed in the alert)."""
        self.error = f"{type(error).__name__}: {error}"
        self.records.event(ts, "session_error", self.error)
        held = ", ".join(f"{t} {p.qty:+d}" for t, p in self.portfolio.positions.items())
        self.notify("critical", f"Live session {self.day} stopped on an error",
                    f"{self.error}; working orders cancelled; open positions: {held or 'none'}")  # fmt: skip

    def _expire(self, ts: datetime) -> None:
        """Cancel working limit orders whose time is up, as the simulated broker does, for a
        broker that keeps DAY orders all day: one expiring by the next bar's open goes now."""
        if getattr(self.broker, "handles_expiry", False):
            return
        due = ts + timedelta(minutes=1)
        for orders in self._pending().values():
            for order in orders:
                if order.expires_at is not None and order.expires_at <= due:
                    try:
                        self.broker.cancel(order.client_order_id)
                    except BrokerError as error:
                        self._broker_error(ts, f"expire {order.client_order_id}", error)

    def _check_broker_clock(self, ts: datetime) -> None:
        """Real time: what the broker's clock says at the start (recorded; the guards use the
        wall clock bar by bar)."""
        if self.clock.now() is None:
            return
        try:
            clock = self.broker.clock()
        except BrokerError as error:
            self.records.event(ts, "broker_error", f"clock: {error}")
            return
        state = "open" if clock.is_open else f"closed, next open {clock.next_open:%Y-%m-%d %H:%M}"
        self.records.event(ts, "market_clock", f"broker clock {clock.timestamp}: market {state}")

    # -- fills and marks --------------------------------------------------------------------
    def _poll_fills(self, ts: datetime) -> list[Fill]:
        try:
            return self.broker.poll_fills()
        except BrokerError as error:
            self._broker_error(ts, "poll fills", error)
            return []

    def _book(self, fill: Fill, row: int) -> None:
        self.portfolio.apply(fill)
        self.engine.on_fill(fill, row, self.portfolio)
        self.records.fill(fill)
        if self.notify_fills:
            self.notify("info", f"Fill {fill.ticker}",
                        f"{fill.side} {fill.qty} {fill.ticker} @ ${fill.price:,.2f} "
                        f"({fill.intent})")  # fmt: skip

    def _marks(self) -> dict[str, float]:
        return {
            t: float(self.last[j])
            for t, j in self.column.items()
            if t in self.portfolio.positions and math.isfinite(self.last[j])
        }

    def _equity(self) -> float:
        # as the backtest marks: last close, and 0 for a ticker that has not traded yet
        value = 0.0
        for ticker, position in self.portfolio.positions.items():
            mark = self.last[self.column[ticker]] if ticker in self.column else math.nan
            value += position.qty * (mark if math.isfinite(mark) else 0.0)
        return self.portfolio.cash + value

    def _pending(self) -> dict[str, list[Order]]:
        working = getattr(self.broker, "working", None)
        if working is not None:
            orders = working()
        else:
            try:
                orders = [
                    self.orders[o.client_order_id]
                    for o in self.broker.open_orders()
                    if o.client_order_id in self.orders
                ]
            except BrokerError as error:
                self._broker_error(self.panel.ts[0], "open orders", error)
                orders = []
        pending: dict[str, list[Order]] = {}
        for order in orders:
            pending.setdefault(order.ticker, []).append(order)
        return pending

    # -- decisions --------------------------------------------------------------------------
    def _act(self, decision: Order | Cancel, row: int, ts: datetime) -> None:
        if isinstance(decision, Cancel):
            try:
                self.broker.cancel(decision.client_order_id)
                self._settle(decision.client_order_id, row)
            except BrokerError as error:
                self._broker_error(ts, f"cancel {decision.client_order_id}", error)
            return
        order = decision
        arrival = self.last[self.column[order.ticker]]
        reason = check(order, self._guard_state(order, row), self.settings)
        if reason is not None:
            self.records.order(order, "rejected", reason, arrival=arrival)
            self.engine.rejections.append({"ts": ts, "ticker": order.ticker, "reason": reason})
            return
        known = order.client_order_id in self.orders
        try:
            placed = self.broker.submit(order)
        except OrderRejected as error:
            self.records.order(order, "rejected", f"broker: {error}", arrival=arrival)
            self.notify("warning", f"Order rejected: {order.ticker}", str(error))
            return
        except BrokerError as error:
            # the outcome is unknown: the order may exist at the broker. Keep it, so that it
            # counts as working (the engine does not decide again) and its fills map back.
            self.orders[order.client_order_id] = order
            self.records.order(order, "unknown", str(error), arrival=arrival)
            self._broker_error(ts, f"submit {order.client_order_id}", error)
            return
        self.orders[order.client_order_id] = order
        self.records.order(order, "duplicate" if known else "submitted",
                           broker_id=placed.broker_order_id, arrival=arrival)  # fmt: skip

    def _settle(self, client_order_id: str, row: int) -> None:
        """After a cancel at a broker that cancels asynchronously: wait (bounded) until the order
        is done, then book any fill that beat the cancel, so that the exit decided next sees the
        true position (the guards refuse an "exit" larger than it: no accidental flip)."""
        if getattr(self.broker, "handles_expiry", False):
            return  # the simulation cancels at once
        for _ in range(self.settle_polls):
            placed = self.broker.get_order(client_order_id)
            if placed is None or not placed.status.open:
                break
            time.sleep(self.settle_wait_s)
        for fill in self.broker.poll_fills():
            self._book(fill, row)

    def _guard_state(self, order: Order, row: int) -> GuardState:
        position = self.portfolio.positions.get(order.ticker)
        entries = [
            o for orders in self._pending().values() for o in orders if o.intent is Intent.ENTRY
        ]
        tickers = set(self.portfolio.positions) | {o.ticker for o in entries}
        committed = sum(o.qty * (o.limit_price or self._last(o.ticker)) for o in entries)
        if order.intent is Intent.ENTRY:
            with contextlib.suppress(BrokerError):  # on an error, keep the last figure
                account = self.broker.account()
                # an account the broker blocks from trading has no buying power for entries
                self._buying_power = 0.0 if account.trading_blocked else account.buying_power
        return GuardState(
            halted=self.engine.risk.halted,
            market_open=self._market_open(),
            last_price=self._last(order.ticker),
            held_qty=position.qty if position else 0,
            open_positions=len(tickers),
            buying_power=self._buying_power - committed,
        )

    def _market_open(self) -> bool:
        """By the wall clock in real time (the session's open to its close); a replay's bars
        are the session's by construction."""
        now = self.clock.now()
        if now is None:
            return True
        return self.panel.ts[0] <= now < self.panel.ts[-1] + timedelta(minutes=1)

    def _last(self, ticker: str) -> float:
        value = self.last[self.column[ticker]]
        return float(value) if math.isfinite(value) else math.inf

    def _report_halt(self, ts: datetime) -> None:
        if self.engine.risk.halted and not self._halt_reported:
            self._halt_reported = True
            reason = self.engine.risk.reason
            self.records.event(ts, "kill_switch", reason)
            self.notify("critical", "Kill switch: trading halted",
                        f"{reason}; flattening {len(self.portfolio.positions)} position(s)")  # fmt: skip

    # -- reconciliation ---------------------------------------------------------------------
    def reconcile(self, ts: datetime, starting: bool = False) -> list[str]:
        """Make the local book match the broker's; returns what changed (also recorded).

        Mid-session, fills not yet polled are booked first, so that the broker's positions
        (which include them) are not counted twice; then positions and cash are the broker's.
        At the start, open orders carrying this system's ids (``ats-``) are from an earlier run
        and are cancelled; other orders are left alone. Every position of the account is taken
        over: trade a dedicated account."""
        changes: list[str] = []
        try:
            if not starting:
                for fill in self.broker.poll_fills():
                    self._book(fill, self.row)
            positions = {p.ticker: p for p in self.broker.positions()}
            open_orders = self.broker.open_orders()
            account = self.broker.account()
        except BrokerError as error:
            self.records.event(ts, "reconcile_failed", str(error))
            return [f"reconcile failed: {error}"]
        self._buying_power = account.buying_power
        for ticker, theirs in positions.items():
            if ticker not in self.column:
                changes.append(
                    f"{ticker}: broker {theirs.qty:+d} is outside this session's tickers; "
                    "not managed"
                )
                continue
            ours = self.portfolio.positions.get(ticker)
            if ours is None or ours.qty != theirs.qty:
                had = ours.qty if ours else 0
                self.portfolio.forget(ticker)
                self.portfolio.adopt(ticker, theirs.qty, theirs.avg_price, ts, "reconciled")
                changes.append(f"{ticker}: local {had:+d} -> broker {theirs.qty:+d}")
        for ticker in [t for t in self.portfolio.positions if t not in positions]:
            changes.append(f"{ticker}: local {self.portfolio.positions[ticker].qty:+d} -> 0")
            self.portfolio.forget(ticker)
        if abs(self.portfolio.cash - account.cash) > 0.005:
            if not starting:
                changes.append(f"cash: local ${self.portfolio.cash:,.2f} -> ${account.cash:,.2f}")
            self.portfolio.cash = account.cash
        if starting:
            for stale in open_orders:
                ours = stale.client_order_id.startswith("ats-")
                if stale.client_order_id in self.orders or not ours:
                    continue
                try:
                    self.broker.cancel(stale.client_order_id)
                except BrokerError as error:
                    changes.append(f"could not cancel {stale.client_order_id}: {error}")
                    continue
                changes.append(f"cancelled stale order {stale.client_order_id}")
        for change in changes:
            self.records.event(ts, "reconcile", change)
        if changes and not starting:
            self.notify("warning", "Positions reconciled with the broker", "; ".join(changes))
        return changes

    def _broker_error(self, ts: datetime, what: str, error: BrokerError) -> None:
        self.records.event(ts, "broker_error", f"{what}: {error}")
        self.notify("error", f"Broker error ({what})", str(error))
        self.reconcile(ts)

    # -- the end ----------------------------------------------------------------------------
    def _snapshot(self, ts: datetime, equity: float) -> None:
        marks = self._marks()
        net, gross = self.portfolio.market_value(marks)
        self.records.account.append(
            {
                "session": self.day,
                "ts": ts,
                "equity": equity,
                "cash": self.portfolio.cash,
                "gross_exposure": gross,
                "net_exposure": net,
                "positions": len(self.portfolio.positions),
                "halted": self.engine.risk.halted,
            }
        )
        for ticker, position in self.portfolio.positions.items():
            self.records.positions.append(
                {
                    "session": self.day,
                    "ts": ts,
                    "ticker": ticker,
                    "qty": position.qty,
                    "avg_price": position.avg_price,
                    "mark": marks.get(ticker, math.nan),
                    "source": "local",
                }
            )

    def _end(self, ts: datetime) -> None:
        end = getattr(self.broker, "end_session", None)
        if end is not None:
            end()
        else:
            try:
                for order in self.broker.open_orders():
                    self.broker.cancel(order.client_order_id)
            except BrokerError as error:
                self.records.event(ts, "broker_error", f"end of session: {error}")
        self.engine.end_session(self.day, self.portfolio)
        try:
            for position in self.broker.positions():
                self.records.positions.append(
                    {"session": self.day, "ts": ts, "ticker": position.ticker,
                     "qty": position.qty, "avg_price": position.avg_price,
                     "mark": self.last[self.column[position.ticker]]
                     if position.ticker in self.column else math.nan, "source": "broker"}
                )  # fmt: skip
        except BrokerError as error:
            self.records.event(ts, "broker_error", f"final positions: {error}")
