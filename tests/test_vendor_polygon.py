"""PolygonMarketData against a fake Polygon on 127.0.0.1 (never the real vendor)."""

from __future__ import annotations

import itertools
import math
import time
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_resources.market_data import MarketData
from ats_resources.vendors.polygon import (
    BARS_SCHEMA,
    QUOTES_SCHEMA,
    TRADES_SCHEMA,
    PolygonMarketData,
)
from tests.fakes.polygon import EXTENDED_MINUTES, PolygonFake, install_polygon
from tests.fakes.vendor_server import FakeVendorServer, Fault

pytestmark = pytest.mark.integration

DAY = date(2024, 3, 5)
NEXT_DAY = date(2024, 3, 6)
TICKERS = ["AIJO", "GHOZ", "HMTA", "IJUX", "LPST"]  # the 5-ticker simulated universe
SCHEMAS = {"bars": BARS_SCHEMA, "quotes": QUOTES_SCHEMA, "trades": TRADES_SCHEMA}
PATHS = {"bars": "/v2/aggs", "quotes": "/v3/quotes", "trades": "/v3/trades"}


@pytest.fixture(scope="module")
def session():
    return nyse_calendar().session(DAY)


@pytest.fixture
def server():
    with FakeVendorServer() as srv:
        yield srv


@pytest.fixture
def fake(server) -> PolygonFake:
    return install_polygon(server)


def client(fake: PolygonFake, **overrides) -> PolygonMarketData:
    config = dict(
        api_key=fake.api_key,
        base_url=fake.server.url,
        tickers=TICKERS,
        requests_per_minute=60_000,
        timeout_s=2.0,
        max_attempts=3,
        retry_base_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    return PolygonMarketData(**{**config, **overrides})


def fetch(resource: PolygonMarketData, kind: str, tickers, start, end):
    return getattr(resource, kind)(tickers, start, end)


def assert_matches(frame: pl.DataFrame, expected: pl.DataFrame, kind: str) -> None:
    assert frame.schema == pl.Schema(SCHEMAS[kind])
    keys = ["ticker", "ts"] if kind != "trades" else ["ticker", "exchange", "trade_id"]
    assert frame.select(keys).is_duplicated().sum() == 0
    assert_frame_equal(frame.sort("ticker", "ts", maintain_order=True), expected)


# -- the acceptance test: real Retry-After waits ------------------------------------------------
def test_429_retry_after_is_waited_for_and_the_full_day_arrives(fake, session):
    fake.server.fail_next(
        Fault("status", 429, headers={"Retry-After": "1"}, path="/v2/aggs"),
        Fault("status", 429, headers={"Retry-After": "1"}, path="/v2/aggs"),
    )
    tickers = ["AIJO", "GHOZ"]
    resource = client(fake, max_attempts=4, max_concurrency=1)  # AIJO: 429, 429, then data

    began = time.monotonic()
    fetched = resource.bars(tickers, session.open, session.close)
    assert time.monotonic() - began >= 1.9

    assert fetched.failures == {}
    assert_matches(
        fetched.frame, fake.expected("bars", tickers, session.open, session.close), "bars"
    )
    assert fetched.frame.height == 2 * 390
    requests = fake.server.requests_to("/v2/aggs")
    assert [r.path.split("/")[4] for r in requests] == ["AIJO", "AIJO", "AIJO", "GHOZ"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests[:3])]
    assert all(gap >= 0.95 for gap in gaps), gaps  # really waited ~1 s after each 429
    assert resource.last_stats.retry_after_waits == [1.0, 1.0]
    assert resource.last_stats.retries == 2


# -- happy paths and pagination --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bars", "quotes", "trades"])
def test_a_day_of_the_whole_universe_matches_the_simulated_market(fake, session, kind):
    fetched = fetch(client(fake), kind, TICKERS, session.open, session.close)
    assert fetched.failures == {}
    assert_matches(fetched.frame, fake.expected(kind, TICKERS, session.open, session.close), kind)


def test_bars_are_cut_to_the_window(fake, session):
    """Polygon answers from the bar holding ``from`` and through ``to``: only [start, end) stays."""
    start, end = session.open + timedelta(seconds=30), session.close - timedelta(seconds=30)
    fetched = client(fake).bars(["AIJO"], start, end)
    assert fetched.frame.height == 389
    assert fetched.frame["ts"].min() == session.open + timedelta(minutes=1)
    assert fetched.frame["ts"].max() == session.close - timedelta(minutes=1)


def test_a_two_day_window_keeps_everything_inside_it(fake, session):
    """Between two sessions Polygon has extended-hours bars; inside [start, end) they stay."""
    second = nyse_calendar().session(NEXT_DAY)
    fetched = client(fake).bars(["GHOZ"], session.open, second.close)
    frame = fetched.frame
    assert frame.height == 2 * 390 + 2 * EXTENDED_MINUTES
    assert frame["ts"].min() == session.open and frame["ts"].max() < second.close
    assert frame["ts"].is_sorted() and frame["ts"].n_unique() == frame.height
    regular = frame.filter(
        pl.col("ts").is_between(session.open, session.close, closed="left")
        | pl.col("ts").is_between(second.open, second.close, closed="left")
    )
    expected = pl.concat(
        [
            fake.expected("bars", ["GHOZ"], session.open, session.close),
            fake.expected("bars", ["GHOZ"], second.open, second.close),
        ]
    )
    assert_matches(regular, expected, "bars")


@pytest.mark.parametrize("kind", ["bars", "quotes", "trades"])
def test_pagination_follows_next_url_across_all_pages(server, session, kind):
    fake = install_polygon(server, page_size=100)
    fetched = fetch(client(fake), kind, ["AIJO", "HMTA"], session.open, session.close)

    expected = fake.expected(kind, ["AIJO", "HMTA"], session.open, session.close)
    assert_matches(fetched.frame, expected, kind)  # none missing, none twice
    requests = server.requests_to(PATHS[kind])
    firsts = [r for r in requests if "cursor" not in r.query]
    follows = [r for r in requests if "cursor" in r.query]
    assert len(firsts) == 2 and len(follows) >= 2 * 3
    rows = expected.group_by("ticker").len()["len"].to_list()
    assert len(requests) == sum(math.ceil(n / 100) for n in rows)
    for request in requests:
        assert request.headers.get("Authorization") == f"Bearer {fake.api_key}"
        assert "apiKey" not in request.query  # the key never rides in a URL
    for request in follows:
        assert set(request.query) == {"cursor"}  # next_url's own query, nothing re-added


def test_the_results_cap_is_sent_and_respected(fake, session):
    fetched = client(fake, aggs_limit=100).bars(["IJUX"], session.open, session.close)
    assert_matches(
        fetched.frame, fake.expected("bars", ["IJUX"], session.open, session.close), "bars"
    )
    requests = fake.server.requests_to("/v2/aggs")
    first = requests[0]
    assert first.query["limit"] == "100"
    assert first.query["adjusted"] == "true" and first.query["sort"] == "asc"
    assert len(requests) == math.ceil(390 / 100)
    assert all(r.query == {"cursor": r.query["cursor"]} for r in requests[1:])


def test_aggregate_and_v3_requests_carry_the_documented_parameters(fake, session):
    resource = client(fake)
    resource.bars(["AIJO"], session.open, session.close)
    resource.quotes(["AIJO"], session.open, session.close)
    open_ns = int(session.open.timestamp()) * 10**9
    close_ns = int(session.close.timestamp()) * 10**9
    aggs = fake.server.requests_to("/v2/aggs")[0]
    assert aggs.path == (
        f"/v2/aggs/ticker/AIJO/range/1/minute/{open_ns // 10**6}/{close_ns // 10**6 - 1}"
    )
    quotes = fake.server.requests_to("/v3/quotes")[0].query
    assert quotes["timestamp.gte"] == str(open_ns) and quotes["timestamp.lt"] == str(close_ns)
    assert (quotes["sort"], quotes["order"], quotes["limit"]) == ("timestamp", "asc", "50000")


@pytest.mark.parametrize("kind", ["bars", "quotes", "trades"])
def test_no_results_is_an_empty_frame_with_the_schema(server, session, kind):
    fake = install_polygon(server, empty_tickers={"AIJO", "GHOZ"})
    fetched = fetch(client(fake), kind, ["AIJO", "GHOZ"], session.open, session.close)
    assert fetched.failures == {}
    assert fetched.frame.height == 0
    assert fetched.frame.schema == pl.Schema(SCHEMAS[kind])


def test_an_empty_page_with_a_next_url_is_followed(server, session):
    fake = install_polygon(server, leading_empty_page=True, page_size=200)
    fetched = client(fake).quotes(["LPST"], session.open, session.close)
    assert_matches(
        fetched.frame, fake.expected("quotes", ["LPST"], session.open, session.close), "quotes"
    )
    assert len(server.requests_to("/v3/quotes")) == 1 + 2  # the empty page, then 390 rows / 200


def test_rows_a_vendor_repeats_across_pages_are_kept_once(server, session):
    previous: list[dict] = []

    def patch(kind, ticker, page, rows):
        """Each page starts with the last three rows of the page before."""
        repeated = [*previous[-3:], *rows]
        previous[:] = rows
        return repeated

    fake = install_polygon(server, page_size=200, patch=patch)
    fetched = client(fake, max_concurrency=1).trades(["HMTA"], session.open, session.close)
    assert_matches(
        fetched.frame, fake.expected("trades", ["HMTA"], session.open, session.close), "trades"
    )


def test_bad_values_in_well_formed_rows_are_passed_on_for_validation(server, session):
    """A negative print is the validation rules' business, not the client's: it is not dropped."""

    def negative_price(kind, ticker, page, rows):
        if ticker == "AIJO" and page == 0:
            rows[5]["price"] = -1.0
        return rows

    fake = install_polygon(server, patch=negative_price)
    fetched = client(fake).trades(["AIJO"], session.open, session.close)
    assert fetched.frame.filter(pl.col("price") < 0).height == 1


# -- failures --------------------------------------------------------------------------------------
def test_a_ticker_failing_for_good_is_reported_while_others_succeed(fake, session):
    fake.server.fail_next(*[Fault("status", 500, path="/v2/aggs/ticker/GHOZ/")] * 3)
    fetched = client(fake, max_attempts=3).bars(
        ["AIJO", "GHOZ", "HMTA"], session.open, session.close
    )

    assert set(fetched.failures) == {"GHOZ"}
    message = fetched.failures["GHOZ"]
    for words in ("polygon", "/v2/aggs", "GHOZ", "HTTP 500", "retries"):
        assert words in message, message
    assert sorted(fetched.frame["ticker"].unique()) == ["AIJO", "HMTA"]
    assert len(fake.server.requests_to("/v2/aggs/ticker/GHOZ/")) == 3


def test_a_plan_without_the_data_is_a_403_with_a_hint_and_no_retry(server, session):
    fake = install_polygon(server, denied_tickers={"GHOZ"})
    fetched = client(fake).quotes(["AIJO", "GHOZ"], session.open, session.close)
    message = fetched.failures["GHOZ"]
    assert "HTTP 403" in message and "/v3/quotes" in message and "entitle" in message
    assert "NOT_AUTHORIZED" in message  # Polygon's own status is kept for the user
    assert len(server.requests_to("/v3/quotes/GHOZ")) == 1
    assert fetched.frame["ticker"].unique().to_list() == ["AIJO"]


def test_an_error_status_in_a_200_body_is_an_error_with_a_hint(fake, session):
    fake.server.fail_next(
        Fault("status", 200, body={"status": "ERROR", "error": "Internal failure"}, path="/v3/")
    )
    fetched = client(fake, max_concurrency=1).trades(["AIJO", "GHOZ"], session.open, session.close)
    assert set(fetched.failures) == {"AIJO"}
    assert "status ERROR: Internal failure" in fetched.failures["AIJO"]
    assert "POLYGON_API_KEY" in fetched.failures["AIJO"]


def test_a_wrong_key_is_a_401_whose_errors_never_show_the_key(server, session):
    fake = install_polygon(server, echo_key_in_errors=True)
    wrong = "pk_live_7f3a9c0d1e2b4a6f8e0c"
    resource = client(fake, api_key=wrong)
    for kind in ("bars", "quotes", "trades"):
        fetched = fetch(resource, kind, ["AIJO", "GHOZ"], session.open, session.close)
        assert set(fetched.failures) == {"AIJO", "GHOZ"}
        for message in fetched.failures.values():
            assert "HTTP 401" in message and "API key" in message
            assert wrong not in message
    assert len(server.requests) == 6  # 401 is not retried
    assert all(wrong not in str(r.query) for r in server.requests)


def test_a_slow_response_is_retried_then_succeeds(fake, session):
    fake.server.fail_next(Fault("slow", delay_s=0.6, path="/v2/aggs"))
    resource = client(fake, timeout_s=0.2)
    fetched = resource.bars(["AIJO"], session.open, session.close)
    assert fetched.failures == {}
    assert_matches(
        fetched.frame, fake.expected("bars", ["AIJO"], session.open, session.close), "bars"
    )
    assert resource.last_stats.retries == 1


def test_timeouts_on_every_attempt_fail_with_a_timeout_message(fake, session):
    fake.server.fail_next(*[Fault("slow", delay_s=0.5, path="/v3/trades/AIJO")] * 2)
    fetched = client(fake, timeout_s=0.15, max_attempts=2).trades(
        ["AIJO", "GHOZ"], session.open, session.close
    )
    assert set(fetched.failures) == {"AIJO"}
    assert "timed out" in fetched.failures["AIJO"] and "timeout_s" in fetched.failures["AIJO"]


@pytest.mark.parametrize("kind", ["truncated", "reset"])
def test_truncated_json_and_resets_are_retried(fake, session, kind):
    fake.server.fail_next(Fault(kind, path="/v3/quotes"))
    resource = client(fake)
    fetched = resource.quotes(["IJUX"], session.open, session.close)
    assert_matches(
        fetched.frame, fake.expected("quotes", ["IJUX"], session.open, session.close), "quotes"
    )
    assert resource.last_stats.retries == 1


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [("bars", "c", None), ("quotes", "bid_price", None), ("trades", "price", "abc")],
)
def test_a_malformed_page_names_the_endpoint_and_ticker(server, session, kind, field, value):
    def spoil(k, ticker, page, rows):
        if ticker == "GHOZ" and page == 1:
            if value is None:
                rows[3].pop(field)
            else:
                rows[3][field] = value
        return rows

    fake = install_polygon(server, page_size=150, patch=spoil)
    fetched = fetch(client(fake), kind, ["AIJO", "GHOZ"], session.open, session.close)
    assert set(fetched.failures) == {"GHOZ"}
    message = fetched.failures["GHOZ"]
    assert PATHS[kind] in message and "GHOZ" in message and repr(field) in message
    assert "malformed" in message and "request_id" in message
    assert fetched.frame["ticker"].unique().to_list() == ["AIJO"]


# -- resource plumbing -----------------------------------------------------------------------------
def test_universe_lists_the_configured_tickers_with_sectors(fake):
    resource = client(fake, tickers=["AIJO", "GHOZ", "AIJO"], sectors={"AIJO": "Industrials"})
    assert isinstance(resource, MarketData)
    assert resource.universe().to_dicts() == [
        {"ticker": "AIJO", "sector": "Industrials"},
        {"ticker": "GHOZ", "sector": "unknown"},
    ]
    with pytest.raises(ValueError, match="tickers"):
        client(fake, tickers=[]).universe()


def test_an_injected_session_records_waits_instead_of_sleeping(fake, session):
    fake.server.fail_next(Fault("status", 429, headers={"Retry-After": "30"}, path="/v2/aggs"))
    resource = client(fake, max_elapsed_s=60)
    slept: list[float] = []
    with resource.http_client(sleep=slept.append) as http:
        fetched = resource.fetch_bars(["AIJO"], session.open, session.close, http=http)
    assert fetched.frame.height == 390
    assert 30.0 in slept
    assert resource.last_stats is http.stats


def test_the_resource_runs_in_dagster_with_the_key_from_the_environment(fake, session, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", fake.api_key)

    @dg.asset
    def day_bars(polygon: PolygonMarketData) -> int:
        fetched = polygon.bars(polygon.universe()["ticker"].to_list(), session.open, session.close)
        assert fetched.failures == {}
        return fetched.frame.height

    resource = PolygonMarketData(
        api_key=dg.EnvVar("POLYGON_API_KEY"),
        base_url=fake.server.url,
        tickers=["AIJO", "LPST"],
        requests_per_minute=60_000,
    )
    result = dg.materialize([day_bars], resources={"polygon": resource})
    assert result.success and result.output_for_node("day_bars") == 2 * 390
