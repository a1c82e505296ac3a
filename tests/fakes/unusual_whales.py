"""A fake Unusual Whales flow-alerts API on a :class:`FakeVendorServer`, from the simulated market.

Route: ``GET /api/option-trades/flow-alerts`` with ``ticker_symbol`` (comma-separated),
``newer_than`` (inclusive) / ``older_than`` (exclusive) as Unix seconds, milliseconds or ISO
dates, and ``limit`` (1-200, else 422). Answers ``{"data": [...]}`` newest first, each alert in
Unusual Whales' format: decimal strings for prices and premiums, ``total_size`` in contracts,
``has_sweep``/``has_floor`` flags and ask/bid-side premium split so that the simulated side
dominates (see :func:`wire_alert`).

What tests can turn on:

* Pages hold exactly ``limit`` alerts while more exist (as the API does), so a client pages
  by asking for a small ``limit``.
* ``source(ticker, alerts) -> alerts``: rewrite a ticker's whole alert list (newest first) before
  paging: add alerts sharing a timestamp, bad prints, duplicates.
* ``patch(ticker, page_index, alerts) -> alerts``: rewrite the ``page_index``-th page served
  for ``ticker`` (0-based, counting only pages that reached the route).
* A wrong or missing ``Authorization: Bearer`` key gets 401 ``{"message": ...}``.

Failures are queued with ``server.fail_next(Fault(...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig, simulated_market
from tests.fakes.vendor_server import FakeVendorServer, Request, Response

PATH = "/api/option-trades/flow-alerts"
MAX_LIMIT = 200

Source = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]
Patch = Callable[[str, int, list[dict[str, Any]]], list[dict[str, Any]]]


def iso(moment: datetime) -> str:
    """``created_at`` as Unusual Whales writes it: ``2023-12-12T16:35:52.168490Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch_ms(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _parse_time(value: str) -> datetime:
    value = value.strip()
    if value.isdigit():
        number = int(value)
        return datetime.fromtimestamp(number / 1000 if number > 10**11 else number, UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def wire_alert(row: dict[str, Any]) -> dict[str, Any]:
    """One simulated OPTIONS_FLOW row as an Unusual Whales flow alert."""
    premium = row["premium"]
    major, minor = round(premium * 0.85, 2), round(premium * 0.05, 2)
    ask, bid = (major, minor) if row["side"] == "ask" else (minor, major)
    occ = (
        f"{row['ticker']}{row['expiry']:%y%m%d}{row['option_type'][0].upper()}"
        f"{round(row['strike'] * 1000):08d}"
    )
    execution = row["execution"]
    return {
        "id": row["event_id"],
        "alert_rule": "FloorTradeLargeCap" if execution == "block" else "RepeatedHits",
        "all_opening_trades": False,
        "created_at": iso(row["ts"]),
        "expiry": row["expiry"].isoformat(),
        "expiry_count": 1,
        "has_floor": execution == "block",
        "has_multileg": False,
        "has_singleleg": True,
        "has_sweep": execution == "sweep",
        "issue_type": "Common Stock",
        "open_interest": 1000,
        "option_chain": occ,
        "price": str(row["price"]),
        "strike": str(row["strike"]),
        "ticker": row["ticker"],
        "total_ask_side_prem": str(ask),
        "total_bid_side_prem": str(bid),
        "total_premium": str(premium),
        "total_size": row["size"],
        "trade_count": 5 if execution == "sweep" else 1,
        "type": row["option_type"],
        "underlying_price": str(row["underlying_price"]),
        "volume": row["size"] * 2,
        "volume_oi_ratio": str(row["size"] * 2 / 1000),
    }


@dataclass
class UnusualWhalesFake:
    server: FakeVendorServer
    market: SimulatedMarket
    api_key: str = "uw-test-key"
    source: Source | None = None
    patch: Patch | None = None
    _pages_served: dict[str, int] = field(default_factory=dict, repr=False)

    def install(self) -> UnusualWhalesFake:
        self.server.route(PATH, self._serve)
        return self

    def expected(self, tickers: Sequence[str], start: datetime, end: datetime) -> pl.DataFrame:
        """The simulated alerts of ``tickers`` in ``[start, end)`` as a correct client maps them."""
        frames = [self.market.day(d).options_flow for d in self._sessions(start, end)]
        if not frames:
            return pl.DataFrame()
        return (
            pl.concat(frames)
            .filter(
                pl.col("ticker").is_in(list(tickers))
                & (pl.col("ts") >= start)
                & (pl.col("ts") < end)
            )
            .sort("ticker", "ts", "event_id")
        )

    def alerts(self, ticker: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Wire alerts of ``ticker`` created in ``[start, end)``, newest first."""
        rows = self.expected([ticker], start, end)
        alerts = [wire_alert(r) for r in rows.iter_rows(named=True)]
        alerts.sort(key=lambda a: (a["created_at"], a["id"]), reverse=True)
        return self.source(ticker, alerts) if self.source else alerts

    def _sessions(self, start: datetime, end: datetime) -> list[date]:
        calendar = nyse_calendar()
        first = max(start.astimezone(EXCHANGE_TZ).date(), calendar.start)
        last = min(end.astimezone(EXCHANGE_TZ).date(), calendar.end)
        return calendar.sessions_between(first, last) if first <= last else []

    def _serve(self, request: Request) -> Response:
        auth = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        if auth != f"Bearer {self.api_key}":
            return Response(401, {"message": "Unauthorized: a valid API token is required"})
        q = request.query
        try:
            limit = int(q.get("limit", 100))
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
            tickers = [t for t in q.get("ticker_symbol", "").split(",") if t]
            older = _parse_time(q["older_than"]) if "older_than" in q else None
            newer = _parse_time(q["newer_than"]) if "newer_than" in q else None
        except ValueError as exc:
            return Response(422, {"message": str(exc)})
        if not tickers:
            return Response(422, {"message": "the fake needs ticker_symbol"})
        older = older or (newer + timedelta(days=7) if newer else datetime.now(UTC))
        newer = newer or older - timedelta(days=7)
        older_ms, newer_ms = _epoch_ms(older), _epoch_ms(newer)
        alerts = [
            a
            for t in tickers
            for a in self.alerts(t, newer - timedelta(days=1), older + timedelta(days=1))
        ]
        # Filter on the wire timestamp (milliseconds, as the API compares) and page newest first.
        alerts = [
            a for a in alerts if newer_ms <= _epoch_ms(_parse_time(a["created_at"])) < older_ms
        ]
        alerts.sort(key=lambda a: a["created_at"], reverse=True)
        page = [dict(a) for a in alerts[:limit]]
        if self.patch:
            index = self._pages_served.get(tickers[0], 0)
            self._pages_served[tickers[0]] = index + 1
            page = self.patch(tickers[0], index, page)
        return Response(200, {"data": page})


def install_unusual_whales(
    server: FakeVendorServer, market: SimulatedMarket | None = None, **options: Any
) -> UnusualWhalesFake:
    """Register the fake flow-alerts route on ``server`` (see :class:`UnusualWhalesFake`)."""
    market = market or simulated_market(SimulationConfig(n_tickers=5))
    return UnusualWhalesFake(server, market, **options).install()
