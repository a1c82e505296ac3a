"""A fake Polygon.io REST API on a :class:`FakeVendorServer`, serving the simulated market.

Routes (Polygon's wire format): ``/v2/aggs/ticker/{T}/range/1/minute/{from}/{to}``,
``/v3/quotes/{T}`` and ``/v3/trades/{T}``. Data comes from
``SimulatedMarket.day(session)``, converted to the vendor's JSON: bars with ``t`` in Unix
milliseconds (plus pre- and post-market minutes, as Polygon sends them), quotes and trades with
``sip_timestamp`` in nanoseconds, trades with integer exchange ids and condition codes. As
Polygon does, aggregates start at the bar holding ``from`` and include the bar at ``to``.

What tests can turn on:

* ``page_size``: results per page (also capped by the request's ``limit``); more rows give a
  ``next_url`` with an opaque ``cursor``, as Polygon does.
* ``leading_empty_page``: the first page of every query has no results but a ``next_url``.
* ``empty_tickers``: tickers with no data at all (``resultsCount`` 0, no ``results``).
* ``denied_tickers``: tickers answered 403 ``NOT_AUTHORIZED`` (a plan without the data).
* ``patch(kind, ticker, page_index, results) -> results``: rewrite one page's items (bad prints,
  missing fields, duplicates) before it is sent.
* ``echo_key_in_errors``: 401 bodies repeat the key they got (to test redaction).
* A wrong or missing key gets Polygon's 401 ``{"status": "ERROR", "error": ...}`` body.

Failures (429 with Retry-After, 5xx, slow, truncated, reset) are queued with
``server.fail_next(Fault(...))``. :meth:`PolygonFake.expected` gives what a correct client
returns for a query, in the spec's columns.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig, simulated_market
from tests.fakes.vendor_server import FakeVendorServer, Request, Response

# Polygon's exchange ids (GET /v3/reference/exchanges) for the simulated tape's participant codes.
EXCHANGE_IDS = {"N": 10, "P": 11, "Q": 12, "V": 15, "Z": 19, "D": 4}
# Polygon's trade condition ids for the simulated codes ("I" is an odd-lot trade).
CONDITION_IDS = {"I": 37}
MAX_LIMIT = 50_000
EXTENDED_MINUTES = 30  # pre- and post-market bars served around each session

Patch = Callable[[str, str, int, list[dict[str, Any]]], list[dict[str, Any]]]


def _ns(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000


def _parse_time(value: str, *, unit_ns: int, end_of_day: bool = False) -> int:
    """A Polygon time parameter (integer in ``unit_ns`` units, RFC 3339 or a date) in ns."""
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value) * unit_ns
    if len(value) == 10:
        day = date.fromisoformat(value)
        moment = datetime(day.year, day.month, day.day, tzinfo=EXCHANGE_TZ)
        if end_of_day:
            return _ns(moment + timedelta(days=1)) - 1
        return _ns(moment)
    moment = datetime.fromisoformat(value)
    return _ns(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    padded = cursor + "=" * (-len(cursor) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


def _header(request: Request, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


@dataclass
class PolygonFake:
    server: FakeVendorServer
    market: SimulatedMarket
    api_key: str = "polygon-test-key"
    page_size: int = MAX_LIMIT
    extended_hours: bool = True
    leading_empty_page: bool = False
    empty_tickers: set[str] = field(default_factory=set)
    denied_tickers: set[str] = field(default_factory=set)
    echo_key_in_errors: bool = False
    patch: Patch | None = None
    _ids: Any = field(default_factory=itertools.count, repr=False)
    _cache: dict[tuple[str, str, date], list[dict[str, Any]]] = field(
        default_factory=dict, repr=False
    )

    def install(self) -> PolygonFake:
        self.server.route("/v2/aggs/ticker/", lambda r: self._serve("bars", r))
        self.server.route("/v3/quotes/", lambda r: self._serve("quotes", r))
        self.server.route("/v3/trades/", lambda r: self._serve("trades", r))
        return self

    # -- what a correct client returns ---------------------------------------------------------
    def expected(
        self, kind: str, tickers: Sequence[str], start: datetime, end: datetime
    ) -> pl.DataFrame:
        """The simulated ``kind`` rows of ``tickers`` in ``[start, end)`` as the client maps them."""
        days = self._sessions(_ns(start), _ns(end))
        frames = [getattr(self.market.day(d), kind) for d in days]
        if not frames:
            return pl.DataFrame()
        frame = pl.concat(frames).filter(
            pl.col("ticker").is_in(list(tickers))
            & ~pl.col("ticker").is_in(list(self.empty_tickers))
            & (pl.col("ts") >= start)
            & (pl.col("ts") < end)
        )
        if kind == "trades":
            frame = frame.with_columns(
                pl.col("exchange").replace_strict(
                    {k: str(v) for k, v in EXCHANGE_IDS.items()}, return_dtype=pl.Utf8
                ),
                pl.col("conditions").replace({k: str(v) for k, v in CONDITION_IDS.items()}),
            )
        return frame.sort("ticker", "ts", maintain_order=True)

    # -- serving ---------------------------------------------------------------------------------
    def _error(self, status: int, body: dict[str, Any]) -> Response:
        return Response(status, {"request_id": self._request_id(), **body})

    def _request_id(self) -> str:
        return f"fake{next(self._ids):028x}"

    def _auth(self, request: Request) -> Response | None:
        header = _header(request, "Authorization") or ""
        key = header[7:].strip() if header.lower().startswith("bearer ") else None
        key = key or request.query.get("apiKey")
        if not key:
            return self._error(401, {"status": "ERROR", "error": "API Key was not provided"})
        if key != self.api_key:
            message = "Unknown API Key" + (f": {key}" if self.echo_key_in_errors else "")
            return self._error(401, {"status": "ERROR", "error": message})
        return None

    def _query(self, kind: str, request: Request) -> dict[str, Any]:
        """The query's state: ticker, ns bounds, limit, offset (from the cursor when given)."""
        if "cursor" in request.query:
            return _decode(request.query["cursor"])
        parts = request.path.strip("/").split("/")
        if kind == "bars":
            # v2/aggs/ticker/{T}/range/{multiplier}/{timespan}/{from}/{to}
            ticker, multiplier, timespan, lo, hi = parts[3], parts[5], parts[6], parts[7], parts[8]
            if (multiplier, timespan) != ("1", "minute"):
                raise ValueError("the fake serves 1-minute aggregates only")
            lo_ns = _parse_time(lo, unit_ns=1_000_000)
            lo_ns -= lo_ns % 60_000_000_000  # like Polygon: from the bar holding ``from``
            hi_ns = _parse_time(hi, unit_ns=1_000_000, end_of_day=True) + 999_999
            limit = int(request.query.get("limit", 5000))
        else:
            ticker = parts[2]
            q = request.query
            lo_ns = max(
                _parse_time(q["timestamp.gte"], unit_ns=1) if "timestamp.gte" in q else 0,
                _parse_time(q["timestamp.gt"], unit_ns=1) + 1 if "timestamp.gt" in q else 0,
            )
            hi_ns = min(
                _parse_time(q["timestamp.lt"], unit_ns=1) - 1 if "timestamp.lt" in q else 2**62,
                _parse_time(q["timestamp.lte"], unit_ns=1) if "timestamp.lte" in q else 2**62,
            )
            limit = int(q.get("limit", 1000))
        return {
            "ticker": ticker,
            "lo": lo_ns,
            "hi": hi_ns,
            "limit": max(1, min(limit, MAX_LIMIT)),
            "offset": 0,
            "page": 0,
        }

    def _serve(self, kind: str, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        try:
            state = self._query(kind, request)
        except (ValueError, KeyError, IndexError) as exc:
            return self._error(400, {"status": "ERROR", "error": f"bad request: {exc}"})
        ticker = state["ticker"]
        if ticker in self.denied_tickers:
            return self._error(
                403,
                {
                    "status": "NOT_AUTHORIZED",
                    "message": "You are not entitled to this data. Please upgrade your plan at "
                    "https://polygon.io/pricing",
                },
            )
        rows = self._rows(kind, ticker, state["lo"], state["hi"])
        body: dict[str, Any] = {"status": "OK", "request_id": self._request_id()}
        if kind == "bars":
            body.update(ticker=ticker, adjusted=True, queryCount=len(rows))
        offset, page_index = state["offset"], state["page"]
        if self.leading_empty_page and page_index == 0 and "cursor" not in request.query:
            page, following = [], {**state, "page": 1}
        else:
            size = min(state["limit"], self.page_size)
            page = [dict(r) for r in rows[offset : offset + size]]
            following = (
                {**state, "offset": offset + size, "page": page_index + 1}
                if offset + size < len(rows)
                else None
            )
            if self.patch:
                page = self.patch(kind, ticker, page_index, page)
        if kind == "bars":
            body.update(resultsCount=len(page), count=len(page))
        if page:
            body["results"] = page
        if following:
            body["next_url"] = f"{self.server.url}{request.path}?cursor={_encode(following)}"
        return Response(200, body)

    def _sessions(self, lo_ns: int, hi_ns: int) -> list[date]:
        calendar = nyse_calendar()
        first = datetime.fromtimestamp(lo_ns / 1e9, UTC).astimezone(EXCHANGE_TZ).date()
        last = datetime.fromtimestamp(min(hi_ns, 2**61) / 1e9, UTC).astimezone(EXCHANGE_TZ).date()
        first, last = max(first, calendar.start), min(last, calendar.end)
        return calendar.sessions_between(first, last) if first <= last else []

    def _rows(self, kind: str, ticker: str, lo_ns: int, hi_ns: int) -> list[dict[str, Any]]:
        if ticker in self.empty_tickers:
            return []
        key = "t" if kind == "bars" else "sip_timestamp"
        scale = 1_000_000 if kind == "bars" else 1
        out = []
        for day in self._sessions(lo_ns, hi_ns):
            out.extend(
                r for r in self._day_rows(kind, ticker, day) if lo_ns <= r[key] * scale <= hi_ns
            )
        return out

    def _day_rows(self, kind: str, ticker: str, day: date) -> list[dict[str, Any]]:
        cache_key = (kind, ticker, day)
        if cache_key not in self._cache:
            sim = getattr(self.market.day(day), kind).filter(pl.col("ticker") == ticker)
            self._cache[cache_key] = getattr(self, f"_wire_{kind}")(sim, day)
        return self._cache[cache_key]

    def _wire_bars(self, frame: pl.DataFrame, day: date) -> list[dict[str, Any]]:
        rows = [
            {
                "t": _ns(r["ts"]) // 1_000_000,
                "o": r["open"],
                "h": r["high"],
                "l": r["low"],
                "c": r["close"],
                "v": r["volume"],
                "vw": r["vwap"],
                "n": r["trade_count"],
            }
            for r in frame.iter_rows(named=True)
        ]
        if not rows or not self.extended_hours:
            return rows
        first, last = rows[0], rows[-1]

        def extra(t_ms: int, price: float) -> dict[str, Any]:
            ohlc = {"o": price, "h": price, "l": price, "c": price}
            return {"t": t_ms, **ohlc, "v": 100.0, "vw": price, "n": 1}

        minute = 60_000
        pre = [extra(first["t"] - k * minute, first["o"]) for k in range(EXTENDED_MINUTES, 0, -1)]
        post = [extra(last["t"] + k * minute, last["c"]) for k in range(1, EXTENDED_MINUTES + 1)]
        return pre + rows + post

    def _wire_quotes(self, frame: pl.DataFrame, day: date) -> list[dict[str, Any]]:
        return [
            {
                "ask_exchange": 11,
                "ask_price": r["ask"],
                "ask_size": r["ask_size"],
                "bid_exchange": 12,
                "bid_price": r["bid"],
                "bid_size": r["bid_size"],
                "participant_timestamp": _ns(r["ts"]) - 1500,
                "sequence_number": i + 1,
                "sip_timestamp": _ns(r["ts"]),
                "tape": 1,
            }
            for i, r in enumerate(frame.iter_rows(named=True))
        ]

    def _wire_trades(self, frame: pl.DataFrame, day: date) -> list[dict[str, Any]]:
        out = []
        for i, r in enumerate(frame.iter_rows(named=True)):
            row: dict[str, Any] = {
                "exchange": EXCHANGE_IDS[r["exchange"]],
                "id": r["trade_id"],
                "participant_timestamp": _ns(r["ts"]) - 2500,
                "price": r["price"],
                "sequence_number": i + 1,
                "sip_timestamp": _ns(r["ts"]),
                "size": r["size"],
                "tape": 1,
            }
            codes = [CONDITION_IDS[c] for c in r["conditions"].split(",") if c]
            if codes:
                row["conditions"] = codes
            out.append(row)
        return out


def install_polygon(
    server: FakeVendorServer, market: SimulatedMarket | None = None, **options: Any
) -> PolygonFake:
    """Register the fake Polygon routes on ``server`` (see :class:`PolygonFake` for options)."""
    market = market or simulated_market(SimulationConfig(n_tickers=5))
    return PolygonFake(server, market, **options).install()
