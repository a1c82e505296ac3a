"""A fake Alpaca market-data API (stocks, v2) on a :class:`FakeVendorServer`.

It answers what alpaca-py's ``StockHistoricalDataClient`` asks for::

    GET /v2/stocks/bars?symbols=A,B&timeframe=1Min&start=...&end=...&limit=...&adjustment=all
        &feed=iex[&page_token=...]
    -> {"bars": {"A": [{"t", "o", "h", "l", "c", "v", "n", "vw"}, ...]}, "next_page_token": ...}

and the same for ``/v2/stocks/quotes`` (``t, ax, ap, as, bx, bp, bs, c, z``) and
``/v2/stocks/trades`` (``t, x, p, s, c, i, z``), with the data of a simulated market. Like
Alpaca it treats ``end`` as inclusive, pages at ``min(limit, page_size)`` records across symbols
with an opaque ``next_page_token``, checks the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``
headers (401 ``{"message": "forbidden"}``), answers 403 for a feed the key is not entitled to and
422 for bad parameters. Faults (429 with Retry-After, 5xx, slow, truncated, reset) are queued with
:meth:`FakeAlpaca.fail_next` (or :meth:`FakeAlpaca.fail_after` to hit a later page);
:attr:`FakeAlpaca.broken` makes a symbol fail on every request.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from datetime import date, datetime

import polars as pl

from ats_assets.core.calendar import EXCHANGE_TZ, nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig, simulated_market
from tests.fakes.vendor_server import FakeVendorServer, Fault, Request, Response

KEY_ID = "PKTESTKEYID0123456789"
SECRET = "tEsTsEcReT/abcdefghijklmnopqrstuvwxyz0123"
PREFIX = "/v2/stocks"
MAX_LIMIT = 10_000
_TS = "%Y-%m-%dT%H:%M:%S%.9fZ"  # Alpaca sends nanoseconds for quotes and trades
_BAR_TS = "%Y-%m-%dT%H:%M:%SZ"


def _wire(kind: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Spec columns -> Alpaca's field names (plus ``ticker`` for grouping)."""
    if kind == "bars":
        return frame.select(
            "ticker",
            t=pl.col("ts").dt.strftime(_BAR_TS),
            o="open",
            h="high",
            l="low",
            c="close",
            v="volume",
            n="trade_count",
            vw="vwap",
        )
    if kind == "quotes":
        return frame.select(
            "ticker",
            t=pl.col("ts").dt.strftime(_TS),
            ax=pl.lit("V"),
            ap="ask",
            **{"as": "ask_size"},
            bx=pl.lit("V"),
            bp="bid",
            bs="bid_size",
            c=pl.lit(["R"]),
            z=pl.lit("C"),
        )
    return frame.select(
        "ticker",
        t=pl.col("ts").dt.strftime(_TS),
        x="exchange",
        p="price",
        s=pl.col("size").cast(pl.Int64),  # Alpaca sends whole shares as integers
        c=pl.when(pl.col("conditions") == "")
        .then(pl.lit([], dtype=pl.List(pl.Utf8)))
        .otherwise(pl.col("conditions").str.split(",")),
        i=pl.col("trade_id").cast(pl.Int64),
        z=pl.lit("C"),
    )


def _parse_time(value: str) -> datetime:
    # a "+" that reached the server unescaped decodes to a space
    return datetime.fromisoformat(value.replace(" ", "+").replace("Z", "+00:00"))


class FakeAlpaca:
    """Alpaca's stock-data routes on ``server``, serving ``SimulatedMarket(config)``."""

    def __init__(
        self,
        server: FakeVendorServer,
        *,
        config: SimulationConfig | None = None,
        page_size: int = MAX_LIMIT,
        key_id: str = KEY_ID,
        secret: str = SECRET,
        entitled_feeds: tuple[str, ...] = ("iex",),
    ):
        self.server = server
        self.market: SimulatedMarket = simulated_market(config or SimulationConfig(n_tickers=5))
        self.page_size = page_size
        self.key_id, self.secret = key_id, secret
        self.entitled_feeds = entitled_feeds
        self.broken: dict[str, int] = {}  # symbol -> status answered on every request for it
        self._cache: dict[tuple, pl.DataFrame] = {}
        self._served = 0
        self._deferred: list[tuple[int, tuple[Fault, ...]]] = []
        self._lock = threading.Lock()
        for kind in ("bars", "quotes", "trades"):
            server.route(f"{PREFIX}/{kind}", self._handler(kind))

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def tickers(self) -> list[str]:
        return list(self.market.universe.tickers)

    def fail_next(self, *faults: Fault) -> None:
        """Queue faults; a fault whose path is the default "/" is aimed at the stock routes."""
        self.server.fail_next(*(replace(f, path=PREFIX) if f.path == "/" else f for f in faults))

    def fail_after(self, served: int, *faults: Fault) -> None:
        """Queue ``faults`` once ``served`` more requests have been answered: mid-pagination."""
        with self._lock:
            self._deferred.append((self._served + served, faults))

    def requests(self, kind: str | None = None) -> list[Request]:
        return self.server.requests_to(f"{PREFIX}/{kind}" if kind else PREFIX)

    # -- ground truth ---------------------------------------------------------------------------
    def expected(
        self, kind: str, symbols: list[str], start: datetime, end: datetime, *, inclusive=False
    ) -> pl.DataFrame:
        """The simulated rows of ``kind`` for ``symbols`` with ``start <= ts < end`` (or ``<=``)."""
        frames = [getattr(self.market.day(d), kind) for d in self._sessions(start, end)]
        if not frames:
            return pl.DataFrame()
        upper = pl.col("ts") <= end if inclusive else pl.col("ts") < end
        return pl.concat(frames).filter(
            pl.col("ticker").is_in(symbols) & (pl.col("ts") >= start) & upper
        )

    def _sessions(self, start: datetime, end: datetime) -> list[date]:
        first, last = start.astimezone(EXCHANGE_TZ).date(), end.astimezone(EXCHANGE_TZ).date()
        return nyse_calendar().sessions_between(first, last)

    # -- serving --------------------------------------------------------------------------------
    def _handler(self, kind: str):
        def handle(request: Request) -> Response:
            return self._serve(kind, request)

        return handle

    def _serve(self, kind: str, request: Request) -> Response:
        with self._lock:
            self._served += 1
            due = [f for n, f in self._deferred if n <= self._served]
            self._deferred = [(n, f) for n, f in self._deferred if n > self._served]
        for faults in due:  # faults are taken before routing, so these hit the next request
            self.fail_next(*faults)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if (
            headers.get("apca-api-key-id") != self.key_id
            or headers.get("apca-api-secret-key") != self.secret
        ):
            return Response(401, {"message": "forbidden"})
        q = request.query
        symbols = [s for s in q.get("symbols", "").split(",") if s]
        if not symbols:
            return _invalid("symbols is required")
        for symbol in symbols:
            if symbol in self.broken:
                status = self.broken[symbol]
                return Response(status, {"code": status * 100_000, "message": "internal error"})
        feed = q.get("feed", "sip")  # Alpaca's default is the best feed the plan allows
        if feed not in ("iex", "sip", "delayed_sip", "otc"):
            return _invalid(f"invalid feed: {feed}")
        if feed not in self.entitled_feeds:
            return Response(
                403, {"message": f"subscription does not permit querying recent {feed} data"}
            )
        if kind == "bars" and q.get("timeframe") != "1Min":
            return _invalid(f"invalid timeframe: {q.get('timeframe')}")
        try:
            start, end = _parse_time(q["start"]), _parse_time(q["end"])
            limit = int(q.get("limit") or 1000)
            offset = _decode_token(q["page_token"]) if q.get("page_token") else 0
        except (KeyError, ValueError) as exc:
            return _invalid(f"invalid request: {exc}")
        if not 1 <= limit <= MAX_LIMIT:
            return _invalid(f"invalid limit: {limit}")
        rows = self._rows(kind, tuple(symbols), start, end)
        size = min(limit, self.page_size)
        page = rows.slice(offset, size)
        records: dict[str, list[dict]] = {}
        for row in page.to_dicts():
            records.setdefault(row.pop("ticker"), []).append(row)
        more = offset + size < len(rows)
        return Response(
            200,
            {kind: records, "next_page_token": _encode_token(offset + size) if more else None},
        )

    def _rows(
        self, kind: str, symbols: tuple[str, ...], start: datetime, end: datetime
    ) -> pl.DataFrame:
        """Every record of the request, in Alpaca's order (symbol, then time); ``end`` inclusive.

        Cached per request, so paging costs a slice rather than a rebuild.
        """
        key = (kind, symbols, start, end)
        with self._lock:
            if key not in self._cache:
                frame = self.expected(kind, list(symbols), start, end, inclusive=True)
                self._cache[key] = (
                    _wire(kind, frame.sort("ticker", maintain_order=True))
                    if len(frame)
                    else pl.DataFrame(schema={"ticker": pl.Utf8})
                )
            return self._cache[key]


def _invalid(message: str) -> Response:
    return Response(422, {"code": 42210000, "message": message})


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _decode_token(token: str) -> int:
    return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
