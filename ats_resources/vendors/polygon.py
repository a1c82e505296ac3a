"""Polygon.io REST client: 1-minute bars, NBBO quotes and trades as a :class:`MarketData` source.

Endpoints (Polygon's documented wire format)
--------------------------------------------
* Bars: ``GET /v2/aggs/ticker/{T}/range/1/minute/{from}/{to}`` with ``from``/``to`` as millisecond
  timestamps (both inclusive on Polygon's side), ``adjusted``, ``sort=asc`` and ``limit`` (the
  results cap, at most 50,000 base aggregates a page). Items ``{t, o, h, l, c, v, vw, n}`` with
  ``t`` the bar's open in Unix milliseconds. Polygon also returns pre- and post-market minutes, so
  rows are filtered to ``start <= ts < end``. ``t, o, h, l, c, v`` are required; ``vw`` and ``n``
  are optional on Polygon's side and become null when absent. ``v`` may be fractional and is
  rounded to an integer.
* Quotes: ``GET /v3/quotes/{T}`` with ``timestamp.gte``/``timestamp.lt`` in Unix nanoseconds,
  ``sort=timestamp``, ``order=asc``, ``limit``. Items ``{sip_timestamp (ns), bid_price,
  ask_price, bid_size, ask_size, ...}``. ``sip_timestamp`` and both prices are required; a
  missing size is 0 (Polygon omits zero-valued fields). Timestamps are truncated to
  microseconds and, where several quotes share one microsecond, the last one is kept (it is the
  NBBO in force), so ``(ticker, ts)`` is unique.
* Trades: ``GET /v3/trades/{T}`` with the same time filters. Items ``{sip_timestamp, price, size,
  exchange (int), id (str), conditions (list[int], optional)}``; ``exchange`` becomes the
  Polygon exchange id as a string (``"10"`` is NYSE, see ``/v3/reference/exchanges``),
  ``conditions`` the ids joined with commas (``""`` when absent), ``trade_id`` the ``id``.

Every response is JSON with ``status``, ``request_id``, ``results`` (absent when empty) and, when
there is more, ``next_url``: a URL carrying an opaque ``cursor`` that is followed until absent.
Only the path and query of ``next_url`` are used, against ``base_url``, so the key is never sent
to another host.

Auth: the key travels in an ``Authorization: Bearer`` header (Polygon accepts that or an
``apiKey`` query parameter). A header keeps the key out of every URL, so it cannot leak through
httpx's request log, a ``next_url`` or an error message; it is also passed to
:class:`VendorHttp` as a secret, so any response that echoes it is redacted.

Errors: ``status: "ERROR"``/``"NOT_AUTHORIZED"`` bodies and 401/403 become a
:class:`VendorError` with a hint (bad key, plan without this data); a page with malformed items
raises a :class:`VendorError` naming the endpoint and ticker; no results is an empty frame with
the spec's columns, not an error. ``collect`` turns a ticker's error into an entry of
``Fetched.failures`` while the other tickers go on.

Universe: ``tickers`` is the universe; Polygon has no GICS sector (only SIC codes), so
``sector`` comes from the optional ``sectors`` mapping and is ``"unknown"`` for names it lacks.
"""

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import polars as pl
from pydantic import Field, PrivateAttr

from ats_resources.vendors.collect import Fetched, collect
from ats_resources.vendors.errors import VendorError, redact
from ats_resources.vendors.http import RequestStats, VendorHttp
from ats_resources.vendors.resource import VendorRetrySettings

VENDOR = "polygon"
AGGS = "/v2/aggs"
QUOTES = "/v3/quotes"
TRADES = "/v3/trades"
MAX_LIMIT = 50_000
UTC_TS = pl.Datetime("us", "UTC")

BARS_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8,
    "ts": UTC_TS,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Int64,
    "vwap": pl.Float64,
    "trade_count": pl.Int64,
}
QUOTES_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8,
    "ts": UTC_TS,
    "bid": pl.Float64,
    "ask": pl.Float64,
    "bid_size": pl.Int64,
    "ask_size": pl.Int64,
}
TRADES_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8,
    "ts": UTC_TS,
    "trade_id": pl.Utf8,
    "price": pl.Float64,
    "size": pl.Float64,
    "exchange": pl.Utf8,
    "conditions": pl.Utf8,
}

# Wire fields of each endpoint's items: (type, required).
_AGG_FIELDS = {
    "t": (pl.Int64, True),
    "o": (pl.Float64, True),
    "h": (pl.Float64, True),
    "l": (pl.Float64, True),
    "c": (pl.Float64, True),
    "v": (pl.Float64, True),
    "vw": (pl.Float64, False),
    "n": (pl.Float64, False),
}
_QUOTE_FIELDS = {
    "sip_timestamp": (pl.Int64, True),
    "bid_price": (pl.Float64, True),
    "ask_price": (pl.Float64, True),
    "bid_size": (pl.Float64, False),
    "ask_size": (pl.Float64, False),
}
_TRADE_FIELDS = {
    "sip_timestamp": (pl.Int64, True),
    "price": (pl.Float64, True),
    "size": (pl.Float64, True),
    "exchange": (pl.Int64, True),
    "id": (pl.Utf8, True),
    "conditions": (pl.List(pl.Int64), False),
}

_STATUS_HINTS = {
    "ERROR": "Polygon rejected the request: check POLYGON_API_KEY and the request parameters",
    "NOT_AUTHORIZED": (
        "the Polygon plan does not include this data (for example quotes, trades or this "
        "history depth): upgrade the plan or drop the dataset"
    ),
}
_MALFORMED_HINT = (
    "the response does not match Polygon's documented format; if it persists, report it to "
    "Polygon with the request_id"
)

_GAVE_UP_HINT = (
    "Polygon kept failing after retries: check https://status.polygon.io and retry later, "
    "or raise timeout_s / max_attempts"
)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_us(moment: datetime) -> int:
    delta = _utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _malformed(endpoint: str, ticker: str, detail: str, request_id: Any = None) -> VendorError:
    suffix = f" (request_id {request_id})" if request_id else ""
    return VendorError(
        VENDOR,
        endpoint,
        f"malformed results: {detail}{suffix}",
        ticker=ticker,
        hint=_MALFORMED_HINT,
    )


def _table(
    items: list[Any],
    fields: dict[str, tuple[pl.DataType, bool]],
    *,
    endpoint: str,
    ticker: str,
    request_id: Any = None,
) -> pl.DataFrame:
    """The wire ``items`` as typed columns; a :class:`VendorError` if any item is malformed."""
    bad = next((i for i, item in enumerate(items) if not isinstance(item, dict)), None)
    if bad is not None:
        raise _malformed(endpoint, ticker, f"item {bad} is not an object", request_id)
    columns = {}
    for name, (dtype, _) in fields.items():
        values = [item.get(name) for item in items]
        try:
            columns[name] = pl.Series(name, values, dtype=dtype, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            sample = next((v for v in values if v is not None), None)
            raise _malformed(
                endpoint,
                ticker,
                f"field {name!r} has a value of the wrong type ({sample!r:.40})",
                request_id,
            ) from None
    frame = pl.DataFrame(columns)
    missing = {
        name: frame[name].null_count()
        for name, (_, required) in fields.items()
        if required and frame[name].null_count()
    }
    if missing:
        detail = ", ".join(f"{n} item(s) lack {name!r}" for name, n in missing.items())
        raise _malformed(endpoint, ticker, detail, request_id)
    return frame


def _bars(frame: pl.DataFrame, ticker: str) -> pl.DataFrame:
    return frame.select(
        pl.lit(ticker, pl.Utf8).alias("ticker"),
        (pl.col("t") * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.col("v").round(0).cast(pl.Int64).alias("volume"),
        pl.col("vw").alias("vwap"),
        pl.col("n").round(0).cast(pl.Int64).alias("trade_count"),
    )


def _ns_to_ts(column: str) -> pl.Expr:
    return (pl.col(column) // 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts")


def _quotes(frame: pl.DataFrame, ticker: str) -> pl.DataFrame:
    return frame.select(
        pl.lit(ticker, pl.Utf8).alias("ticker"),
        _ns_to_ts("sip_timestamp"),
        pl.col("bid_price").alias("bid"),
        pl.col("ask_price").alias("ask"),
        pl.col("bid_size").fill_null(0.0).round(0).cast(pl.Int64).alias("bid_size"),
        pl.col("ask_size").fill_null(0.0).round(0).cast(pl.Int64).alias("ask_size"),
    )


def _trades(frame: pl.DataFrame, ticker: str) -> pl.DataFrame:
    return frame.select(
        pl.lit(ticker, pl.Utf8).alias("ticker"),
        _ns_to_ts("sip_timestamp"),
        pl.col("id").alias("trade_id"),
        pl.col("price"),
        pl.col("size"),
        pl.col("exchange").cast(pl.Utf8).alias("exchange"),
        pl.col("conditions")
        .list.eval(pl.element().cast(pl.Utf8))
        .list.join(",")
        .fill_null("")
        .alias("conditions"),
    )


class PolygonMarketData(VendorRetrySettings):
    """Bars, NBBO quotes and trades from Polygon.io's REST API (see the module docstring)."""

    api_key: str = Field(
        description="Polygon API key; pass dg.EnvVar('POLYGON_API_KEY'). Sent as a Bearer header."
    )
    base_url: str = Field(default="https://api.polygon.io", description="REST base URL.")
    tickers: list[str] = Field(
        default_factory=list, description="The universe: tickers that universe() returns."
    )
    sectors: dict[str, str] = Field(
        default_factory=dict,
        description="Optional ticker -> sector map for universe(); others are 'unknown'.",
    )
    requests_per_minute: float = Field(
        default=300.0, gt=0, description="Rate limit shared by all threads of one call."
    )
    max_concurrency: int = Field(default=8, ge=1, description="Tickers fetched at once.")
    aggs_limit: int = Field(
        default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="Results cap per aggregates page."
    )
    page_limit: int = Field(
        default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="Results per quotes/trades page."
    )
    max_pages: int = Field(
        default=10_000, ge=1, description="Pages per ticker and call before giving up."
    )
    adjusted: bool = Field(default=True, description="Split-adjusted bars.")

    _last_stats: RequestStats | None = PrivateAttr(default=None)

    # -- MarketData ----------------------------------------------------------------------------
    def universe(self) -> pl.DataFrame:
        """``ticker`` and ``sector`` of the configured tickers (sector ``"unknown"`` if unmapped)."""
        if not self.tickers:
            raise ValueError(
                "PolygonMarketData has no tickers: list the universe in the resource's "
                "`tickers` config"
            )
        tickers = list(dict.fromkeys(self.tickers))
        return pl.DataFrame(
            {"ticker": tickers, "sector": [self.sectors.get(t, "unknown") for t in tickers]},
            schema={"ticker": pl.Utf8, "sector": pl.Utf8},
        )

    def bars(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self.fetch_bars(symbols, start, end)

    def quotes(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self.fetch_quotes(symbols, start, end)

    def trades(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self.fetch_trades(symbols, start, end)

    # -- with an injectable session --------------------------------------------------------------
    @property
    def last_stats(self) -> RequestStats | None:
        """Requests, retries and waits of the last bars/quotes/trades call (for metadata)."""
        return self._last_stats

    def http_client(self, sleep: Callable[[float], None] = time.sleep) -> VendorHttp:
        """A rate-limited, retrying session for this vendor, shared by the threads of one call."""
        return VendorHttp(
            VENDOR,
            self.base_url,
            headers={"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"},
            secrets=(self.api_key,),
            requests_per_minute=self.requests_per_minute,
            timeout_s=self.timeout_s,
            retry=self.retry_policy(),
            sleep=sleep,
        )

    def fetch_bars(
        self,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        http: VendorHttp | None = None,
    ) -> Fetched:
        return self._fetch(self._bars_one, BARS_SCHEMA, symbols, start, end, http)

    def fetch_quotes(
        self,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        http: VendorHttp | None = None,
    ) -> Fetched:
        return self._fetch(self._quotes_one, QUOTES_SCHEMA, symbols, start, end, http)

    def fetch_trades(
        self,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        http: VendorHttp | None = None,
    ) -> Fetched:
        return self._fetch(self._trades_one, TRADES_SCHEMA, symbols, start, end, http)

    # -- internals -------------------------------------------------------------------------------
    def _fetch(
        self,
        fetch_one: Callable[[VendorHttp, str, datetime, datetime], pl.DataFrame],
        schema: dict[str, pl.DataType],
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        http: VendorHttp | None,
    ) -> Fetched:
        start, end = _utc(start), _utc(end)
        tickers = list(dict.fromkeys(symbols))
        if not tickers or end <= start:
            return Fetched(pl.DataFrame(schema=schema))
        session = http or self.http_client()

        def one(ticker: str) -> pl.DataFrame:
            try:
                return fetch_one(session, ticker, start, end)
            except VendorError as exc:
                raise exc.with_hint(_GAVE_UP_HINT) from None

        try:
            return collect(
                tickers,
                one,
                max_concurrency=self.max_concurrency,
                schema=schema,
            )
        finally:
            self._last_stats = session.stats
            if http is None:
                session.close()

    def _pages(
        self, http: VendorHttp, path: str, params: dict[str, Any], *, endpoint: str, ticker: str
    ) -> Iterator[tuple[list[Any], Any]]:
        """Each page's ``results`` (and ``request_id``), following ``next_url`` until absent."""
        url, query = path, params
        cursors: set[str] = set()
        for _ in range(self.max_pages):
            body = http.get_json(url, query, endpoint=endpoint, ticker=ticker)
            if not isinstance(body, dict):
                raise _malformed(endpoint, ticker, f"expected an object, got {type(body).__name__}")
            request_id = body.get("request_id")
            status = str(body.get("status", "OK")).upper()
            if status in _STATUS_HINTS:
                message = body.get("error") or body.get("message") or "no message"
                raise VendorError(
                    VENDOR,
                    endpoint,
                    redact(
                        f"status {status}: {message} (request_id {request_id})", (self.api_key,)
                    ),
                    ticker=ticker,
                    hint=_STATUS_HINTS[status],
                )
            results = body.get("results")
            if results is None:
                results = []
            if not isinstance(results, list):
                raise _malformed(endpoint, ticker, "'results' is not a list", request_id)
            yield results, request_id
            next_url = body.get("next_url")
            if not next_url:
                return
            parts = urlsplit(str(next_url))
            query = {k: v for k, v in parse_qsl(parts.query) if k.lower() != "apikey"}
            cursor = query.get("cursor", parts.query)
            if cursor in cursors:
                raise _malformed(endpoint, ticker, "next_url repeats an earlier cursor", request_id)
            cursors.add(cursor)
            url = parts.path or path
        raise VendorError(
            VENDOR,
            endpoint,
            f"more than {self.max_pages} pages",
            ticker=ticker,
            hint="narrow the time range or raise max_pages",
        )

    def _collect_pages(
        self,
        http: VendorHttp,
        path: str,
        params: dict[str, Any],
        fields: dict[str, tuple[pl.DataType, bool]],
        to_frame: Callable[[pl.DataFrame, str], pl.DataFrame],
        schema: dict[str, pl.DataType],
        *,
        endpoint: str,
        ticker: str,
    ) -> pl.DataFrame:
        frames = [
            to_frame(
                _table(items, fields, endpoint=endpoint, ticker=ticker, request_id=rid), ticker
            )
            for items, rid in self._pages(http, path, params, endpoint=endpoint, ticker=ticker)
            if items
        ]
        if not frames:
            return pl.DataFrame(schema=schema)
        return pl.concat(frames, how="vertical").cast(schema)

    def _bars_one(
        self, http: VendorHttp, ticker: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        start_ms = _epoch_us(start) // 1000
        end_ms = -(-_epoch_us(end) // 1000) - 1  # last millisecond before ``end`` (inclusive)
        frame = self._collect_pages(
            http,
            f"{AGGS}/ticker/{quote(ticker, safe='')}/range/1/minute/{start_ms}/{end_ms}",
            {
                "adjusted": str(self.adjusted).lower(),
                "sort": "asc",
                "limit": self.aggs_limit,
            },
            _AGG_FIELDS,
            _bars,
            BARS_SCHEMA,
            endpoint=AGGS,
            ticker=ticker,
        )
        return (
            frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
            .unique(subset=["ticker", "ts"], keep="first", maintain_order=True)
            .sort("ts")
        )

    def _v3_params(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {
            "timestamp.gte": _epoch_us(start) * 1000,
            "timestamp.lt": _epoch_us(end) * 1000,
            "order": "asc",
            "sort": "timestamp",
            "limit": self.page_limit,
        }

    def _quotes_one(
        self, http: VendorHttp, ticker: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        frame = self._collect_pages(
            http,
            f"{QUOTES}/{quote(ticker, safe='')}",
            self._v3_params(start, end),
            _QUOTE_FIELDS,
            _quotes,
            QUOTES_SCHEMA,
            endpoint=QUOTES,
            ticker=ticker,
        )
        return (
            frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
            .unique(subset=["ticker", "ts"], keep="last", maintain_order=True)
            .sort("ts", maintain_order=True)
        )

    def _trades_one(
        self, http: VendorHttp, ticker: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        frame = self._collect_pages(
            http,
            f"{TRADES}/{quote(ticker, safe='')}",
            self._v3_params(start, end),
            _TRADE_FIELDS,
            _trades,
            TRADES_SCHEMA,
            endpoint=TRADES,
            ticker=ticker,
        )
        return (
            frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
            .unique(
                subset=["ticker", "exchange", "trade_id", "ts"], keep="first", maintain_order=True
            )
            .sort("ts", maintain_order=True)
        )
