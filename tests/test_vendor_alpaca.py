"""AlpacaMarketData (through alpaca-py) against a fake Alpaca on loopback: never a real vendor."""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from ats_assets.market_data.specs import RAW_BARS, RAW_QUOTES, RAW_TRADES
from ats_resources.market_data import MarketData
from ats_resources.vendors.alpaca import DEFAULT_BASE_URL, AlpacaMarketData, _StockClient
from ats_resources.vendors.errors import VendorError
from ats_resources.vendors.http import RateLimiter, RetryPolicy
from tests.fakes.alpaca import KEY_ID, SECRET, FakeAlpaca
from tests.fakes.network import blocked_hosts  # noqa: F401 (autouse fixture)
from tests.fakes.vendor_server import FakeVendorServer, Fault

pytestmark = pytest.mark.integration

# 2024-03-05 (EST): 09:30-10:30 New York, 60 bars per ticker.
START = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
END = datetime(2024, 3, 5, 15, 30, tzinfo=UTC)
PAGE = 25
SCHEMAS = {"bars": RAW_BARS.schema, "quotes": RAW_QUOTES.schema, "trades": RAW_TRADES.schema}


@pytest.fixture(scope="module")
def shared_server():
    # one server for the module: each stop() waits up to serve_forever's 0.5 s poll interval
    with FakeVendorServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: FakeVendorServer):
    for state in (shared_server.routes, shared_server.faults, shared_server.requests):
        state.clear()
    yield shared_server
    shared_server.faults.clear()


@pytest.fixture
def fake(server: FakeVendorServer) -> FakeAlpaca:
    return FakeAlpaca(server, page_size=PAGE)


def client(fake: FakeAlpaca, **overrides) -> AlpacaMarketData:
    """A client with fast retries for tests (the defaults wait seconds)."""
    config = dict(
        api_key=KEY_ID,
        api_secret=SECRET,
        base_url=fake.url,
        tickers=fake.tickers,
        requests_per_minute=60_000,
        timeout_s=0.4,
        retry_max_attempts=4,
        retry_max_elapsed_s=5.0,
        retry_base_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    return AlpacaMarketData(**{**config, **overrides})


def symbols_of(fake: FakeAlpaca, kind: str, symbol: str) -> list:
    return [r for r in fake.requests(kind) if r.query.get("symbols") == symbol]


def assert_secret_free(text: str) -> None:
    assert KEY_ID not in text and SECRET not in text


# -- data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bars", "quotes", "trades"])
def test_rows_equal_the_simulated_source_across_pages(fake: FakeAlpaca, kind: str) -> None:
    # A generous timeout: a first page retried after a timeout (a loaded machine) would be a
    # second request without a page token; timeouts have their own tests below.
    md = client(fake, timeout_s=5.0)
    assert isinstance(md, MarketData)
    fetched = getattr(md, kind)(fake.tickers, START, END)

    assert fetched.failures == {}
    assert fetched.frame.schema == pl.Schema(SCHEMAS[kind])
    expected = fake.expected(kind, fake.tickers, START, END)
    assert len(expected) > 0
    assert fetched.frame.sort("ticker", "ts").equals(expected.sort("ticker", "ts"))
    # every ticker took several pages, each following the previous page's token
    for ticker in fake.tickers:
        sent = symbols_of(fake, kind, ticker)
        assert len(sent) >= 3
        assert "page_token" not in sent[0].query
        assert all(r.query.get("page_token") for r in sent[1:])
    # the fake, like Alpaca, includes `end`; the client keeps start <= ts < end
    if kind == "bars":
        assert len(fake.expected(kind, fake.tickers, START, END, inclusive=True)) > len(expected)
    assert fetched.frame["ts"].max() < END


def test_feed_timeframe_and_adjustment_are_sent(server: FakeVendorServer) -> None:
    fake = FakeAlpaca(server, entitled_feeds=("iex", "sip"))
    md = client(fake, feed="sip", adjustment="split")
    ticker = fake.tickers[0]
    assert md.bars([ticker], START, END).failures == {}
    assert md.quotes([ticker], START, END).failures == {}
    assert md.trades([ticker], START, END).failures == {}

    bars = fake.requests("bars")[0].query
    assert bars["symbols"] == ticker
    assert bars["timeframe"] == "1Min"
    assert bars["adjustment"] == "split"
    assert datetime.fromisoformat(bars["start"]) == START
    assert datetime.fromisoformat(bars["end"]) == END
    assert {r.query["feed"] for r in fake.requests()} == {"sip"}
    assert client(fake).adjustment == "all" and client(fake).feed == "iex"  # the defaults


def test_universe_and_empty_requests(fake: FakeAlpaca) -> None:
    md = client(fake, tickers=["AAPL", " MSFT ", "AAPL"])
    assert md.universe().to_dicts() == [
        {"ticker": "AAPL", "sector": "unknown"},
        {"ticker": "MSFT", "sector": "unknown"},
    ]
    with pytest.raises(ValueError, match="`tickers` config"):
        client(fake, tickers=[]).universe()
    empty = md.bars([], START, END)
    assert empty.frame.schema == pl.Schema(RAW_BARS.schema) and not len(empty.frame)
    assert not len(md.trades(fake.tickers, END, START).frame)
    assert fake.requests() == []


# -- retries ------------------------------------------------------------------------------------
def test_429_retry_after_is_honoured(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    fake.fail_next(Fault("status", 429, headers={"Retry-After": "1"}))
    fetched = client(fake).bars([ticker], START, END)

    assert fetched.failures == {}
    assert fetched.frame.equals(fake.expected("bars", [ticker], START, END))
    first, second = symbols_of(fake, "bars", ticker)[:2]
    assert second.at - first.at >= 1.0
    assert second.query == first.query  # the same page again


def test_retry_after_beyond_the_time_budget_fails_at_once(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    fake.fail_next(Fault("status", 429, headers={"Retry-After": "30"}))
    began = time.monotonic()
    fetched = client(fake, retry_max_elapsed_s=2.0).bars([ticker], START, END)

    assert time.monotonic() - began < 1.5
    assert "HTTP 429" in fetched.failures[ticker]
    assert "requests-per-minute" in fetched.failures[ticker]  # the rate-limit hint


def test_500_twice_then_success(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    fake.fail_next(Fault("status", 500), Fault("status", 500))
    fetched = client(fake).quotes([ticker], START, END)

    assert fetched.failures == {}
    assert fetched.frame.equals(fake.expected("quotes", [ticker], START, END))
    sent = symbols_of(fake, "quotes", ticker)
    assert sent[0].query == sent[1].query == sent[2].query  # page 1, three times
    assert len(sent) == math.ceil(len(fake.expected("quotes", [ticker], START, END)) / PAGE) + 2


def test_reset_truncated_and_503_mid_pagination_are_retried(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    fake.fail_after(1, Fault("reset"), Fault("truncated"), Fault("status", 503))
    fetched = client(fake).trades([ticker], START, END)

    assert fetched.failures == {}
    expected = fake.expected("trades", [ticker], START, END)
    assert fetched.frame.equals(expected)
    sent = symbols_of(fake, "trades", ticker)
    assert len(sent) == math.ceil(len(expected) / PAGE) + 3
    # page 2 was asked for four times (reset, truncated, 503, answered), then page 3
    assert "page_token" not in sent[0].query
    assert sent[1].query == sent[2].query == sent[3].query == sent[4].query
    assert sent[5].query["page_token"] != sent[4].query["page_token"]


def test_slow_response_past_the_timeout_is_retried(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    fake.fail_next(Fault("slow", delay_s=3.0))
    began = time.monotonic()
    fetched = client(fake, timeout_s=0.3).bars([ticker], START, END)

    assert fetched.failures == {}
    assert fetched.frame.equals(fake.expected("bars", [ticker], START, END))
    first, second = symbols_of(fake, "bars", ticker)[:2]
    assert second.query == first.query
    assert 0.3 <= second.at - first.at < 2.5  # the client gave up on the slow answer
    assert time.monotonic() - began < 2.5


def test_a_ticker_that_keeps_failing_is_named_while_others_succeed(fake: FakeAlpaca) -> None:
    bad, *good = fake.tickers
    fake.broken[bad] = 500
    fetched = client(fake, retry_max_attempts=3).bars(fake.tickers, START, END)

    assert list(fetched.failures) == [bad]
    message = fetched.failures[bad]
    assert message.startswith(f"Alpaca /v2/stocks/bars for {bad}: ")
    assert "HTTP 500" in message and "gave up after 3 tries" in message
    assert len(symbols_of(fake, "bars", bad)) == 3
    expected = fake.expected("bars", good, START, END)
    assert fetched.frame.sort("ticker", "ts").equals(expected.sort("ticker", "ts"))


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrong", ["key", "secret"])
def test_401_names_the_fix_and_never_the_credentials(fake: FakeAlpaca, wrong: str) -> None:
    creds = {"api_key": "PKWRONGKEY999", "api_secret": SECRET}
    if wrong == "secret":
        creds = {"api_key": KEY_ID, "api_secret": "wrong/secret+value"}
    md = client(fake, **creds)
    fetched = md.trades(fake.tickers[:2], START, END)

    assert set(fetched.failures) == set(fake.tickers[:2])
    for message in fetched.failures.values():
        assert "HTTP 401" in message and "forbidden" in message
        assert "ALPACA_API_KEY" in message and "ALPACA_API_SECRET" in message
        assert creds["api_key"] not in message and creds["api_secret"] not in message
    assert len(fake.requests()) == 2  # a 401 is not retried
    assert creds["api_key"] not in repr(md) and creds["api_secret"] not in str(md)


def test_403_for_sip_without_a_plan_says_to_use_iex(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    fetched = client(fake, feed="sip").bars([ticker], START, END)

    message = fetched.failures[ticker]
    assert "HTTP 403" in message and "subscription does not permit" in message
    assert "feed=sip requires a paid" in message and "set feed=iex" in message
    assert_secret_free(message)


def test_credentials_echoed_by_the_server_are_redacted(fake: FakeAlpaca) -> None:
    ticker = fake.tickers[0]
    body = {"message": f"bad auth headers {KEY_ID}:{SECRET}"}
    fake.fail_next(Fault("status", 403, body=body))
    message = client(fake).bars([ticker], START, END).failures[ticker]
    assert "bad auth headers ***:***" in message
    assert_secret_free(message)


@pytest.mark.parametrize("fault", [Fault("reset"), Fault("status", 401), Fault("slow", delay_s=1)])
def test_errors_carry_no_chained_exception(fake: FakeAlpaca, fault: Fault) -> None:
    """A chained requests exception would hold the prepared request and its key headers."""
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    fake.fail_next(fault)
    stock = _StockClient(
        api_key=KEY_ID,
        secret_key=SECRET,
        base_url=fake.url,
        endpoint="/v2/stocks/bars",
        ticker="X",
        timeout_s=0.3,
        retry=RetryPolicy(max_attempts=1),
        limiter=RateLimiter(60_000),
        rng=random.Random(0),
        hints={},
    )
    with stock, pytest.raises(VendorError) as raised:
        stock.get_stock_bars(
            StockBarsRequest(symbol_or_symbols="X", timeframe=TimeFrame.Minute, start=START)
        )
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert raised.value.vendor == "Alpaca" and raised.value.ticker == "X"
    assert_secret_free(str(raised.value))


# -- where it goes ------------------------------------------------------------------------------
def test_requests_go_to_the_configured_base_url(fake: FakeAlpaca, blocked_hosts) -> None:  # noqa: F811
    ticker = fake.tickers[0]
    # a trailing slash or /v2 on the base URL still reaches the fake
    fetched = client(fake, base_url=fake.url + "/v2/").bars([ticker], START, END)
    assert fetched.failures == {} and len(fetched.frame) == 60
    sent = fake.requests("bars")
    assert sent and all(r.path == "/v2/stocks/bars" for r in sent)
    assert sent[0].headers["APCA-API-KEY-ID"] == KEY_ID  # what alpaca-py authenticates with
    assert blocked_hosts == []

    # the default is Alpaca itself: the guard refuses it, so nothing here can reach it
    assert AlpacaMarketData(api_key="k", api_secret="s").base_url == DEFAULT_BASE_URL
    real = client(fake, base_url=DEFAULT_BASE_URL, retry_max_attempts=1)
    failed = real.bars([ticker], START, END)
    assert "connection failed" in failed.failures[ticker]
    assert blocked_hosts == ["data.alpaca.markets"]


def test_credentials_from_env_vars_through_dagster(
    fake: FakeAlpaca, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", KEY_ID)
    monkeypatch.setenv("ALPACA_API_SECRET", SECRET)
    resource = client(
        fake, api_key=dg.EnvVar("ALPACA_API_KEY"), api_secret=dg.EnvVar("ALPACA_API_SECRET")
    )
    with dg.build_resources({"market_data": resource}) as resources:
        md = resources.market_data
        fetched = md.bars(fake.tickers[:1], START, END)
        assert fetched.failures == {} and len(fetched.frame) == 60
        assert_secret_free(repr(md))
