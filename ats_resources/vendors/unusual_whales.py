"""Unusual Whales options-flow alerts as an :class:`OptionsFlowData` source.

Wire format (from Unusual Whales' published API reference for ``GET
/api/option-trades/flow-alerts``, https://api.unusualwhales.com/docs, as quoted by client code
and notes in public repositories; nothing here was checked against the live API)
------------------------------------------------------------------------------------------
* Auth: ``Authorization: Bearer <key>``, plus the ``UW-CLIENT-API-ID: 100001`` header that
  Unusual Whales' own client guide asks for (``client_api_id``).
* Query: ``ticker_symbol`` (comma-separated tickers; one per request here), ``newer_than`` and
  ``older_than`` (Unix time in seconds or milliseconds, or an ISO date; milliseconds are sent),
  ``limit`` (1-200, default 100). Results come newest first.
* Response: ``{"data": [alert, ...]}``; an alert has ``id`` (a UUID; absent from some examples),
  ``ticker``, ``created_at`` (ISO-8601 UTC, e.g. ``"2023-12-12T16:35:52.168490Z"``), ``type``
  (``"call"``/``"put"``), ``strike``, ``expiry`` (``"YYYY-MM-DD"``), ``price``,
  ``underlying_price``, ``total_premium``, ``total_ask_side_prem``, ``total_bid_side_prem`` (all
  decimal strings, dollars), ``total_size`` (contracts), ``has_sweep``, ``has_floor``,
  ``has_multileg``, ``option_chain`` (OCC symbol), ``alert_rule``, ``trade_count``, ``volume``,
  ``open_interest`` and more, which are ignored.

Mapping to OPTIONS_FLOW (choices where the docs are silent)
------------------------------------------------------------
* ``event_id`` is ``id``; without one, ``"<option_chain>@<created_at>"``.
* ``ts`` is ``created_at``: when the alert fired, so known to a trader at that instant (the
  trades it summarises started earlier; using their time would leak the future into backtests).
* ``size`` = ``total_size``, ``premium`` = ``total_premium``, ``price`` = ``price``.
* ``execution``: ``"sweep"`` if ``has_sweep``, else ``"block"`` if ``has_floor`` (floor trades are
  the large negotiated prints Unusual Whales flags; it has no separate block flag), else
  ``"single"``.
* ``side``: ``"ask"`` when ask-side premium exceeds bid-side premium, ``"bid"`` when the reverse;
  ``"mid"`` when they are equal (e.g. both zero: filled at the mid), with a null ``sentiment``,
  which the ``invalid_sentiment`` check then records rather than a direction being invented.
* ``sentiment``: calls bought at the ask and puts sold at the bid are ``"bullish"``; calls sold at
  the bid and puts bought at the ask are ``"bearish"``.

Pagination: the endpoint has no cursor, so pages are walked back in time: each next request
asks for ``older_than`` = the oldest alert's millisecond + 1 (so alerts sharing that millisecond
are not lost whether the bound is inclusive or not) and duplicates are dropped by ``event_id``.
A full page holding nothing new means more alerts share one millisecond than a page holds; the
walk then steps past that millisecond (with an exclusive bound, alerts of it beyond the first
``page_limit`` are unreachable without a cursor; with the default 200 this is theoretical). The
walk stops at a short page (fewer than ``limit``: the API fills pages while alerts remain) or at
``start``; reaching ``max_pages`` is an error, not a silent truncation. Rows are filtered to
``start <= ts < end`` and to the requested ticker.
"""

import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from pydantic import Field, PrivateAttr

from ats_resources.vendors.collect import Fetched, collect
from ats_resources.vendors.errors import VendorError
from ats_resources.vendors.http import RequestStats, VendorHttp
from ats_resources.vendors.resource import VendorRetrySettings

VENDOR = "unusual_whales"
FLOW_ALERTS = "/api/option-trades/flow-alerts"
MAX_LIMIT = 200

FLOW_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8,
    "ticker": pl.Utf8,
    "ts": pl.Datetime("us", "UTC"),
    "option_type": pl.Utf8,
    "strike": pl.Float64,
    "expiry": pl.Date,
    "price": pl.Float64,
    "size": pl.Int64,
    "premium": pl.Float64,
    "underlying_price": pl.Float64,
    "execution": pl.Utf8,
    "side": pl.Utf8,
    "sentiment": pl.Utf8,
}
_OPTION_TYPES = {"call": "call", "c": "call", "put": "put", "p": "put"}
_MALFORMED_HINT = (
    "the response does not match Unusual Whales' documented flow-alert format; if it persists, "
    "report it to Unusual Whales"
)

_GAVE_UP_HINT = (
    "Unusual Whales kept failing after retries: retry later, or raise timeout_s / max_attempts"
)


class _Bad(ValueError):
    """A field of an alert that is missing or cannot be read."""

    def __init__(self, name: str, value: Any):
        super().__init__(name)
        self.name, self.value = name, value


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_ms(moment: datetime) -> int:
    delta = _utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError(value)
    number = float(value)  # ints, floats and decimal strings such as "186705"
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(value)
    return number


def _integer(value: Any) -> int:
    number = _number(value)
    if number != int(number):
        raise ValueError(value)
    return int(number)


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # Unix milliseconds or seconds
        return datetime.fromtimestamp(seconds, UTC)
    return _utc(datetime.fromisoformat(str(value)))


def _option_type(value: Any) -> str:
    return _OPTION_TYPES[str(value).strip().lower()]


def _get(item: dict[str, Any], name: str, parse: Callable[[Any], Any]) -> Any:
    if item.get(name) is None:
        raise _Bad(name, None)
    try:
        return parse(item[name])
    except (TypeError, ValueError, KeyError, OverflowError):
        raise _Bad(name, item[name]) from None


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _execution(item: dict[str, Any]) -> str:
    if _flag(item.get("has_sweep")):
        return "sweep"
    return "block" if _flag(item.get("has_floor")) else "single"


def _alert(item: Any) -> dict[str, Any]:
    """One wire alert as an OPTIONS_FLOW row; raises :class:`_Bad` naming a bad field."""
    if not isinstance(item, dict):
        raise _Bad("<item>", item)
    option_type = _get(item, "type", _option_type)
    ask = _get(item, "total_ask_side_prem", _number)
    bid = _get(item, "total_bid_side_prem", _number)
    side = "ask" if ask > bid else "bid" if bid > ask else "mid"
    bought = side == "ask"
    sentiment = (
        None if side == "mid" else "bullish" if (option_type == "call") == bought else "bearish"
    )
    event_id = item.get("id")
    if event_id in (None, ""):
        event_id = f"{_get(item, 'option_chain', str)}@{_get(item, 'created_at', str)}"
    return {
        "event_id": str(event_id),
        "ticker": _get(item, "ticker", lambda v: str(v).strip().upper()),
        "ts": _get(item, "created_at", _timestamp),
        "option_type": option_type,
        "strike": _get(item, "strike", _number),
        "expiry": _get(item, "expiry", lambda v: date.fromisoformat(str(v)[:10])),
        "price": _get(item, "price", _number),
        "size": _get(item, "total_size", _integer),
        "premium": _get(item, "total_premium", _number),
        "underlying_price": _get(item, "underlying_price", _number),
        "execution": _execution(item),
        "side": side,
        "sentiment": sentiment,
    }


class UnusualWhalesOptionsFlow(VendorRetrySettings):
    """Options-flow alerts from Unusual Whales' REST API (see the module docstring)."""

    api_key: str = Field(
        description="Unusual Whales API token; pass dg.EnvVar('UNUSUAL_WHALES_API_KEY')."
    )
    base_url: str = Field(default="https://api.unusualwhales.com", description="REST base URL.")
    client_api_id: str = Field(
        default="100001", description="UW-CLIENT-API-ID header the vendor asks clients to send."
    )
    requests_per_minute: float = Field(
        default=120.0, gt=0, description="Rate limit shared by all threads of one call."
    )
    max_concurrency: int = Field(default=4, ge=1, description="Tickers fetched at once.")
    page_limit: int = Field(
        default=MAX_LIMIT, ge=1, le=MAX_LIMIT, description="Alerts per page (the API allows 200)."
    )
    max_pages: int = Field(
        default=100, ge=1, description="Pages per ticker and call before giving up."
    )

    _last_stats: RequestStats | None = PrivateAttr(default=None)

    def options_flow(self, symbols: Sequence[str], start: datetime, end: datetime) -> Fetched:
        return self.fetch_options_flow(symbols, start, end)

    @property
    def last_stats(self) -> RequestStats | None:
        """Requests, retries and waits of the last options_flow call (for metadata)."""
        return self._last_stats

    def http_client(self, sleep: Callable[[float], None] = time.sleep) -> VendorHttp:
        """A rate-limited, retrying session for this vendor, shared by the threads of one call."""
        return VendorHttp(
            VENDOR,
            self.base_url,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "UW-CLIENT-API-ID": self.client_api_id,
                "Accept": "application/json",
            },
            secrets=(self.api_key,),
            requests_per_minute=self.requests_per_minute,
            timeout_s=self.timeout_s,
            retry=self.retry_policy(),
            sleep=sleep,
        )

    def fetch_options_flow(
        self,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        http: VendorHttp | None = None,
    ) -> Fetched:
        start, end = _utc(start), _utc(end)
        tickers = list(dict.fromkeys(symbols))
        if not tickers or end <= start:
            return Fetched(pl.DataFrame(schema=FLOW_SCHEMA))
        session = http or self.http_client()

        def one(ticker: str) -> pl.DataFrame:
            try:
                return self._flow_one(session, ticker, start, end)
            except VendorError as exc:
                raise exc.with_hint(_GAVE_UP_HINT) from None

        try:
            return collect(
                tickers,
                one,
                max_concurrency=self.max_concurrency,
                schema=FLOW_SCHEMA,
            )
        finally:
            self._last_stats = session.stats
            if http is None:
                session.close()

    def _error(self, ticker: str, message: str, hint: str = _MALFORMED_HINT) -> VendorError:
        return VendorError(VENDOR, FLOW_ALERTS, message, ticker=ticker, hint=hint)

    def _flow_one(
        self, http: VendorHttp, ticker: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        newer_than = _epoch_ms(start)
        older_than = _epoch_ms(end) + (1 if _utc(end).microsecond % 1000 else 0)
        rows: dict[str, dict[str, Any]] = {}
        for _ in range(self.max_pages):
            body = http.get_json(
                FLOW_ALERTS,
                {
                    "ticker_symbol": ticker,
                    "newer_than": newer_than,
                    "older_than": older_than,
                    "limit": self.page_limit,
                },
                endpoint=FLOW_ALERTS,
                ticker=ticker,
            )
            items = body.get("data") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise self._error(ticker, "malformed response: no 'data' list")
            if not items:
                break
            page = []
            for index, item in enumerate(items):
                try:
                    page.append(_alert(item))
                except _Bad as bad:
                    what = "missing" if bad.value is None else f"unreadable ({bad.value!r:.40})"
                    raise self._error(
                        ticker, f"malformed alert {index} of a page: {bad.name!r} is {what}"
                    ) from None
            fresh = [row for row in page if row["event_id"] not in rows]
            rows.update((row["event_id"], row) for row in fresh)
            oldest = min(row["ts"] for row in page)
            if len(items) < self.page_limit or oldest < start:
                break
            if fresh:
                older_than = _epoch_ms(oldest) + 1  # overlap one millisecond: ties are not lost
            elif older_than != _epoch_ms(oldest):
                older_than = _epoch_ms(oldest)  # a full page of one millisecond: step past it
            else:
                raise self._error(
                    ticker,
                    f"paging made no progress at {oldest.isoformat()}",
                    hint="the API ignored older_than; report it to Unusual Whales",
                )
        else:
            raise self._error(
                ticker,
                f"more than {self.max_pages} pages of alerts",
                hint="narrow the time range or raise max_pages",
            )
        frame = pl.DataFrame(list(rows.values()), schema=FLOW_SCHEMA)
        return frame.filter(
            (pl.col("ticker") == ticker.upper()) & (pl.col("ts") >= start) & (pl.col("ts") < end)
        ).sort("ts", "event_id")
