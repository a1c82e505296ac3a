"""Deterministic simulated market: regimes, factor returns, 1-minute bars, NBBO quotes, options flow.

How a day is made
-----------------
*Daily layer* (computed once for the whole calendar, so any day is the same whatever order days
are asked for in): a Markov chain of market regimes; per session a market return, sector returns,
idiosyncratic returns and overnight gaps; log prices that revert slowly to each name's base level.

*Intraday layer* (seeded by ``(seed, session ordinal)``): minute increments with a U-shaped
volatility profile (market factor, with AR(1) mean reversion in the crash regime, plus sector and
idiosyncratic noise) tied by a variance-weighted bridge to the daily layer's open and close;
U-shaped volume; one NBBO quote per ticker per minute; options-flow alerts.

The planted signal
------------------
A fraction of options-flow alerts is *informed* (hidden; see :meth:`SimulatedMarket.planted_events`).
After an informed alert the ticker drifts by ``signal_strength_bps`` over the next 60 minutes in the
alert's direction (bullish up, bearish down). Informed alerts are more often sweeps and larger.
Because the bridge keeps each day's close on the daily layer, about 60/390 of the drift is given
back spread over the session, so the net effect over the following hour is ~85% of the nominal
strength. With ``planted_signal=False`` no drift is added and flow carries no information.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property, lru_cache

import numpy as np
import polars as pl

from ats_assets.core.calendar import TradingCalendar, nyse_calendar
from ats_resources.simulation.universe import SECTORS, Universe, build_universe

REGIMES = ("calm_trending", "volatile", "crash_mean_reverting")


@dataclass(frozen=True)
class RegimeParams:
    market_drift: float  # daily log drift of the market factor
    market_vol: float  # daily volatility of the market factor
    sector_vol: float  # daily volatility of each sector factor
    idio_mult: float  # multiplier on each name's idiosyncratic volatility
    intraday_ar: float  # AR(1) coefficient of the market's minute increments
    volume_mult: float
    flow_mult: float  # options-flow alert rate multiplier
    spread_mult: float
    bearish_share: float  # share of uninformed alerts that are bearish


REGIME_PARAMS = (
    RegimeParams(0.0006, 0.007, 0.004, 1.0, 0.0, 0.9, 1.0, 1.0, 0.45),
    RegimeParams(0.0, 0.018, 0.008, 1.5, 0.0, 1.4, 1.5, 1.6, 0.5),
    RegimeParams(-0.006, 0.030, 0.012, 2.0, -0.25, 2.0, 2.2, 2.5, 0.6),
)
# Daily transition probabilities between REGIMES (rows: from, columns: to).
REGIME_TRANSITIONS = np.array(
    [
        [0.970, 0.025, 0.005],
        [0.060, 0.900, 0.040],
        [0.100, 0.250, 0.650],
    ]
)
MEAN_REVERSION = 0.004  # daily pull of log price towards the base level
FULL_SESSION_MINUTES = 390
SIGNAL_HORIZON_MINUTES = 60
_US = np.timedelta64(1, "us")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated world; equal configs give identical data."""

    seed: int = 7
    n_tickers: int = 200
    planted_signal: bool = True
    signal_strength_bps: float = 20.0
    informed_fraction: float = 0.35

    def __post_init__(self) -> None:
        if self.n_tickers < 1:
            raise ValueError(f"n_tickers must be positive, got {self.n_tickers}")
        if not 0.0 <= self.informed_fraction <= 1.0:
            raise ValueError(f"informed_fraction must be in [0, 1], got {self.informed_fraction}")


@dataclass(frozen=True)
class SimulatedDay:
    """One session of simulated data (frames sorted by ticker, then time)."""

    bars: pl.DataFrame
    quotes: pl.DataFrame
    trades: pl.DataFrame
    options_flow: pl.DataFrame
    planted: pl.DataFrame  # options_flow's event_id with the hidden ``informed`` flag and drift


@dataclass(frozen=True)
class _DailyPath:
    regime: np.ndarray  # (sessions,) int
    log_open: np.ndarray  # (sessions, tickers)
    log_close: np.ndarray  # (sessions, tickers)


def _profile(
    n: int, first: float, last: float, decay_open: float, decay_close: float
) -> np.ndarray:
    u = (np.arange(n) + 0.5) / n
    return 1.0 + first * np.exp(-u * decay_open) + last * np.exp(-(1.0 - u) * decay_close)


class SimulatedMarket:
    """A reproducible market for one :class:`SimulationConfig` over the trading calendar."""

    def __init__(self, config: SimulationConfig, calendar: TradingCalendar | None = None):
        self.config = config
        self.calendar = calendar or nyse_calendar()
        self.universe: Universe = build_universe(config.seed, config.n_tickers)
        self._sessions = self.calendar.days

    # -- daily layer -------------------------------------------------------------------------
    @cached_property
    def _daily(self) -> _DailyPath:
        u, n_days, n = self.universe, len(self._sessions), len(self.universe)
        rng = np.random.default_rng([self.config.seed, 1])
        uniforms = rng.random(n_days)
        cumulative = REGIME_TRANSITIONS.cumsum(axis=1).tolist()
        path, state = [], 0
        for draw in uniforms.tolist():
            row = cumulative[state]
            state = next((k for k, edge in enumerate(row) if draw < edge), len(row) - 1)
            path.append(state)
        regime = np.array(path, dtype=np.int8)

        params = [REGIME_PARAMS[r] for r in regime]
        drift = np.array([p.market_drift for p in params])
        mvol = np.array([p.market_vol for p in params])
        svol = np.array([p.sector_vol for p in params])
        imult = np.array([p.idio_mult for p in params])

        market = drift + mvol * rng.standard_normal(n_days)
        sectors = svol[:, None] * rng.standard_normal((n_days, len(SECTORS)))
        idio = imult[:, None] * u.idio_vol[None, :] * rng.standard_normal((n_days, n))
        gaps = 0.25 * (
            mvol[:, None] * u.beta[None, :] * rng.standard_normal(n_days)[:, None]
            + u.idio_vol[None, :] * rng.standard_normal((n_days, n))
        )
        session_return = u.beta[None, :] * market[:, None] + sectors[:, u.sector] + idio

        log_base = np.log(u.base_price)
        log_open = np.empty((n_days, n))
        log_close = np.empty((n_days, n))
        prev_close = log_base.copy()
        for t in range(n_days):
            log_open[t] = prev_close + gaps[t]
            pull = -MEAN_REVERSION * (log_open[t] - log_base)
            log_close[t] = log_open[t] + session_return[t] + pull
            prev_close = log_close[t]
        return _DailyPath(regime=regime, log_open=log_open, log_close=log_close)

    def regime_path(self, start: date, end: date) -> pl.DataFrame:
        """Ground truth: the regime of every session in ``[start, end]``."""
        days = self.calendar.sessions_between(start, end)
        idx = [self.calendar.session_index(d) for d in days]
        return pl.DataFrame(
            {"session": days, "regime": [REGIMES[self._daily.regime[i]] for i in idx]},
            schema={"session": pl.Date, "regime": pl.Utf8},
        )

    # -- intraday layer ----------------------------------------------------------------------
    def day(self, day: date) -> SimulatedDay:
        """All simulated data for session ``day`` (cached; a few tens of milliseconds cold)."""
        return _cached_day(self, day)

    def planted_events(self, day: date) -> pl.DataFrame:
        """Ground truth for the signal: each alert's hidden ``informed`` flag and planted drift."""
        return self.day(day).planted

    def _generate(self, day: date) -> SimulatedDay:
        session = self.calendar.session(day)  # raises CalendarError for non-sessions
        t = self.calendar.session_index(day)
        cfg, u, n_names = self.config, self.universe, len(self.universe)
        params = REGIME_PARAMS[self._daily.regime[t]]
        rng = np.random.default_rng([cfg.seed, 2, t])
        n_min = session.minutes
        minute_scale = 1.0 / np.sqrt(FULL_SESSION_MINUTES)

        vol_profile = _profile(n_min, 1.2, 0.6, 12.0, 15.0)
        vol_profile /= np.sqrt(np.mean(vol_profile**2))
        volume_profile = _profile(n_min, 2.5, 1.8, 10.0, 12.0)
        volume_profile /= volume_profile.mean()

        market = params.market_vol * minute_scale * vol_profile * rng.standard_normal(n_min)
        if params.intraday_ar:
            for k in range(1, n_min):
                market[k] += params.intraday_ar * market[k - 1]
        sectors = (
            params.sector_vol
            * minute_scale
            * vol_profile
            * rng.standard_normal((len(SECTORS), n_min))
        )
        idio_sigma = params.idio_mult * u.idio_vol * minute_scale
        idio = idio_sigma[:, None] * vol_profile[None, :] * rng.standard_normal((n_names, n_min))
        increments = u.beta[:, None] * market[None, :] + sectors[u.sector] + idio

        flow = self._flow_events(rng, params, n_min, volume_profile)
        drift = np.zeros((n_names, n_min + 1))
        if cfg.planted_signal and len(flow["ticker"]):
            informed = flow["informed"]
            per_minute = (
                flow["direction"][informed]
                * cfg.signal_strength_bps
                * 1e-4
                / SIGNAL_HORIZON_MINUTES
            )
            rows, starts = flow["ticker"][informed], flow["minute"][informed] + 1
            np.add.at(drift, (rows, np.minimum(starts, n_min)), per_minute)
            np.add.at(
                drift, (rows, np.minimum(starts + SIGNAL_HORIZON_MINUTES, n_min)), -per_minute
            )
        increments += np.cumsum(drift, axis=1)[:, :n_min]

        # Bridge: keep the session's open-to-close return on the daily layer.
        target = self._daily.log_close[t] - self._daily.log_open[t]
        weights = vol_profile**2 / np.sum(vol_profile**2)
        increments -= (increments.sum(axis=1) - target)[:, None] * weights[None, :]
        log_close = self._daily.log_open[t][:, None] + np.cumsum(increments, axis=1)

        close = np.exp(log_close)
        open_ = np.concatenate([np.exp(self._daily.log_open[t])[:, None], close[:, :-1]], axis=1)
        wiggle = idio_sigma[:, None] * vol_profile[None, :] * 0.6
        high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(close.shape)) * wiggle)
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(close.shape)) * wiggle)

        minute_times = np.datetime64(session.open.replace(tzinfo=None), "us") + np.arange(
            n_min
        ) * np.timedelta64(60, "s")
        bars = self._bars_frame(
            rng,
            params,
            minute_times,
            open_,
            high,
            low,
            close,
            increments,
            idio_sigma,
            volume_profile,
        )
        quotes = self._quotes_frame(rng, params, minute_times, open_, close)
        options_flow, planted = self._flow_frames(rng, day, flow, minute_times, close)
        # Trades use their own random stream, so adding them left every other frame unchanged.
        trades = self._trades_frame(
            np.random.default_rng([cfg.seed, 3, t]), minute_times, high, low
        )
        return SimulatedDay(
            bars=bars, quotes=quotes, trades=trades, options_flow=options_flow, planted=planted
        )

    def _flow_events(
        self, rng: np.random.Generator, params: RegimeParams, n_min: int, volume_profile: np.ndarray
    ) -> dict[str, np.ndarray]:
        u, cfg = self.universe, self.config
        rate = u.flow_rate * params.flow_mult * n_min / FULL_SESSION_MINUTES
        counts = rng.poisson(rate)
        ticker = np.repeat(np.arange(len(u)), counts)
        m = len(ticker)
        minute = rng.choice(n_min, size=m, p=volume_profile / volume_profile.sum())
        informed = rng.random(m) < cfg.informed_fraction
        bearish = rng.random(m) < np.where(informed, 0.5, params.bearish_share)
        return {
            "ticker": ticker,
            "minute": minute,
            "second": rng.random(m) * 60.0,
            "informed": informed,
            "direction": np.where(bearish, -1.0, 1.0),
            "is_call": rng.random(m) < 0.55,
            "execution": np.where(
                informed,
                rng.choice(3, size=m, p=[0.9, 0.08, 0.02]),
                rng.choice(3, size=m, p=[0.1, 0.2, 0.7]),
            ),
            "size": np.maximum(
                1, np.round(rng.lognormal(np.where(informed, np.log(300), np.log(50)), 0.8))
            ),
            "moneyness": rng.normal(0.0, 0.06, m),
            "weeks": rng.geometric(0.35, m) - 1,
        }

    def _expiry(self, friday: date) -> date:
        """Options expire on Friday, or on the session before it when Friday is a holiday."""
        if friday > self.calendar.end or self.calendar.is_session(friday):
            return friday
        return self.calendar.previous_session(friday)

    def _bars_frame(
        self,
        rng,
        params,
        minute_times,
        open_,
        high,
        low,
        close,
        increments,
        idio_sigma,
        volume_profile,
    ):
        u = self.universe
        n_names, n_min = close.shape
        shock = 1.0 + 0.5 * np.abs(increments) / (idio_sigma[:, None] + 1e-12)
        volume = (
            (u.daily_volume / FULL_SESSION_MINUTES)[:, None]
            * volume_profile[None, :]
            * params.volume_mult
            * rng.lognormal(0.0, 0.4, close.shape)
            * shock
        )
        volume = np.maximum(1, np.round(volume)).astype(np.int64)
        trades = np.clip(
            np.round(volume / u.trade_size[:, None] * rng.lognormal(0.0, 0.2, close.shape)),
            1,
            volume,
        )
        o, h, lo, c = (np.round(x, 2) for x in (open_, high, low, close))
        vwap = np.clip(np.round((h + lo + c) / 3.0, 4), lo, h)
        return pl.DataFrame(
            {
                "ticker": np.repeat(u.tickers, n_min),
                "ts": np.tile(minute_times, n_names),
                "open": o.ravel(),
                "high": h.ravel(),
                "low": lo.ravel(),
                "close": c.ravel(),
                "volume": volume.ravel(),
                "vwap": vwap.ravel(),
                "trade_count": trades.astype(np.int64).ravel(),
            }
        ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))

    def _quotes_frame(self, rng, params, minute_times, open_, close):
        u = self.universe
        n_min = close.shape[1]
        frac = rng.random(close.shape)
        mid = open_ + (close - open_) * frac
        spread = np.maximum(
            0.01,
            mid
            * u.spread_bps[:, None]
            * 1e-4
            * params.spread_mult
            * rng.lognormal(0.0, 0.3, mid.shape),
        )
        bid = np.floor((mid - spread / 2.0) * 100.0) / 100.0
        ask = np.ceil((mid + spread / 2.0) * 100.0) / 100.0
        ask = np.where(ask <= bid, bid + 0.01, ask)
        ts = minute_times[None, :] + (frac * 59_999_999).astype(np.int64) * _US
        return pl.DataFrame(
            {
                "ticker": np.repeat(u.tickers, n_min),
                "ts": ts.ravel(),
                "bid": np.round(bid, 2).ravel(),
                "ask": np.round(ask, 2).ravel(),
                "bid_size": (100 * (1 + rng.poisson(3.0, mid.shape))).ravel().astype(np.int64),
                "ask_size": (100 * (1 + rng.poisson(3.0, mid.shape))).ravel().astype(np.int64),
            }
        ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))

    def _trades_frame(self, rng, minute_times, high, low) -> pl.DataFrame:
        """A thinned tape: 1-4 prints per ticker-minute inside the minute's range (not every trade)."""
        u = self.universe
        n_names, n_min = high.shape
        counts = np.minimum(1 + rng.poisson(1.0, (n_names, n_min)), 4).ravel()
        ticker = np.repeat(np.repeat(np.arange(n_names), n_min), counts)
        minute = np.repeat(np.tile(np.arange(n_min), n_names), counts)
        lo, hi = low[ticker, minute], high[ticker, minute]
        price = np.clip(
            np.round(lo + (hi - lo) * rng.random(len(ticker)), 2), np.round(lo, 2), np.round(hi, 2)
        )
        odd_lot = rng.random(len(ticker)) < 0.3
        size = np.where(
            odd_lot, rng.integers(1, 100, len(ticker)), 100 * rng.geometric(0.5, len(ticker))
        )
        ts = minute_times[minute] + (rng.random(len(ticker)) * 59_999_999).astype(np.int64) * _US
        return (
            pl.DataFrame(
                {
                    "ticker": u.tickers[ticker],
                    "ts": ts,
                    "price": price,
                    "size": size.astype(np.float64),
                    "exchange": np.array(["N", "Q", "P", "Z", "V", "D"])[
                        rng.integers(0, 6, len(ticker))
                    ],
                    "conditions": np.where(odd_lot, "I", ""),
                }
            )
            .with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
            .sort("ticker", "ts")
            .with_columns(trade_id=pl.int_range(pl.len()).over("ticker").cast(pl.Utf8))
            .select("ticker", "ts", "trade_id", "price", "size", "exchange", "conditions")
        )

    def _flow_frames(
        self, rng, day: date, flow, minute_times, close
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        u = self.universe
        ticker, minute = flow["ticker"], flow["minute"]
        m = len(ticker)
        spot = close[ticker, minute] if m else np.empty(0)
        strike_step = np.where(spot < 25, 0.5, np.where(spot < 100, 1.0, 5.0))
        strike = np.maximum(
            strike_step, np.round(spot * np.exp(flow["moneyness"]) / strike_step) * strike_step
        )
        days_to_friday = (4 - day.weekday()) % 7
        expiry_days = days_to_friday + 7 * flow["weeks"]
        years = (expiry_days + 1) / 365.0
        sigma = 0.3 * np.sqrt(years)
        d = np.log(spot / strike) / sigma if m else np.empty(0)
        intrinsic = np.where(
            flow["is_call"], np.maximum(spot - strike, 0), np.maximum(strike - spot, 0)
        )
        price = np.maximum(0.01, np.round(intrinsic + 0.4 * spot * sigma * np.exp(-0.5 * d**2), 2))
        size = flow["size"].astype(np.int64)
        # Bought calls at the ask and sold puts at the bid are bullish, and the reverse bearish.
        bullish = flow["direction"] > 0
        at_ask = bullish == flow["is_call"]
        ts = (
            minute_times[minute] + (flow["second"] * 1e6).astype(np.int64) * _US
            if m
            else np.empty(0, "datetime64[us]")
        )
        expiry = [self._expiry(day + timedelta(days=int(x))) for x in expiry_days]
        frame = (
            pl.DataFrame(
                {
                    "ticker": u.tickers[ticker] if m else np.empty(0, dtype=str),
                    "ts": ts,
                    "option_type": np.where(flow["is_call"], "call", "put"),
                    "strike": strike.astype(float),
                    "expiry": expiry,
                    "price": price.astype(float),
                    "size": size,
                    "premium": np.round(price * size * 100.0, 2).astype(float),
                    "underlying_price": np.round(spot, 2).astype(float),
                    "execution": np.array(["sweep", "block", "single"])[flow["execution"]]
                    if m
                    else np.empty(0, dtype=str),
                    "side": np.where(at_ask, "ask", "bid"),
                    "sentiment": np.where(bullish, "bullish", "bearish"),
                    "informed": flow["informed"],
                    "planted_drift_bps": np.where(
                        flow["informed"] & self.config.planted_signal,
                        flow["direction"] * self.config.signal_strength_bps,
                        0.0,
                    ),
                },
                schema_overrides={"expiry": pl.Date},
            )
            .with_columns(pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
            .sort("ticker", "ts")
            .with_columns(
                event_id=pl.format(
                    "{}-{}-{}",
                    pl.lit(day.strftime("%Y%m%d")),
                    pl.col("ticker"),
                    pl.int_range(pl.len()).over("ticker"),
                )
            )
        )
        planted = frame.select(
            "event_id", "ticker", "ts", "sentiment", "informed", "planted_drift_bps"
        )
        return frame.drop("informed", "planted_drift_bps").select(
            "event_id", pl.exclude("event_id")
        ), planted


@lru_cache(maxsize=16)
def _cached_day(market: SimulatedMarket, day: date) -> SimulatedDay:
    return market._generate(day)


@lru_cache(maxsize=4)
def simulated_market(config: SimulationConfig) -> SimulatedMarket:
    """The process-wide market for ``config`` (its daily layer is built once, ~0.1 s)."""
    return SimulatedMarket(config)
