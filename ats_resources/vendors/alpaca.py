"""Alpaca market data (stocks, API v2) through alpaca-py's historical client.

:class:`AlpacaMarketData` implements :class:`ats_resources.market_data.MarketData`: 1-minute bars,
NBBO quotes and trades per ticker, with ``collect`` running one ticker per worker on at most
``max_concurrency`` threads and one :class:`RateLimiter` shared by all of a call's requests.

alpaca-py does the URL, the query parameters, the auth headers and the ``next_page_token``
pagination (``RESTClient._get_marketdata`` loops until the token is null). Two things it does
not do the way this project needs, so :class:`_StockClient` adapts them:

* **Retries.** ``RESTClient._request`` retries only ``retry_exception_codes`` (429 and 504 by
  default) after a fixed ``retry_wait_seconds`` (3 s) sleep; it ignores ``Retry-After``, gives up
  on any other 5xx, timeout or connection reset at once, and has no time bound.
  ``StockHistoricalDataClient.__init__`` does not even pass ``retry_attempts`` on, and
  ``RESTClient`` ignores a value of 0. So the subclass sets ``self._retry = 0`` after construction
  (the SDK's loop then makes exactly one call and never sleeps) and overrides ``_one_request``,
  the SDK's hook for one HTTP request that sits under its pagination loop. The override takes a
  rate-limit token, sends the request and retries 429 / 5xx / timeouts / connection errors /
  malformed JSON with :class:`RetryPolicy` (exponential backoff with full jitter, at least what
  ``Retry-After`` - or Alpaca's ``X-RateLimit-Reset`` - asks, bounded in attempts and seconds).
  Retrying per HTTP request means a failure on page 7 repeats page 7, not pages 1-6.
* **Timeouts.** alpaca-py has no timeout setting: ``_one_request`` calls
  ``requests.Session.request`` without ``timeout``, so a stalled server would hang the run
  forever. The override passes ``timeout=timeout_s`` (connect and read) on every request.

Both hooks (``_retry`` and ``_one_request(method, url, opts, retry)``) are private to alpaca-py
(checked against 0.44); tests/test_vendor_alpaca.py exercises them against a fake server, so a
release that renames them fails there rather than in production.

Errors become :class:`VendorError` naming vendor ``Alpaca``, the endpoint, the ticker, the HTTP
status and a hint. alpaca-py sends the key and secret as headers (``APCA-API-KEY-ID``,
``APCA-API-SECRET-KEY``); every message is redacted of both, and errors are raised outside the
``except`` blocks so that no chained ``requests`` exception (whose request holds those headers)
travels with them.
"""

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl
import requests
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockQuotesRequest, StockTradesRequest
from alpaca.data.timeframe import TimeFrame
from pydantic import Field

from ats_assets.market_data.specs import RAW_BARS, RAW_QUOTES, RAW_TRADES
from ats_resources.vendors.collect import Fetched, collect
from ats_resources.vendors.errors import VendorError, redact
from ats_resources.vendors.http import (
    RETRY_STATUSES,
    RateLimiter,
    RetryPolicy,
    alpaca_wait_seconds,
    utc,
)

VENDOR = "Alpaca"
DEFAULT_BASE_URL = "https://data.alpaca.markets"
FEEDS = ("iex", "sip", "delayed_sip")
ADJUSTMENTS = ("raw", "split", "dividend", "all")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"  # RFC 3339: "...Z" or "+00:00", 0-9 fraction digits
_DATA_KEYS = ("bars", "quotes", "trades")


class _StockClient(StockHistoricalDataClient):
    """alpaca-py's stock client for one (endpoint, ticker): the project's retries, timeout and
    rate limit on every HTTP request, failures as :class:`VendorError` (see the module docstring).
    """

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        base_url: str,
        endpoint: str,
        ticker: str,
        timeout_s: float,
        retry: RetryPolicy,
        limiter: RateLimiter,
        rng: random.Random,
        hints: Mapping[int, str],
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(
            api_key=api_key, secret_key=secret_key, url_override=base_url, raw_data=True
        )
        # Disable the SDK's own retry loop: with _retry == 0, RESTClient._request calls
        # _one_request once and never sleeps; our _one_request does the retrying.
        self._retry = 0
        self._endpoint, self._ticker = endpoint, ticker
        self._timeout_s, self._policy = timeout_s, retry
        self._limiter, self._rng, self._sleep = limiter, rng, sleep
        self._hints = hints
        self._secrets = (api_key, secret_key)
        self._seen_tokens: set[str] = set()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "_StockClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def error(
        self, message: str, *, status: int | None = None, hint: str | None = None, **kw: Any
    ) -> VendorError:
        return VendorError(
            VENDOR,
            self._endpoint,
            redact(message, self._secrets),
            ticker=self._ticker,
            status=status,
            hint=hint or (self._hints.get(status) if status else None),
            **kw,
        )

    # Overrides RESTClient._one_request (alpaca-py 0.44): one HTTP request of the SDK.
    def _one_request(self, method: str, url: str, opts: dict, retry: int) -> dict:
        token = (opts.get("params") or {}).get("page_token")
        if token is not None:
            if token in self._seen_tokens:  # a server bug would make the SDK loop forever
                raise self.error(f"the server repeated page token {token!r}: pagination loops")
            self._seen_tokens.add(token)
        opts = {**opts, "timeout": self._timeout_s}
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self._limiter.acquire(self._sleep)
            body, failure = self._attempt(method, url, opts)
            if failure is None:
                return body
            elapsed = time.monotonic() - began
            if failure.retryable and attempt < self._policy.max_attempts:
                delay = max(self._policy.backoff(attempt, self._rng), failure.asked_s or 0.0)
                if elapsed + delay <= self._policy.max_elapsed_s:
                    self._sleep(delay)
                    continue
            tried = f" (gave up after {attempt} tries in {elapsed:.1f}s)" if attempt > 1 else ""
            raise self.error(failure.message + tried, status=failure.status, hint=failure.hint)

    def _attempt(self, method: str, url: str, opts: dict) -> tuple[Any, "_Failure | None"]:
        """One try: the decoded body, or why it failed.

        The failure is returned rather than raised from the ``except`` blocks, so the error
        finally raised carries no chained ``requests`` exception (whose prepared request holds
        the key headers).
        """
        try:
            response = self._session.request(method, url, **opts)
        except requests.Timeout:
            return None, _Failure(f"timed out after {self._timeout_s}s", retryable=True)
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            return None, _Failure(f"connection failed: {type(exc).__name__}", retryable=True)
        except requests.RequestException as exc:  # bad URL, invalid header...: not retryable
            return None, _Failure(
                f"request failed: {type(exc).__name__}: {exc}", hint="check base_url"
            )
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            hint = "set base_url to the final https URL (redirects are not followed)"
            return None, _Failure(f"redirected to {where}", status=status, hint=hint)
        if status >= 400:
            retryable = status in RETRY_STATUSES
            return None, _Failure(
                f"rejected: {_error_text(response)}",
                status=status,
                retryable=retryable,
                asked_s=alpaca_wait_seconds(response.headers, response.status_code)
                if retryable
                else None,
            )
        try:
            body = response.json()
        except ValueError:  # requests.JSONDecodeError, UnicodeDecodeError
            size = len(response.content)
            return None, _Failure(f"malformed JSON in a {size}-byte response", retryable=True)
        if not isinstance(body, dict):
            kind = type(body).__name__
            return None, _Failure(f"expected a JSON object, got {kind}", retryable=True)
        for key in _DATA_KEYS:  # Alpaca may send "bars": null when there is nothing
            if key in body and body[key] is None:
                body[key] = {}
        return body, None


@dataclass(frozen=True)
class _Failure:
    message: str
    status: int | None = None
    retryable: bool = False
    asked_s: float | None = None  # what Retry-After / X-RateLimit-Reset asked for
    hint: str | None = None


def _error_text(response: requests.Response) -> str:
    """Alpaca's ``{"code": ..., "message": ...}`` message, else the first 200 characters."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return response.text[:200].replace("\n", " ") or response.reason or "no body"


def _column(rows: list[dict], key: str, dtype: pl.DataType, convert=None) -> pl.Series:
    values = [r.get(key) for r in rows]
    if convert is not None:
        values = [None if v is None else convert(v) for v in values]
    return pl.Series(values, dtype=dtype, strict=False)


def _join(conditions: Any) -> str:
    if isinstance(conditions, str):
        return conditions
    return ",".join(str(c) for c in conditions)


# Output column -> (wire field, converter) for each endpoint; dtypes come from the specs.
_FIELDS: dict[str, dict[str, tuple[str, Callable[[Any], Any] | None]]] = {
    "bars": {
        "open": ("o", None),
        "high": ("h", None),
        "low": ("l", None),
        "close": ("c", None),
        "volume": ("v", None),
        "vwap": ("vw", None),
        "trade_count": ("n", None),
    },
    "quotes": {
        "bid": ("bp", None),
        "ask": ("ap", None),
        "bid_size": ("bs", None),
        "ask_size": ("as", None),
    },
    "trades": {
        "trade_id": ("i", str),
        "price": ("p", None),
        "size": ("s", float),
        "exchange": ("x", str),
        "conditions": ("c", _join),
    },
}
_SCHEMAS = {"bars": RAW_BARS.schema, "quotes": RAW_QUOTES.schema, "trades": RAW_TRADES.schema}


def to_frame(kind: str, ticker: str, rows: list[dict]) -> pl.DataFrame:
    """Alpaca's wire records of one ticker as a frame in the spec's columns (``ts`` UTC, µs).

    Raises ``ValueError`` on a timestamp that is not RFC 3339.
    """
    schema = _SCHEMAS[kind]
    if not rows:
        return pl.DataFrame(schema=schema)
    columns: dict[str, pl.Series] = {
        "ticker": pl.Series([ticker] * len(rows), dtype=pl.Utf8),
        "ts": _column(rows, "t", pl.Utf8).str.to_datetime(
            _TS_FORMAT, time_unit="us", time_zone="UTC", strict=True
        ),
    }
    for name, (key, convert) in _FIELDS[kind].items():
        columns[name] = _column(rows, key, schema[name], convert)
    return pl.DataFrame(columns).select(schema.keys())


class AlpacaMarketData(dg.ConfigurableResource):
    """Alpaca's historical stock data (bars, quotes, trades) through alpaca-py.

    Pass the credentials as ``dg.EnvVar("ALPACA_API_KEY")`` / ``dg.EnvVar("ALPACA_API_SECRET")``.
    ``requests_per_minute`` is enforced per call (bars/quotes/trades), shared by its threads.
    """

    api_key: str = Field(description="Alpaca API key id (sent as APCA-API-KEY-ID).")
    api_secret: str = Field(description="Alpaca API secret key (sent as APCA-API-SECRET-KEY).")
    base_url: str = Field(
        default=DEFAULT_BASE_URL, description="Market-data API root, without /v2."
    )
    feed: str = Field(
        default="iex",
        description="Stock feed: iex (free plan), sip or delayed_sip (sip needs a paid plan).",
    )
    adjustment: str = Field(
        default="all", description="Corporate-action adjustment of bars: raw, split, dividend, all."
    )
    tickers: list[str] = Field(default_factory=list, description="The universe served.")
    requests_per_minute: float = Field(
        default=200.0, gt=0, description="Request budget per call (free plan: 200/min)."
    )
    max_concurrency: int = Field(default=4, ge=1, description="Tickers fetched at once.")
    timeout_s: float = Field(
        default=10.0, gt=0, description="Connect and read timeout per request."
    )
    retry_max_attempts: int = Field(default=6, ge=1, description="Tries per request, at most.")
    retry_max_elapsed_s: float = Field(
        default=120.0, gt=0, description="Seconds one request may spend retrying."
    )
    retry_base_delay_s: float = Field(
        default=0.5, ge=0, description="First backoff ceiling (doubles per retry, full jitter)."
    )
    retry_max_delay_s: float = Field(default=30.0, ge=0, description="Backoff ceiling.")

    def __repr_args__(self):  # keep the credentials out of reprs and logs
        for name, value in super().__repr_args__():
            yield name, ("***" if name in ("api_key", "api_secret") and value else value)

    # -- MarketData ----------------------------------------------------------------------------
    def universe(self) -> pl.DataFrame:
        """The configured tickers; Alpaca's market-data API has no sector, so it is ``unknown``."""
        tickers = list(dict.fromkeys(t.strip() for t in self.tickers if t.strip()))
        if not tickers:
            raise ValueError(
                "AlpacaMarketData has no tickers: list the universe in the resource's "
                "`tickers` config"
            )
        return pl.DataFrame(
            {"ticker": tickers, "sector": ["unknown"] * len(tickers)},
            schema={"ticker": pl.Utf8, "sector": pl.Utf8},
        )

    def bars(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        """1-minute bars (``TimeFrame.Minute``) labelled by open time, ``start <= ts < end``."""
        return self._fetch("bars", symbols, start, end)

    def quotes(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self._fetch("quotes", symbols, start, end)

    def trades(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self._fetch("trades", symbols, start, end)

    # -- internals -----------------------------------------------------------------------------
    def _hints(self) -> dict[int, str]:
        creds = "check ALPACA_API_KEY and ALPACA_API_SECRET (a market-data key pair)"
        if self.feed == "sip":  # the free plan has SIP only older than 15 minutes
            plan = "or: feed=sip requires a paid Alpaca data plan for recent data - set feed=iex"
        else:
            plan = "and that your plan covers the data asked for"
        return {
            401: f"Alpaca rejected the credentials: {creds}, {plan}",
            403: f"Alpaca refused the request: {creds}, {plan}",
            404: "not found: check base_url (the data API root, e.g. https://data.alpaca.markets)",
            422: "Alpaca rejected the request parameters: check the ticker, feed, adjustment and"
            " time range",
        }

    def _request(self, kind: str, ticker: str, start: datetime, end: datetime):
        common = {"symbol_or_symbols": [ticker], "start": start, "end": end}
        feed = DataFeed(self.feed)
        if kind == "bars":
            return StockBarsRequest(
                **common,
                timeframe=TimeFrame.Minute,
                feed=feed,
                adjustment=Adjustment(self.adjustment),
            )
        if kind == "quotes":
            return StockQuotesRequest(**common, feed=feed)
        return StockTradesRequest(**common, feed=feed)

    def _check_config(self) -> None:
        if self.feed not in FEEDS:
            raise ValueError(f"Alpaca feed={self.feed!r} is not one of {', '.join(FEEDS)}")
        if self.adjustment not in ADJUSTMENTS:
            raise ValueError(
                f"Alpaca adjustment={self.adjustment!r} is not one of {', '.join(ADJUSTMENTS)}"
            )

    def _fetch(self, kind: str, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        self._check_config()
        start, end = utc(start), utc(end)
        schema = _SCHEMAS[kind]
        tickers = list(dict.fromkeys(symbols))
        if not tickers or start >= end:
            return Fetched(pl.DataFrame(schema=schema))
        base_url = self.base_url.rstrip("/").removesuffix("/v2")
        policy = RetryPolicy(
            max_attempts=self.retry_max_attempts,
            max_elapsed_s=self.retry_max_elapsed_s,
            base_delay_s=self.retry_base_delay_s,
            max_delay_s=self.retry_max_delay_s,
        )
        limiter, rng, hints = RateLimiter(self.requests_per_minute), random.Random(), self._hints()
        method = f"get_stock_{kind}"

        def fetch_one(ticker: str) -> pl.DataFrame:
            with _StockClient(
                api_key=self.api_key,
                secret_key=self.api_secret,
                base_url=base_url,
                endpoint=f"/v2/stocks/{kind}",
                ticker=ticker,
                timeout_s=self.timeout_s,
                retry=policy,
                limiter=limiter,
                rng=rng,
                hints=hints,
            ) as client:
                failure: VendorError | None = None
                try:
                    raw = getattr(client, method)(self._request(kind, ticker, start, end))
                    rows = raw.get(ticker) or raw.get(ticker.upper()) or []
                    frame = to_frame(kind, ticker, rows)
                except (ValueError, pl.exceptions.PolarsError) as exc:
                    # an answer alpaca-py or we cannot read (unknown keys, bad timestamps)
                    failure = client.error(f"unreadable response: {type(exc).__name__}: {exc}")
                if failure is not None:
                    raise failure
            return frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end))

        return collect(tickers, fetch_one, max_concurrency=self.max_concurrency, schema=schema)
