"""The shared vendor HTTP layer: rate limiter, backoff, Retry-After, retries and redaction."""

from __future__ import annotations

import random
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ats_resources.vendors.errors import VendorError, redact
from ats_resources.vendors.http import RateLimiter, RetryPolicy, VendorHttp, retry_after_seconds
from tests.fakes.vendor_server import FakeVendorServer, Fault, Request, Response

SECRET = "sk-live-0123456789abcdef"
FAST = RetryPolicy(max_attempts=4, max_elapsed_s=5.0, base_delay_s=0.01, max_delay_s=0.05)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- RateLimiter --------------------------------------------------------------------------------
def test_rate_limiter_allows_the_burst_then_paces_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(60, burst=2, clock=clock)
    assert limiter.acquire(clock.sleep) == 0.0
    assert limiter.acquire(clock.sleep) == 0.0
    assert limiter.acquire(clock.sleep) == pytest.approx(1.0)  # 60/min = one a second
    clock.now += 10  # idle time refills only up to the burst
    assert [limiter.acquire(clock.sleep) for _ in range(3)] == pytest.approx([0.0, 0.0, 1.0])


@pytest.mark.parametrize("rate", [0, -5])
def test_rate_limiter_rejects_a_non_positive_rate(rate):
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate)


def test_rate_limiter_is_shared_by_threads():
    limiter = RateLimiter(6000, burst=1)  # 100 a second, no burst
    began = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)]) for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 25 acquisitions, the first free: at least 24 intervals of 10 ms whatever the threads do.
    assert time.monotonic() - began >= 0.24 * 0.95


# -- RetryPolicy and Retry-After ------------------------------------------------------------------
def test_backoff_is_full_jitter_within_exponential_bounds():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(1)
    for attempt in range(1, 9):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        draws = [policy.backoff(attempt, rng) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.8 * ceiling  # jitter spans the range, not a fixed delay


def test_retry_after_seconds_reads_delta_seconds():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None


def test_retry_after_seconds_reads_an_http_date():
    now = datetime(2024, 3, 5, 15, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert later.endswith("GMT")
    assert retry_after_seconds(later, now=now.timestamp()) == pytest.approx(30.0)
    assert retry_after_seconds(earlier, now=now.timestamp()) == 0.0


# -- VendorHttp against a local server -------------------------------------------------------------
@pytest.fixture
def server():
    with FakeVendorServer() as srv:
        srv.route("/data", lambda r: Response(200, {"ok": True, "n": len(srv.requests)}))
        yield srv


def make_http(server, *, retry=FAST, timeout_s=2.0, sleep=time.sleep) -> VendorHttp:
    return VendorHttp(
        "acme",
        server.url,
        headers={"Authorization": f"Bearer {SECRET}"},
        secrets=(SECRET,),
        requests_per_minute=60_000,
        timeout_s=timeout_s,
        retry=retry,
        sleep=sleep,
        seed=1,
    )


@pytest.mark.integration
def test_429_is_retried_after_what_retry_after_asks(server):
    server.fail_next(Fault("status", 429, headers={"Retry-After": "2"}))
    slept: list[float] = []
    with make_http(server, sleep=slept.append) as http:
        assert http.get_json("/data", endpoint="data")["ok"] is True
    assert slept == [2.0]  # the Retry-After, not the 10 ms backoff
    assert http.stats.retries == 1 and http.stats.requests == 2
    assert http.stats.retry_after_waits == [2.0]


@pytest.mark.integration
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried(server, status):
    server.fail_next(Fault("status", status), Fault("status", status))
    with make_http(server) as http:
        assert http.get_json("/data", endpoint="data")["ok"] is True
    assert len(server.requests) == 3
    assert http.stats.retries == 2


@pytest.mark.integration
def test_a_timeout_is_retried(server):
    server.fail_next(Fault("slow", delay_s=0.6))
    with make_http(server, timeout_s=0.2) as http:
        assert http.get_json("/data", endpoint="data")["ok"] is True
    assert http.stats.retries == 1


@pytest.mark.integration
def test_timeouts_give_up_after_max_attempts(server):
    server.fail_next(*[Fault("slow", delay_s=0.5)] * 2)
    retry = RetryPolicy(max_attempts=2, max_elapsed_s=5, base_delay_s=0.01, max_delay_s=0.01)
    with make_http(server, retry=retry, timeout_s=0.15) as http, pytest.raises(VendorError) as err:
        http.get_json("/data", endpoint="data", ticker="AAA")
    assert "timed out" in str(err.value) and "AAA" in str(err.value)
    assert err.value.retryable
    assert len(server.requests) == 2


@pytest.mark.integration
def test_a_reset_connection_is_retried(server):
    server.fail_next(Fault("reset"))
    with make_http(server) as http:
        assert http.get_json("/data", endpoint="data")["ok"] is True
    assert http.stats.retries == 1


@pytest.mark.integration
def test_truncated_json_is_retried(server):
    server.fail_next(Fault("truncated"), Fault("truncated"))
    with make_http(server) as http:
        assert http.get_json("/data", endpoint="data")["ok"] is True
    assert http.stats.retries == 2


@pytest.mark.integration
def test_attempts_are_bounded(server):
    server.fail_next(*[Fault("status", 500)] * 10)
    with make_http(server) as http, pytest.raises(VendorError) as err:
        http.get_json("/data", endpoint="data")
    assert err.value.status == 500
    assert len(server.requests) == FAST.max_attempts


@pytest.mark.integration
def test_elapsed_time_is_bounded(server):
    """A Retry-After longer than the elapsed budget fails at once instead of sleeping."""
    server.fail_next(Fault("status", 503, headers={"Retry-After": "30"}))
    slept: list[float] = []
    retry = RetryPolicy(max_attempts=5, max_elapsed_s=1.0, base_delay_s=0.01)
    with make_http(server, retry=retry, sleep=slept.append) as http, pytest.raises(VendorError):
        http.get_json("/data", endpoint="data")
    assert slept == [] and len(server.requests) == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("status", "words"), [(401, "API key"), (403, "entitle"), (404, "not found")]
)
def test_client_errors_are_not_retried_and_carry_a_hint(server, status, words):
    server.fail_next(Fault("status", status, body={"error": "nope"}))
    with make_http(server) as http, pytest.raises(VendorError) as err:
        http.get_json("/data", endpoint="data", ticker="AAA")
    assert len(server.requests) == 1
    assert err.value.status == status and not err.value.retryable
    assert words in err.value.hint
    assert f"HTTP {status}" in str(err.value)


def _echo(request: Request) -> Response:
    """An unhelpful vendor that repeats the request, key and all, in its error body."""
    query = "&".join(f"{k}={v}" for k, v in request.query.items())
    auth = request.headers.get("Authorization", "")
    return Response(401, {"error": f"denied {request.path}?{query} with {auth} / {SECRET}"})


@pytest.mark.integration
def test_the_key_never_appears_in_errors_even_when_the_url_carried_it(server):
    server.route("/echo", _echo)
    with make_http(server) as http, pytest.raises(VendorError) as err:
        http.get_json("/echo", {"apiKey": SECRET, "token": SECRET}, endpoint="echo")
    for text in (str(err.value), repr(err.value), *map(str, err.value.args)):
        assert SECRET not in text
    assert "denied" in str(err.value)  # the vendor's message survives, the key does not


@pytest.mark.integration
def test_the_key_never_appears_when_the_connection_fails():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = VendorHttp(
        "acme",
        f"http://127.0.0.1:{port}",
        secrets=(SECRET,),
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01),
        requests_per_minute=60_000,
    )
    with http, pytest.raises(VendorError) as err:
        http.get_json(f"/data?apiKey={SECRET}", endpoint="data")
    assert "connection failed" in str(err.value)
    assert SECRET not in str(err.value) and err.value.__cause__ is None


def test_redact_masks_key_parameters_bearer_tokens_and_given_secrets():
    text = f"GET /x?apiKey={SECRET}&a=1 Authorization: Bearer {SECRET} body {SECRET}"
    assert SECRET not in redact(text, (SECRET,))
    masked = redact("https://h/x?apikey=abc&token=def&a=1")
    assert masked.startswith("https://h/x?apikey=***") and "abc" not in masked
    assert "def" not in masked
    assert redact("Bearer abc.def-ghi") == "Bearer ***"
