"""HTTP for vendor clients: a per-vendor rate limiter and retries that honour Retry-After.

Retries cover 429, 5xx, timeouts, connection resets and malformed JSON; they back off
exponentially with full jitter, wait at least what ``Retry-After`` asks, and stop after
``max_attempts`` tries or ``max_elapsed_s`` seconds, whichever comes first. 4xx other than 429
fail at once with a hint (bad key, plan limit, unknown symbol).
"""

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from ats_resources.vendors.errors import VendorError, redact

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RateLimiter:
    """Token bucket: at most ``per_minute`` acquisitions per rolling minute, shared by threads.

    :meth:`shared` hands out one limiter per vendor and base URL for the whole process, so
    consecutive calls and concurrent assets of one run draw on the same budget.
    """

    _registry: ClassVar[dict[tuple[str, str, float], "RateLimiter"]] = {}
    _registry_lock = threading.Lock()

    @classmethod
    def shared(cls, vendor: str, base_url: str, per_minute: float) -> "RateLimiter":
        key = (vendor, base_url, per_minute)
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(per_minute)
            return cls._registry[key]

    def __init__(
        self,
        per_minute: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if per_minute <= 0:
            raise ValueError(f"requests per minute must be positive, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, min(int(per_minute), 10)))
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                wait = (1.0 - self._tokens) / self.rate
            sleep(wait)
            waited += wait


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_elapsed_s: float = 120.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about the sender's zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def alpaca_wait_seconds(headers: Mapping[str, str], status: int) -> float | None:
    """Seconds Alpaca asked to wait: ``Retry-After``, else, on a 429, ``X-RateLimit-Reset``
    (epoch seconds when the rate-limit window reopens). Shared by the market-data and trading
    clients."""
    asked = retry_after_seconds(headers.get("Retry-After"))
    if asked is None and status == 429:
        reset = headers.get("X-RateLimit-Reset")
        try:
            asked = max(0.0, float(reset) - time.time()) if reset else None
        except ValueError:
            asked = None
    return asked


def utc(moment: datetime) -> datetime:
    """Aware UTC; naive input is taken as UTC (as alpaca-py does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class RequestStats:
    """What a client did, for metadata and tests: requests, retries and seconds waited."""

    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    retry_after_waits: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, retry_after: float | None = None, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
            if retry_after is not None:
                self.retry_after_waits.append(retry_after)


class VendorHttp:
    """A JSON-over-HTTP session for one vendor, shared by the threads of a collector."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        requests_per_minute: float = 300.0,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ):
        self.vendor = vendor
        self.secrets = secrets
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        if sleep is time.sleep:
            self.limiter = RateLimiter.shared(vendor, base_url, requests_per_minute)
            self._sleep = sleep
        else:
            # An injected sleep (tests) does not pass real time: give this client a limiter on
            # a clock that advances by what was "slept", so waiting never busy-spins.
            slept = [0.0]

            def virtual_sleep(seconds: float) -> None:
                slept[0] += seconds
                sleep(seconds)

            self.limiter = RateLimiter(
                requests_per_minute, clock=lambda: time.monotonic() + slept[0]
            )
            self._sleep = virtual_sleep
        self._rng = random.Random(seed)
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=dict(headers or {}), timeout=timeout_s
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "VendorHttp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, endpoint: str, ticker: str | None, message: str, **kw: Any) -> VendorError:
        return VendorError(
            self.vendor, endpoint, redact(message, self.secrets), ticker=ticker, **kw
        )

    def get_json(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | None = None,
        *,
        endpoint: str,
        ticker: str | None = None,
    ) -> Any:
        """GET and decode JSON, with rate limiting and retries; raises :class:`VendorError`."""
        began = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.stats.add(waited_s=self.limiter.acquire(self._sleep), requests=1)
            failure: VendorError
            retry_after: float | None = None
            try:
                response = self._client.get(path_or_url, params=params)
            except httpx.TimeoutException:
                failure = self._error(
                    endpoint,
                    ticker,
                    f"timed out after {self._client.timeout.read}s",
                    retryable=True,
                )
            except httpx.TransportError as exc:
                failure = self._error(
                    endpoint, ticker, f"connection failed: {type(exc).__name__}", retryable=True
                )
            else:
                status = response.status_code
                if status < 400:
                    try:
                        return response.json()
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        failure = self._error(
                            endpoint,
                            ticker,
                            f"malformed JSON in a {len(response.content)}-byte response",
                            retryable=True,
                        )
                else:
                    body = response.text[:200].replace("\n", " ")
                    retryable = status in RETRY_STATUSES
                    failure = self._error(
                        endpoint, ticker, f"rejected: {body}", status=status, retryable=retryable
                    )
                    retry_after = (
                        retry_after_seconds(response.headers.get("Retry-After"))
                        if retryable
                        else None
                    )
            elapsed = time.monotonic() - began
            if not failure.retryable or attempt >= self.retry.max_attempts:
                raise failure
            delay = max(self.retry.backoff(attempt, self._rng), retry_after or 0.0)
            if elapsed + delay > self.retry.max_elapsed_s:
                raise failure
            self.stats.add(retry_after=retry_after, retries=1, waited_s=delay)
            self._sleep(delay)
