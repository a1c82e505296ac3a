"""The live session loop (live.session) with the simulated broker and the fake Alpaca API.

A synthetic hour of 1-minute bars for six tickers and a stub model whose predictions are a
feature column; the session replays it bar by bar and must trade exactly as the backtest's event
loop does on the same inputs. Then the safety parts: guards, kill switch, reconciliation, the
one-session lock and the trading-mode switch.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from live.backtest.panel import minute_panel, signal_panel
from live.backtest.simulator import run_backtest
from live.brokers.base import LIVE_CONFIRMATION, TradingMode, trading_mode
from live.brokers.simulated import SimulatedLiveBroker
from live.engine.portfolio import Portfolio
from live.engine.settings import ExecutionCosts, StrategySettings
from live.engine.strategy import StrategyEngine
from live.engine.types import Intent, Order, OrderType, Side
from live.session.clock import ReplayClock
from live.session.feed import ReplayFeed, session_grid
from live.session.guards import GuardState, check
from live.session.lock import SessionLock, SessionLocked
from live.session.runner import LiveSession
from live.session.signals import SignalUpdater

DAY = date(2025, 3, 3)
OPEN = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
MINUTES = 60
TICKERS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
SETTINGS = StrategySettings(atr_bars=5, entry_cutoff_minutes=10, max_holding_minutes=10)
COSTS = ExecutionCosts()


def market(seed: int = 3, drift: float = 0.0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(1-minute bars, feature rows with the stub model's input ``x`` in bps)."""
    rng = np.random.default_rng(seed)
    bars, rows = [], []
    for k, ticker in enumerate(TICKERS):
        price = 50.0 + 10 * k
        for m in range(MINUTES):
            ts = OPEN + timedelta(minutes=m)
            step = rng.normal(drift, 0.0015)
            o, c = price, price * (1 + step)
            h, lo = max(o, c) * (1 + abs(rng.normal(0, 0.0005))), min(o, c) * (1 - 0.0004)
            bars.append(
                {"ticker": ticker, "ts": ts, "session": DAY, "open": o, "high": h, "low": lo,
                 "close": c, "volume": float(rng.integers(2_000, 20_000)),
                 "vwap": (o + c) / 2}
            )  # fmt: skip
            rows.append({"ticker": ticker, "ts": ts, "session": DAY,
                         "x": float(rng.normal(0, 25))})  # fmt: skip
            price = c
    cast = pl.col("ts").cast(pl.Datetime("us", "UTC"))
    return pl.DataFrame(bars).with_columns(cast), pl.DataFrame(rows).with_columns(cast)


class StubModel:
    """Expected return = the row's ``x`` (bps); confidence 0.6."""

    def predict(self, frame: pl.DataFrame, at=None) -> pl.DataFrame:
        if at is not None:
            frame = frame.filter(pl.col("ts") == at)
        return frame.select(
            "ticker", "ts", "session", expected_bps="x", confidence=pl.lit(0.6),
            prediction="x",
        ).sort("ticker", "ts")  # fmt: skip


def cost(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select("ticker", "ts", cost_bps=pl.lit(8.0))


def backtest(bars, features, settings=SETTINGS):
    panel = minute_panel(bars, {DAY: OPEN + timedelta(minutes=MINUTES)})
    predictions = StubModel().predict(features).join(cost(features), on=["ticker", "ts"])
    engine = StrategyEngine(panel, signal_panel(panel, predictions), settings, strategy_id="t")
    return run_backtest(panel, engine, initial_capital=settings.initial_capital, costs=COSTS)


def live_session(bars, features, settings=SETTINGS, notify=None, broker=None, clock=None):
    source = minute_panel(bars, {DAY: OPEN + timedelta(minutes=MINUTES)})
    feed = ReplayFeed(source)
    by_minute = {key[0]: rows for key, rows in features.group_by("ts")}
    updater = SignalUpdater(
        StubModel(),
        feed.panel.tickers,
        len(feed.panel.ts),
        lambda ts: by_minute.get(ts, pl.DataFrame()),
        cost,
        lambda ts: True,
    )
    engine = StrategyEngine(feed.panel, updater.signals, settings, strategy_id="t")
    broker = broker or SimulatedLiveBroker(feed.panel, COSTS, cash=settings.initial_capital)
    return LiveSession(
        day=DAY,
        engine=engine,
        feed=feed,
        updater=updater,
        broker=broker,
        settings=settings,
        clock=clock or ReplayClock(0.0),
        portfolio=Portfolio(cash=settings.initial_capital),
        notify=notify or (lambda *a: None),
    )


def test_replayed_session_trades_exactly_as_the_backtest():
    bars, features = market()
    expected = backtest(bars, features)
    result = live_session(bars, features).run()
    assert expected.trades.height > 5
    assert_frame_equal(result.trades, expected.trades)
    assert round(result.pnl, 2) == round(float(expected.trades["pnl"].sum()), 2)
    fills = result.records.frames()["live_fills"]
    assert fills.height == expected.fills.height
    assert fills["price"].to_list() == expected.fills["price"].to_list()
    submitted = result.records.frames()["live_orders"].filter(pl.col("status") == "submitted")
    assert submitted["client_order_id"].to_list() == expected.orders["client_order_id"].to_list()
    # every position is closed at the end, locally and at the broker
    assert not result.portfolio.positions
    assert result.records.frames()["live_positions"].filter(pl.col("source") == "broker").is_empty()
    assert np.isfinite(result.latency_ms).all()


def test_replay_at_a_speed_waits_between_bars():
    bars, features = market()
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    def monotonic() -> float:
        now[0] += 0.01  # each bar's work takes 10 ms of the replay's time
        return now[0]

    live_session(bars, features, clock=ReplayClock(60.0, sleep, monotonic)).run()
    # 60 market minutes at 60x: a bar a second; the first bar starts the clock
    assert len(waits) == MINUTES - 1
    assert all(0.97 < w < 1.0 for w in waits)
    assert now[0] == pytest.approx(MINUTES - 1, abs=0.05)


def test_a_resubmitted_decision_reaches_the_broker_once():
    bars, _ = market()
    panel = minute_panel(bars, {DAY: OPEN + timedelta(minutes=MINUTES)})
    broker = SimulatedLiveBroker(panel, COSTS)
    broker.on_bar(0)
    order = Order("ats-x", "AAA", Side.BUY, 10, OrderType.MARKET, Intent.ENTRY, OPEN)
    first, again = broker.submit(order), broker.submit(order)
    assert first.client_order_id == again.client_order_id
    broker.on_bar(1)
    assert len(broker.poll_fills()) == 1
    assert broker.positions()[0].qty == 10


def test_guards_refuse_entries_past_the_limits_and_never_block_a_reducing_exit():
    entry = Order("ats-e", "AAA", Side.BUY, 30, OrderType.MARKET, Intent.ENTRY, OPEN)
    exit_ = Order("ats-s", "AAA", Side.SELL, 30, OrderType.MARKET, Intent.KILL, OPEN)
    state = GuardState(halted=False, market_open=True, last_price=80.0, held_qty=0,
                       open_positions=0, buying_power=10_000.0)  # fmt: skip
    assert check(entry, state, SETTINGS) is None
    assert "position cap" in check(entry, replace(state, last_price=90.0), SETTINGS)
    assert "open positions" in check(entry, replace(state, open_positions=20), SETTINGS)
    assert "buying power" in check(entry, replace(state, buying_power=1_000.0), SETTINGS)
    assert "kill switch" in check(entry, replace(state, halted=True), SETTINGS)
    assert check(entry, replace(state, market_open=False), SETTINGS) == "market closed"
    held = replace(state, held_qty=30, halted=True, buying_power=0.0, open_positions=99)
    assert check(exit_, held, SETTINGS) is None
    # an "exit" that would open or grow a position is not an exit
    assert "does not reduce" in check(exit_, replace(held, held_qty=-30), SETTINGS)


def test_kill_switch_flattens_halts_and_alerts_once():
    bars, features = market(seed=5, drift=-0.004)  # a steady slide
    features = features.with_columns(x=pl.lit(80.0))  # the model is long everything
    # $100 on $100,000; stops far away, so the losses stay open until the switch flattens them
    settings = replace(SETTINGS, daily_loss_limit=0.001, stop_atr_multiple=20.0,
                       trail_atr_multiple=20.0, max_holding_minutes=60)  # fmt: skip
    alerts: list[tuple[str, str]] = []
    result = live_session(
        bars, features, settings, notify=lambda s, t, x: alerts.append((s, t))
    ).run()
    assert result.halted
    events = result.records.frames()["live_events"]
    [halt] = events.filter(pl.col("kind") == "kill_switch").iter_rows(named=True)
    assert "daily loss" in halt["detail"]
    assert [a for a in alerts if a[0] == "critical"] == [
        ("critical", "Kill switch: trading halted")
    ]
    orders = result.records.frames()["live_orders"]
    after = orders.filter((pl.col("decided_at") >= halt["ts"]) & (pl.col("intent") == "entry"))
    assert after.filter(pl.col("status") == "submitted").is_empty()
    assert not result.portfolio.positions
    kills = orders.filter(pl.col("intent") == "kill")
    assert kills.height > 0 and (kills["status"] == "submitted").all()
    assert set(result.trades["exit_intent"]) == {"kill"}


def test_reconciliation_adopts_the_brokers_positions_and_closes_them_by_the_end():
    bars, features = market()
    features = features.with_columns(x=pl.lit(0.0))  # no new trades
    source = minute_panel(bars, {DAY: OPEN + timedelta(minutes=MINUTES)})
    session = live_session(bars, features)
    broker = session.broker
    broker.book.adopt("CCC", 25, 70.0, OPEN, "crashed run")  # a position left behind
    broker.book.cash -= 25 * 70.0
    result = session.run()
    events = result.records.frames()["live_events"]
    assert "CCC: local +0 -> broker +25" in events["detail"].to_list()
    [trip] = result.trades.iter_rows(named=True)
    # the engine manages the adopted position like its own (here its peak detector exits)
    assert trip["ticker"] == "CCC" and trip["exit_intent"] in ("peak", "close", "signal_exit")
    assert trip["entry_price"] == 70.0
    assert broker.positions() == []
    assert source.shape == session.panel.shape


def test_one_session_per_account(tmp_path):
    with SessionLock(tmp_path, "alpaca-paper:PKEY"):
        with pytest.raises(SessionLocked, match=r"already running .*pid"):
            SessionLock(tmp_path, "alpaca-paper:PKEY").acquire()
        # another account is not blocked
        with SessionLock(tmp_path, "alpaca-paper:OTHER"):
            pass
    with SessionLock(tmp_path, "alpaca-paper:PKEY"):  # released with the first
        pass
    assert "PKEY" not in "".join(p.name for p in tmp_path.iterdir())


def test_trading_mode_is_simulated_unless_asked_and_live_needs_the_confirmation():
    assert trading_mode({}) is TradingMode.SIMULATED
    assert trading_mode({"ATS_TRADING_MODE": "paper"}) is TradingMode.PAPER
    with pytest.raises(ValueError, match="ATS_CONFIRM_LIVE_TRADING"):
        trading_mode({"ATS_TRADING_MODE": "live"})
    with pytest.raises(ValueError, match="ATS_CONFIRM_LIVE_TRADING"):
        trading_mode({"ATS_TRADING_MODE": "live", "ATS_CONFIRM_LIVE_TRADING": "yes"})
    confirmed = {"ATS_TRADING_MODE": "live", "ATS_CONFIRM_LIVE_TRADING": LIVE_CONFIRMATION}
    assert trading_mode(confirmed) is TradingMode.LIVE
    with pytest.raises(ValueError, match="expected one of"):
        trading_mode({"ATS_TRADING_MODE": "yolo"})


def test_session_grid_has_a_row_per_minute_and_no_bars():
    grid = session_grid(TICKERS, DAY, OPEN, OPEN + timedelta(minutes=390))
    assert grid.shape == (390, len(TICKERS))
    assert np.isnan(grid.close).all() and grid.minutes_to_close[-1] == 0
    assert grid.session_end[-1] and not grid.session_end[:-1].any()


def test_a_real_time_session_on_the_wall_clock_trades_as_the_replay():
    from live.session.clock import WallClock
    from live.session.feed import PollingFeed

    bars, features = market()
    expected = backtest(bars, features)
    now = [OPEN - timedelta(minutes=5)]  # started before the open

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    def fetch(symbols, start, end):
        # the vendor answers only for minutes that are complete
        assert now[0] >= start + timedelta(minutes=1)
        return bars.filter((pl.col("ts") >= start) & (pl.col("ts") < end))

    grid = session_grid(TICKERS, DAY, OPEN, OPEN + timedelta(minutes=MINUTES))
    feed = PollingFeed(grid, fetch)
    by_minute = {key[0]: rows for key, rows in features.group_by("ts")}
    updater = SignalUpdater(StubModel(), grid.tickers, MINUTES,
                            lambda ts: by_minute.get(ts, pl.DataFrame()), cost, lambda ts: True)  # fmt: skip
    engine = StrategyEngine(grid, updater.signals, SETTINGS, strategy_id="t")
    session = LiveSession(
        day=DAY, engine=engine, feed=feed, updater=updater,
        broker=SimulatedLiveBroker(grid, COSTS, cash=SETTINGS.initial_capital),
        settings=SETTINGS, clock=WallClock(delay_s=2.0, sleep=sleep, now=lambda: now[0]),
        portfolio=Portfolio(cash=SETTINGS.initial_capital),
    )  # fmt: skip
    result = session.run()
    assert_frame_equal(result.trades, expected.trades)
    # the last bar was read two seconds after it closed
    assert now[0] == OPEN + timedelta(minutes=MINUTES, seconds=2)


def test_orders_are_refused_outside_market_hours_by_the_wall_clock():
    from live.session.clock import WallClock

    bars, features = market()
    late = OPEN + timedelta(hours=3)  # long after this one-hour session's close
    session = live_session(bars, features)
    session.clock = WallClock(sleep=lambda s: None, now=lambda: late)
    result = session.run()
    orders = result.records.frames()["live_orders"]
    assert orders.height > 0 and (orders["detail"] == "market closed").all()
    assert result.trades.is_empty()


class _NoViewBroker:
    """The simulated broker seen only through the Broker interface (no local ``working``), with
    the first submit's answer lost after the order was placed."""

    def __init__(self, inner: SimulatedLiveBroker) -> None:
        self.inner, self.name, self.handles_expiry, self.lost = inner, "flaky", True, 0

    def __getattr__(self, name):
        if name == "working":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def submit(self, order):
        from live.brokers.base import BrokerError

        placed = self.inner.submit(order)
        if not self.lost:
            self.lost += 1
            raise BrokerError("timed out; the outcome is unknown", retryable=True)
        return placed


def test_an_order_whose_answer_was_lost_still_counts_as_working():
    bars, features = market()
    expected = backtest(bars, features)
    source = minute_panel(bars, {DAY: OPEN + timedelta(minutes=MINUTES)})
    session = live_session(bars, features)
    session.broker = _NoViewBroker(session.broker)
    assert source.shape == session.panel.shape
    result = session.run()
    orders = result.records.frames()["live_orders"]
    assert orders["status"].to_list().count("unknown") == 1
    # it was placed, filled and managed like any other: the day trades as the backtest
    assert_frame_equal(result.trades, expected.trades)


def test_an_error_mid_session_stops_it_cancels_orders_and_keeps_the_records():
    bars, features = market()
    alerts: list[tuple[str, str]] = []
    session = live_session(bars, features, notify=lambda s, t, x: alerts.append((s, t)))
    deliver = session.feed.deliver

    def broken(i: int) -> None:
        if i == 30:
            raise ConnectionError("market data feed went away")
        deliver(i)

    session.feed.deliver = broken
    result = session.run()
    assert result.error == "ConnectionError: market data feed went away"
    events = result.records.frames()["live_events"]
    assert "session_error" in events["kind"].to_list()
    assert ("critical", f"Live session {DAY} stopped on an error") in alerts
    assert not session.broker.sim.working  # nothing left working at the broker
    assert result.records.frames()["live_orders"].height > 0


def test_the_engine_sees_an_order_with_a_lost_answer_as_working():
    bars, features = market()
    session = live_session(bars, features)
    session.broker = _NoViewBroker(session.broker)
    session.broker.on_bar(0)
    limit = Order("ats-limit", "AAA", Side.BUY, 5, OrderType.LIMIT, Intent.ENTRY, OPEN,
                  limit_price=1.0)  # fmt: skip
    session.last[session.column["AAA"]] = 50.0
    session._act(limit, 0, OPEN)
    [recorded] = session.records.orders
    assert recorded["status"] == "unknown"
    # it rests at the broker: the engine must see it, or it would decide again next bar
    assert session._pending() == {"AAA": [limit]}


def test_run_config_cannot_loosen_risk_limits_outside_simulated_trading():
    from live.location.session import SessionError, prepare_session

    with pytest.raises(SessionError, match=r"risk limits \['daily_loss_limit'\] cannot be"):
        prepare_session(
            instance=None, warehouse=None, model_store=None, market_data=None, day=DAY,
            replay=False, overrides={"daily_loss_limit": 0.5, "cost_multiple": 2.0},
            env={"ATS_TRADING_MODE": "paper"},
        )  # fmt: skip
