"""Alpaca trading (paper or live) through alpaca-py's ``TradingClient``.

:class:`AlpacaBroker` implements :class:`live.brokers.base.Broker` over Alpaca's trading API v2:
``GET /v2/account``, ``GET /v2/clock``, ``GET /v2/positions``, ``GET /v2/orders?status=open``,
``GET /v2/orders:by_client_order_id``, ``POST /v2/orders``, ``DELETE /v2/orders/{id}`` and
``GET /v2/account/activities/FILL`` (the SDK has no method for account activities, so that one
goes through the client's generic ``get``, under the same retry and timeout logic).

alpaca-py builds the URLs, the auth headers and the order JSON (``MarketOrderRequest`` and
friends). What it does not do the way a trading loop needs, :class:`_TradingClient` adapts, the
same way ``ats_resources.vendors.alpaca`` adapts the market-data client:

* **Retries.** ``RESTClient._request`` retries only 429/504 after a fixed 3 s sleep, ignores
  ``Retry-After``, gives up on any other 5xx, timeout or reset at once, and has no time bound.
  The subclass sets ``self._retry = 0`` (the SDK's loop then makes exactly one call) and
  overrides ``_one_request``, the SDK's hook for one HTTP request: reads and cancels are retried
  on 429 / 5xx / timeouts / connection errors / malformed JSON with :class:`RetryPolicy`
  (exponential backoff with full jitter, at least what ``Retry-After`` asks, bounded in attempts
  and seconds). ``POST /v2/orders`` is sent exactly once per call: :meth:`AlpacaBroker.submit`
  owns that loop, because a lost answer means the order may exist (see below).
* **Timeouts.** alpaca-py passes no ``timeout`` to ``requests``; the override passes
  ``timeout_s`` (connect and read) on every request.

Both hooks (``_retry`` and ``_one_request(method, url, opts, retry)``) are private to alpaca-py
(checked against 0.44); tests/test_alpaca_broker.py exercises them against a fake server.

**Idempotent submit.** Orders carry the engine's deterministic ``client_order_id`` and Alpaca
refuses a second order with the same id (422 ``client_order_id must be unique``). When the POST
times out, the connection drops, a 5xx arrives or the 2xx body is unreadable, the outcome is
unknown: the broker looks the id up, returns the order if it exists, and only otherwise posts
again. A 422 "must be unique" answer fetches and returns the existing order. 403 (for example
``insufficient buying power``) and other 400/422 answers raise :class:`OrderRejected` with
Alpaca's message.

**Secrets.** The key pair lives only inside alpaca-py's client (sent as the
``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers). Every error message is redacted of both,
errors are raised outside ``except`` blocks so no chained ``requests`` exception (whose prepared
request holds the headers) travels with them, and reprs show neither.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from alpaca.common.enums import BaseURL
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLimitOrderRequest,
)

from ats_resources.vendors.errors import redact
from ats_resources.vendors.http import (
    RETRY_STATUSES,
    RetryPolicy,
    alpaca_wait_seconds,
    utc,
)
from live.brokers.base import (
    Account,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    MarketClock,
    OrderRejected,
    OrderStatus,
    TradingMode,
)
from live.engine.types import Fill, Order, OrderType, Side

log = logging.getLogger(__name__)

ENV_API_KEY = "ALPACA_API_KEY"
ENV_API_SECRET = "ALPACA_API_SECRET"
ENV_TRADING_URL = "ALPACA_TRADING_URL"
PAPER_URL = BaseURL.TRADING_PAPER.value  # https://paper-api.alpaca.markets
LIVE_URL = BaseURL.TRADING_LIVE.value  # https://api.alpaca.markets
DEFAULT_RETRY = RetryPolicy(max_attempts=5, max_elapsed_s=20.0, base_delay_s=0.5, max_delay_s=8.0)
OPEN_ORDERS_LIMIT = 500  # Alpaca's maximum page of GET /v2/orders
FILLS_PAGE_SIZE = 100  # Alpaca's maximum page of account activities
DUPLICATE_ID = "client_order_id must be unique"
_CREDENTIALS = f"check {ENV_API_KEY} and {ENV_API_SECRET}"

_HINTS = {
    401: f"Alpaca rejected the credentials: {_CREDENTIALS} (paper keys for paper, live keys for"
    " live trading)",
    403: "Alpaca refused the request: the account may be blocked or lack the permission",
    404: f"not found: check {ENV_TRADING_URL} (the trading API root, e.g. {PAPER_URL})",
    422: "Alpaca rejected the request parameters",
    429: "Alpaca's rate limit (200 requests/min per account) was still exceeded after retries",
}
_GAVE_UP = "Alpaca's trading API is failing or unreachable: retry later"

# Alpaca order status -> ours; a working status with a fill becomes PARTIALLY_FILLED.
_STATUSES = {
    "new": OrderStatus.NEW,
    "accepted": OrderStatus.NEW,
    "pending_new": OrderStatus.NEW,
    "accepted_for_bidding": OrderStatus.NEW,
    "pending_cancel": OrderStatus.NEW,  # still working until the cancel is confirmed
    "pending_replace": OrderStatus.NEW,
    "pending_review": OrderStatus.NEW,
    "calculated": OrderStatus.NEW,
    "held": OrderStatus.NEW,
    "stopped": OrderStatus.NEW,
    "suspended": OrderStatus.NEW,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "replaced": OrderStatus.CANCELED,  # its replacement is another order
    "expired": OrderStatus.EXPIRED,
    "done_for_day": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}
# Alpaca order type -> ours. Alpaca's "stop" and "trailing_stop" (never placed by this broker,
# but possibly found at it) have no engine type: they read as STOP_LIMIT without a limit price.
_ORDER_TYPES = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop_limit": OrderType.STOP_LIMIT,
    "stop": OrderType.STOP_LIMIT,
    "trailing_stop": OrderType.STOP_LIMIT,
}


class AlpacaError(BrokerError):
    """A failed Alpaca request: ``status`` (None without an HTTP answer), Alpaca's ``code`` and
    ``api_message``, the ``endpoint`` ("POST /v2/orders"), and ``unknown_outcome`` when the
    request may have taken effect (timeout, reset, 5xx, unreadable 2xx body)."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status: int | None = None,
        code: int | None = None,
        api_message: str = "",
        retryable: bool = False,
        unknown_outcome: bool = False,
        retry_after_s: float | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.detail = detail or message  # the message without the broker and endpoint
        self.endpoint, self.status, self.code = endpoint, status, code
        self.api_message = api_message
        self.unknown_outcome = unknown_outcome
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class _Failure:
    message: str
    status: int | None = None
    code: int | None = None
    api_message: str = ""
    retryable: bool = False
    unknown_outcome: bool = False
    asked_s: float | None = None  # what Retry-After (or X-RateLimit-Reset) asked for
    hint: str | None = None


class _TradingClient(TradingClient):
    """alpaca-py's trading client with the project's timeouts and retries (module docstring)."""

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        paper: bool,
        url_override: str | None,
        label: str,
        timeout_s: float,
        retry: RetryPolicy,
        rng: random.Random,
        sleep: Callable[[float], None],
    ) -> None:
        super().__init__(
            api_key=api_key,
            secret_key=secret_key,
            paper=paper,
            raw_data=True,
            url_override=url_override,
        )
        # Disable the SDK's own retry loop: with _retry == 0, RESTClient._request calls
        # _one_request once and never sleeps; our _one_request does the retrying.
        self._retry = 0
        self._root = str(getattr(self._base_url, "value", self._base_url))
        self._label, self._timeout_s, self._policy = label, timeout_s, retry
        self._rng, self._sleep = rng, sleep
        self._secrets = (api_key, secret_key)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"_TradingClient({self._label}, {self._root})"

    @contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        """Retries of this thread's requests inside the block stop by ``time.monotonic() == at``."""
        before = getattr(self._local, "deadline", None)
        self._local.deadline = at if before is None else min(at, before)
        try:
            yield
        finally:
            self._local.deadline = before

    def close(self) -> None:
        self._session.close()

    def error(self, endpoint: str, failure: _Failure, tried: str = "") -> AlpacaError:
        hint = failure.hint or _HINTS.get(failure.status or 0)
        if hint is None and failure.retryable:
            hint = _GAVE_UP
        detail = f"{failure.message}{tried}"
        if failure.status is not None:
            detail += f" (HTTP {failure.status})"
        if hint:
            detail += f"; {hint}"
        return AlpacaError(
            redact(f"{self._label} {endpoint}: {detail}", self._secrets),
            detail=redact(detail, self._secrets),
            endpoint=endpoint,
            status=failure.status,
            code=failure.code,
            api_message=redact(failure.api_message, self._secrets),
            retryable=failure.retryable,
            unknown_outcome=failure.unknown_outcome,
            retry_after_s=failure.asked_s,
        )

    # Overrides RESTClient._one_request (alpaca-py 0.44): one HTTP request of the SDK.
    def _one_request(self, method: str, url: str, opts: dict, retry: int) -> Any:
        method = method.upper()
        endpoint = f"{method} {url.removeprefix(self._root)}"
        opts = {**opts, "timeout": self._timeout_s}
        # an order POST is sent once: AlpacaBroker.submit looks it up before posting again
        attempts = 1 if method == "POST" else self._policy.max_attempts
        began = time.monotonic()
        deadline = began + self._policy.max_elapsed_s
        outer = getattr(self._local, "deadline", None)
        if outer is not None:
            deadline = min(deadline, outer)
        attempt = 0
        while True:
            attempt += 1
            body, failure = self._attempt(method, url, opts)
            if failure is None:
                return body
            if failure.retryable and attempt < attempts:
                delay = max(self._policy.backoff(attempt, self._rng), failure.asked_s or 0.0)
                if time.monotonic() + delay <= deadline:
                    self._sleep(delay)
                    continue
            elapsed = time.monotonic() - began
            tried = f" (gave up after {attempt} tries in {elapsed:.1f}s)" if attempt > 1 else ""
            raise self.error(endpoint, failure, tried)

    def _attempt(self, method: str, url: str, opts: dict) -> tuple[Any, _Failure | None]:
        """One try: the decoded body (None for an empty one), or why it failed.

        The failure is returned rather than raised from the ``except`` blocks, so the error
        finally raised carries no chained ``requests`` exception.
        """
        unknown = method == "POST"  # a lost answer to a POST: it may have taken effect
        try:
            response = self._session.request(method, url, **opts)
        except requests.Timeout:
            return None, _Failure(
                f"timed out after {self._timeout_s}s", retryable=True, unknown_outcome=unknown
            )
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            return None, _Failure(
                f"connection failed: {type(exc).__name__}", retryable=True, unknown_outcome=unknown
            )
        except requests.RequestException as exc:  # bad URL, invalid header...: not retryable
            return None, _Failure(
                f"request failed: {type(exc).__name__}: {exc}", hint=f"check {ENV_TRADING_URL}"
            )
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            hint = f"set {ENV_TRADING_URL} to the final https URL (redirects are not followed)"
            return None, _Failure(f"redirected to {where}", status=status, hint=hint)
        if status >= 400:
            api_message, code = _error_text(response)
            retryable = status in RETRY_STATUSES
            return None, _Failure(
                f"rejected: {api_message}",
                status=status,
                code=code,
                api_message=api_message,
                retryable=retryable,
                unknown_outcome=unknown and status >= 500,
                asked_s=alpaca_wait_seconds(response.headers, response.status_code)
                if retryable
                else None,
            )
        if not response.content.strip():
            return None, None  # 204 No Content (a cancel)
        try:
            return response.json(), None
        except ValueError:  # requests.JSONDecodeError, UnicodeDecodeError
            size = len(response.content)
            return None, _Failure(
                f"malformed JSON in a {size}-byte response",
                status=status,
                retryable=True,
                unknown_outcome=unknown,
            )


class AlpacaBroker:
    """Orders, fills, positions and the clock of one Alpaca account (paper or live).

    ``url_override`` points the client at another API root (a test server or a proxy); without
    it ``paper`` picks Alpaca's paper or live endpoint. ``retry`` bounds every read (attempts and
    seconds) and the whole of :meth:`submit`, lookups included. ``fills_since`` is where
    :meth:`poll_fills` starts (default: construction time less ``fills_lookback_s``, to tolerate
    clock skew); each poll re-reads the last ``fills_lookback_s`` seconds of activities (for
    late-appearing executions) and drops the ids it returned before.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        paper: bool = True,
        url_override: str | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        fills_page_size: int = FILLS_PAGE_SIZE,
        fills_since: datetime | None = None,
        fills_lookback_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        missing = [
            name
            for name, value in ((ENV_API_KEY, api_key), (ENV_API_SECRET, secret_key))
            if not (value and value.strip())
        ]
        if missing:
            raise ValueError(f"AlpacaBroker needs an API key pair; missing: {', '.join(missing)}")
        if timeout_s <= 0:
            raise ValueError(f"AlpacaBroker timeout_s must be positive, got {timeout_s}")
        if not 1 <= fills_page_size <= FILLS_PAGE_SIZE:
            raise ValueError(f"fills_page_size must be 1..{FILLS_PAGE_SIZE}, got {fills_page_size}")
        self.paper = paper
        self.name = "alpaca-paper" if paper else "alpaca-live"
        root = url_override.strip().rstrip("/").removesuffix("/v2") if url_override else None
        self.url = root or (PAPER_URL if paper else LIVE_URL)
        self._policy = retry
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._client = _TradingClient(
            api_key=api_key.strip(),
            secret_key=secret_key.strip(),
            paper=paper,
            url_override=root,
            label=self.name,
            timeout_s=timeout_s,
            retry=retry,
            rng=self._rng,
            sleep=sleep,
        )
        self._page_size = fills_page_size
        self._lookback = timedelta(seconds=fills_lookback_s)
        self._after = utc(fills_since) if fills_since else datetime.now(UTC) - self._lookback
        self._lock = threading.RLock()
        self._orders: dict[str, Order] = {}  # client id -> order submitted or adopted
        self._coid_by_id: dict[str, str] = {}  # broker id -> client id, every order seen
        self._id_by_coid: dict[str, str] = {}
        self._foreign: set[str] = set()  # broker ids looked up and found not to be ours
        self._seen: dict[str, datetime] = {}  # activity id -> transaction time, returned/skipped
        self.skipped_fills = 0  # executions of orders this broker did not submit or adopt

    @classmethod
    def from_env(cls, env: Mapping[str, str], mode: TradingMode, **kwargs: Any) -> AlpacaBroker:
        """The broker ``mode`` asks for, keyed by ``ALPACA_API_KEY`` / ``ALPACA_API_SECRET``
        (optionally at ``ALPACA_TRADING_URL``); ``kwargs`` go to the constructor."""
        if mode is TradingMode.SIMULATED:
            raise ValueError(
                "AlpacaBroker trades paper or live; ATS_TRADING_MODE=simulated uses the "
                "simulated broker"
            )
        paper = mode is TradingMode.PAPER
        missing = [n for n in (ENV_API_KEY, ENV_API_SECRET) if not (env.get(n) or "").strip()]
        if missing:
            kind = "paper" if paper else "live"
            raise ValueError(
                f"ATS_TRADING_MODE={mode.value} needs Alpaca {kind}-trading keys: set "
                f"{' and '.join(missing)}"
            )
        url = (env.get(ENV_TRADING_URL) or "").strip() or None
        host = urlsplit(url).hostname if url else None
        wrong = LIVE_URL if paper else PAPER_URL
        if host and host == urlsplit(wrong).hostname:
            right = PAPER_URL if paper else LIVE_URL
            raise ValueError(
                f"ATS_TRADING_MODE={mode.value} but {ENV_TRADING_URL}={url} is Alpaca's "
                f"{'live' if paper else 'paper'} API; unset it or use {right}"
            )
        return cls(env[ENV_API_KEY], env[ENV_API_SECRET], paper=paper, url_override=url, **kwargs)

    def __repr__(self) -> str:
        return f"AlpacaBroker(name={self.name!r}, url={self.url!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AlpacaBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------------
    def account(self) -> Account:
        raw = self._client.get_account()
        return self._parse("GET /v2/account", raw, _account)

    def clock(self) -> MarketClock:
        raw = self._client.get_clock()
        return self._parse("GET /v2/clock", raw, _clock)

    def positions(self) -> list[BrokerPosition]:
        raw = self._client.get_all_positions()
        return self._parse("GET /v2/positions", raw, lambda rows: [_position(r) for r in rows])

    def open_orders(self) -> list[BrokerOrder]:
        """Every working order, oldest first (at most 500: Alpaca's page; a warning beyond)."""
        request = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=OPEN_ORDERS_LIMIT)
        raw = self._client.get_orders(request)
        orders = self._parse("GET /v2/orders", raw, lambda rows: [_order(r) for r in rows])
        if len(orders) >= OPEN_ORDERS_LIMIT:
            log.warning(
                "%s: %d open orders, Alpaca's page limit: some may be missing",
                self.name,
                len(orders),
            )
        for order in orders:
            self._note(order)
        return sorted(orders, key=lambda o: o.submitted_at or datetime.min.replace(tzinfo=UTC))

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        failure: AlpacaError | None = None
        try:
            raw = self._client.get_order_by_client_id(client_order_id)
        except AlpacaError as exc:
            failure = exc
        if failure is not None:
            if failure.status == 404:
                return None
            raise failure
        order = self._parse("GET /v2/orders:by_client_order_id", raw, _order)
        self._note(order)
        return order

    # -- orders ------------------------------------------------------------------------------------
    def submit(self, order: Order) -> BrokerOrder:
        """Place ``order`` as a DAY order, idempotently by its ``client_order_id`` (module
        docstring). Limit prices round to Alpaca's tick (a cent, or 0.0001 below $1) in the
        order's favour (buys down, sells up); stop prices to the nearest tick."""
        request = _order_request(order)
        coid = order.client_order_id
        with self._lock:
            known_before = coid in self._orders
            self._orders[coid] = order  # before posting: fills map even if the answer is lost
        unknown_before = False
        began = time.monotonic()
        deadline = began + self._policy.max_elapsed_s
        attempt = 0
        while True:
            attempt += 1
            failure: AlpacaError | None = None
            try:
                with self._client.deadline(deadline):
                    raw = self._client.submit_order(request)
            except AlpacaError as exc:
                failure = exc
            if failure is None:
                placed = self._parse("POST /v2/orders", raw, _order)
                self._note(placed)
                return placed
            if failure.status == 422 and DUPLICATE_ID in failure.api_message.lower():
                existing = self._existing(order, deadline)
                if existing is None:
                    raise BrokerError(
                        f"{self.name} POST /v2/orders: {coid} exists at Alpaca ("
                        f"{failure.api_message}) but the lookup by client_order_id found nothing",
                        retryable=True,
                    )
                return existing
            if not failure.retryable:
                if unknown_before:  # an earlier try may have placed it (then 403: no buying power)
                    found = self._find_after_unknown(order, deadline)
                    if found is not None:
                        return found
                if not known_before and not unknown_before:  # else keep it: its fills map back
                    with self._lock:
                        self._orders.pop(coid, None)
                if failure.status in (400, 403, 422):
                    raise OrderRejected(
                        f"{self.name}: Alpaca refused order {coid} ({order.side} {order.qty} "
                        f"{order.ticker} {order.order_type}): {failure.api_message or failure} "
                        f"(HTTP {failure.status})"
                    )
                raise failure
            unknown_before = unknown_before or failure.unknown_outcome
            if failure.unknown_outcome:
                found = self._find_after_unknown(order, deadline)
                if found is not None:
                    return found
            delay = max(self._policy.backoff(attempt, self._rng), failure.retry_after_s or 0.0)
            if attempt >= self._policy.max_attempts or time.monotonic() + delay > deadline:
                break
            log.info("%s: retrying order %s in %.2fs after: %s", self.name, coid, delay, failure)
            self._sleep(delay)
        elapsed = time.monotonic() - began
        raise BrokerError(
            f"{self.name} POST /v2/orders: order {coid} not confirmed after {attempt} tries "
            f"in {elapsed:.1f}s (last: {failure.detail}); submitting it again is safe, Alpaca refuses a "
            "second order with the same client_order_id",
            retryable=True,
        )

    def cancel(self, client_order_id: str) -> None:
        with self._lock:
            broker_id = self._id_by_coid.get(client_order_id)
        if broker_id is None:
            found = self.get_order(client_order_id)
            if found is None:
                log.info("%s: cancel %s: no such order at Alpaca", self.name, client_order_id)
                return
            if not found.status.open:
                return
            broker_id = found.broker_order_id
        failure: AlpacaError | None = None
        try:
            self._client.cancel_order_by_id(broker_id)
        except AlpacaError as exc:
            failure = exc
        if failure is not None:
            if failure.status in (404, 422):  # already filled, cancelled or gone
                log.info("%s: cancel %s: %s", self.name, client_order_id, failure.api_message)
                return
            raise failure

    def adopt(self, order: Order) -> None:
        with self._lock:
            self._orders[order.client_order_id] = order

    # -- fills -------------------------------------------------------------------------------------
    def poll_fills(self) -> list[Fill]:
        """Executions since the last poll, oldest first, from ``GET /v2/account/activities/FILL``.

        ``fees`` is 0.0: Alpaca charges no commission on stocks, and the regulatory fees it
        passes on (SEC, FINRA TAF) are separate ``FEE`` activities, not part of a fill.
        ``reference_price`` is NaN (the broker does not know the pre-trade mid). Executions of
        orders this broker neither submitted nor adopted are skipped, counted in
        :attr:`skipped_fills` and logged.
        """
        activities = self._fetch_fills()
        fills: list[Fill] = []
        with self._lock:
            fresh = [a for a in activities if a["id"] not in self._seen]
        for activity in fresh:
            coid = self._coid_of(str(activity.get("order_id") or ""))
            with self._lock:
                order = self._orders.get(coid) if coid else None
            if order is None:
                with self._lock:
                    self.skipped_fills += 1
                log.warning(
                    "%s: skipping fill %s of %s %s %s: order %s is not one this broker placed",
                    self.name,
                    activity["id"],
                    activity.get("side"),
                    activity.get("qty"),
                    activity.get("symbol"),
                    activity.get("order_id"),
                )
            else:
                fills.append(self._parse("GET /v2/account/activities/FILL", activity, _fill(order)))
        with self._lock:
            for activity in fresh:
                self._seen[activity["id"]] = activity["_ts"]
            if activities:
                latest = max(a["_ts"] for a in activities)
                self._after = max(self._after, latest - self._lookback)
            # ids before `after` cannot come back (after is exclusive); keep the boundary's
            self._seen = {k: t for k, t in self._seen.items() if t >= self._after}
        return fills

    # -- internals ---------------------------------------------------------------------------------
    def _parse(self, endpoint: str, raw: Any, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(raw)
        except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        raise BrokerError(
            redact(f"{self.name} {endpoint}: unexpected Alpaca response ({failure})"),
            retryable=False,
        )

    def _note(self, order: BrokerOrder) -> None:
        """Remember the broker id <-> client id of ``order`` (fills name the broker id)."""
        with self._lock:
            self._coid_by_id[order.broker_order_id] = order.client_order_id
            self._id_by_coid[order.client_order_id] = order.broker_order_id
            mine = self._orders.get(order.client_order_id)
        if mine is not None and (mine.ticker, mine.side, mine.qty) != (
            order.ticker,
            order.side,
            order.qty,
        ):
            log.warning(
                "%s: order %s at Alpaca is %s %d %s, this broker's is %s %d %s",
                self.name,
                order.client_order_id,
                order.side,
                order.qty,
                order.ticker,
                mine.side,
                mine.qty,
                mine.ticker,
            )

    def _existing(self, order: Order, deadline: float) -> BrokerOrder | None:
        with self._client.deadline(deadline):
            return self.get_order(order.client_order_id)

    def _find_after_unknown(self, order: Order, deadline: float) -> BrokerOrder | None:
        """The order if a lost POST placed it; None when it is not there or the lookup failed
        (posting again is safe either way: Alpaca refuses a duplicate client_order_id)."""
        failure: BrokerError | None = None
        try:
            found = self._existing(order, deadline)
        except BrokerError as exc:
            failure = exc
        if failure is not None:
            log.warning("%s: lookup of %s failed: %s", self.name, order.client_order_id, failure)
            return None
        if found is not None:
            log.info(
                "%s: order %s was placed; its answer was lost", self.name, found.client_order_id
            )
        return found

    def _coid_of(self, broker_id: str) -> str | None:
        """The client id of broker order ``broker_id``, looking it up when an order of ours has
        no known broker id yet (a submit whose answer was lost, an adopted order)."""
        with self._lock:
            coid = self._coid_by_id.get(broker_id)
            unresolved = any(c not in self._id_by_coid for c in self._orders)
            if coid is not None or not broker_id or broker_id in self._foreign or not unresolved:
                return coid
        failure: AlpacaError | None = None
        try:
            raw = self._client.get_order_by_id(broker_id)
        except AlpacaError as exc:
            failure = exc
        if failure is not None:
            if failure.status in (404, 422):
                with self._lock:
                    self._foreign.add(broker_id)
                return None
            raise failure
        found = self._parse("GET /v2/orders/{id}", raw, _order)
        self._note(found)
        with self._lock:
            if found.client_order_id not in self._orders:
                self._foreign.add(broker_id)
        return found.client_order_id

    def _fetch_fills(self) -> list[dict]:
        """Every FILL activity after ``self._after``, oldest first, across pages."""
        endpoint = "GET /v2/account/activities/FILL"
        params: dict[str, Any] = {
            "direction": "asc",
            "page_size": self._page_size,
            "after": _rfc3339(self._after),
        }
        out: list[dict] = []
        token: str | None = None
        while True:
            if token is not None:
                params["page_token"] = token
            raw = self._client.get("/account/activities/FILL", params)
            page = self._parse(endpoint, raw, _activities)
            out.extend(page)
            if len(raw) < self._page_size:  # a short page is the last (counting every item)
                return out
            last = str(raw[-1]["id"])
            if token is not None and last <= token:
                raise BrokerError(
                    f"{self.name} {endpoint}: page_token {token!r} did not advance "
                    "(pagination loops)",
                    retryable=True,
                )
            token = last


# -- wire format ------------------------------------------------------------------------------------
def _order_request(order: Order) -> OrderRequest:
    common: dict[str, Any] = {
        "symbol": order.ticker,
        "qty": order.qty,
        "side": OrderSide.BUY if order.side is Side.BUY else OrderSide.SELL,
        "time_in_force": TimeInForce.DAY,
        "client_order_id": order.client_order_id,
    }
    if order.order_type is OrderType.MARKET:
        return MarketOrderRequest(**common)
    favour = ROUND_FLOOR if order.side is Side.BUY else ROUND_CEILING
    limit = _tick(order.limit_price, favour)  # type: ignore[arg-type]  # Order checks it is set
    if order.order_type is OrderType.LIMIT:
        return LimitOrderRequest(**common, limit_price=limit)
    stop = _tick(order.stop_price, ROUND_HALF_UP)  # type: ignore[arg-type]
    return StopLimitOrderRequest(**common, limit_price=limit, stop_price=stop)


def _tick(price: float, rounding: str) -> float:
    """``price`` on Alpaca's tick: 0.01 from $1, 0.0001 below."""
    value = Decimal(repr(float(price)))
    step = Decimal("0.01") if value >= 1 else Decimal("0.0001")
    return float(value.quantize(step, rounding=rounding))


def _error_text(response: requests.Response) -> tuple[str, int | None]:
    """Alpaca's ``{"code": ..., "message": ...}``, else the first 200 characters."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        code = body.get("code")
        return str(body["message"])[:200], code if isinstance(code, int) else None
    return (response.text[:200].replace("\n", " ") or response.reason or "no body"), None


def _rfc3339(moment: datetime) -> str:
    return utc(moment).isoformat().replace("+00:00", "Z")


def _time(value: str) -> datetime:
    """RFC 3339 with "Z" or an offset and 0-9 fraction digits, as aware UTC."""
    return utc(datetime.fromisoformat(str(value)))


def _time_or_none(value: Any) -> datetime | None:
    return _time(value) if value else None


def _float_or_none(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _shares(value: Any) -> int:
    """Whole shares from Alpaca's decimal text; a fractional amount is truncated (logged)."""
    amount = Decimal(str(value if value not in (None, "") else 0))
    whole = int(amount)
    if amount != whole:
        log.warning("fractional share amount %s truncated to %d", amount, whole)
    return whole


def _account(raw: dict) -> Account:
    return Account(
        equity=float(raw["equity"]),
        cash=float(raw["cash"]),
        buying_power=float(raw["buying_power"]),
        trading_blocked=bool(raw.get("trading_blocked") or raw.get("account_blocked")),
        status=str(raw.get("status") or "ACTIVE"),
    )


def _clock(raw: dict) -> MarketClock:
    return MarketClock(
        timestamp=_time(raw["timestamp"]),
        is_open=bool(raw["is_open"]),
        next_open=_time(raw["next_open"]),
        next_close=_time(raw["next_close"]),
    )


def _position(raw: dict) -> BrokerPosition:
    """Alpaca sends a short as ``"side": "short"`` with a negative ``qty``; a positive qty on a
    short side is read as short too."""
    qty = _shares(raw["qty"])
    side = str(raw.get("side") or "").lower()
    if side == "short":
        qty = -abs(qty)
    elif side == "long":
        qty = abs(qty)
    return BrokerPosition(ticker=raw["symbol"], qty=qty, avg_price=float(raw["avg_entry_price"]))


def _order(raw: dict) -> BrokerOrder:
    kind = str(raw.get("type") or raw.get("order_type") or "")
    if kind not in _ORDER_TYPES:
        raise ValueError(f"unknown order type {kind!r}")
    text = str(raw["status"])
    status = _STATUSES.get(text)
    if status is None:
        log.warning("unknown Alpaca order status %r read as working", text)
        status = OrderStatus.NEW
    filled = _shares(raw.get("filled_qty"))
    if status is OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    return BrokerOrder(
        client_order_id=str(raw["client_order_id"]),
        broker_order_id=str(raw["id"]),
        ticker=str(raw["symbol"]),
        side=Side(str(raw["side"]).lower()),
        qty=_shares(raw.get("qty")),  # None for a notional order (never placed by this broker)
        order_type=_ORDER_TYPES[kind],
        status=status,
        filled_qty=filled,
        filled_avg_price=_float_or_none(raw.get("filled_avg_price")),
        limit_price=_float_or_none(raw.get("limit_price")),
        stop_price=_float_or_none(raw.get("stop_price")),
        submitted_at=_time_or_none(raw.get("submitted_at") or raw.get("created_at")),
    )


def _activities(raw: list) -> list[dict]:
    """FILL activities with a parsed ``_ts``; other activity types are dropped."""
    if not isinstance(raw, list):
        raise TypeError(f"expected a list of activities, got {type(raw).__name__}")
    out = []
    for item in raw:
        if str(item.get("activity_type") or "FILL").upper() != "FILL":
            continue
        out.append({**item, "id": str(item["id"]), "_ts": _time(item["transaction_time"])})
    return out


def _fill(order: Order) -> Callable[[dict], Fill]:
    def parse(activity: dict) -> Fill:
        side = str(activity["side"]).lower()  # buy, sell or sell_short
        return Fill(
            client_order_id=order.client_order_id,
            ticker=str(activity.get("symbol") or order.ticker),
            side=Side.BUY if side == "buy" else Side.SELL,
            qty=_shares(activity["qty"]),
            price=float(activity["price"]),
            fees=0.0,
            ts=activity["_ts"],
            intent=order.intent,
            signal=order.signal,
        )

    return parse
