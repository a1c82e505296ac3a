"""UnusualWhalesOptionsFlow against a fake Unusual Whales on 127.0.0.1 (never the real vendor)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_resources.market_data import OptionsFlowData
from ats_resources.vendors.unusual_whales import (
    FLOW_ALERTS,
    FLOW_SCHEMA,
    UnusualWhalesOptionsFlow,
    _alert,
)
from tests.fakes.unusual_whales import UnusualWhalesFake, install_unusual_whales, iso
from tests.fakes.vendor_server import FakeVendorServer, Fault

DAY = date(2024, 3, 5)
TICKERS = ["AIJO", "GHOZ", "HMTA", "IJUX", "LPST"]


@pytest.fixture(scope="module")
def window():
    """Five sessions, so that each ticker has a few pages' worth of alerts."""
    calendar = nyse_calendar()
    days = calendar.sessions_between(DAY, DAY + timedelta(days=6))[:5]
    return calendar.session(days[0]).open, calendar.session(days[-1]).close


@pytest.fixture
def server():
    with FakeVendorServer() as srv:
        yield srv


@pytest.fixture
def fake(server) -> UnusualWhalesFake:
    return install_unusual_whales(server)


def client(fake: UnusualWhalesFake, **overrides) -> UnusualWhalesOptionsFlow:
    config = dict(
        api_key=fake.api_key,
        base_url=fake.server.url,
        requests_per_minute=60_000,
        timeout_s=2.0,
        max_attempts=3,
        retry_base_delay_s=0.01,
        retry_max_delay_s=0.05,
    )
    return UnusualWhalesOptionsFlow(**{**config, **overrides})


def assert_matches(frame: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert frame.schema == pl.Schema(FLOW_SCHEMA)
    assert frame["event_id"].is_duplicated().sum() == 0
    assert_frame_equal(frame.sort("ticker", "ts", "event_id"), expected)


# -- mapping ---------------------------------------------------------------------------------------
def wire(**fields) -> dict:
    base = {
        "id": "3da34725-d91e-4ad6-bb32-e259bdc8652d",
        "ticker": "MSFT",
        "created_at": "2023-12-12T16:35:52.168490Z",
        "type": "call",
        "strike": "375",
        "expiry": "2023-12-22",
        "price": "4.05",
        "underlying_price": "372.99",
        "total_premium": "186705",
        "total_ask_side_prem": "151875",
        "total_bid_side_prem": "405",
        "total_size": 461,
        "has_sweep": True,
        "has_floor": False,
        "option_chain": "MSFT231222C00375000",
    }
    return {**base, **fields}


def test_the_documented_example_alert_maps_to_an_options_flow_row():
    assert _alert(wire()) == {
        "event_id": "3da34725-d91e-4ad6-bb32-e259bdc8652d",
        "ticker": "MSFT",
        "ts": datetime(2023, 12, 12, 16, 35, 52, 168490, tzinfo=UTC),
        "option_type": "call",
        "strike": 375.0,
        "expiry": date(2023, 12, 22),
        "price": 4.05,
        "size": 461,
        "premium": 186705.0,
        "underlying_price": 372.99,
        "execution": "sweep",
        "side": "ask",
        "sentiment": "bullish",
    }


@pytest.mark.parametrize(
    ("option_type", "ask", "bid", "side", "sentiment"),
    [
        ("call", "900", "100", "ask", "bullish"),  # calls bought
        ("put", "100", "900", "bid", "bullish"),  # puts sold
        ("call", "100", "900", "bid", "bearish"),  # calls sold
        ("put", "900", "100", "ask", "bearish"),  # puts bought
        ("put", "0", "0", "mid", None),  # no side dominates: no direction invented
    ],
)
def test_side_and_sentiment_follow_the_dominant_premium(option_type, ask, bid, side, sentiment):
    row = _alert(wire(type=option_type, total_ask_side_prem=ask, total_bid_side_prem=bid))
    assert (row["side"], row["sentiment"]) == (side, sentiment)


@pytest.mark.parametrize(
    ("sweep", "floor", "execution"),
    [
        (True, False, "sweep"),
        (True, True, "sweep"),
        (False, True, "block"),
        (False, False, "single"),
    ],
)
def test_execution_comes_from_the_sweep_and_floor_flags(sweep, floor, execution):
    assert _alert(wire(has_sweep=sweep, has_floor=floor))["execution"] == execution


def test_an_alert_without_an_id_gets_one_from_its_contract_and_time():
    row = _alert({k: v for k, v in wire().items() if k != "id"})
    assert row["event_id"] == "MSFT231222C00375000@2023-12-12T16:35:52.168490Z"


# -- against the fake ------------------------------------------------------------------------------
@pytest.mark.integration
def test_flow_for_the_universe_matches_the_simulated_alerts(fake, window):
    resource = client(fake)
    assert isinstance(resource, OptionsFlowData)
    fetched = resource.options_flow(TICKERS, *window)
    assert fetched.failures == {}
    assert fetched.frame.height > 20
    assert_matches(fetched.frame, fake.expected(TICKERS, *window))
    assert set(fetched.frame["execution"]) == {"sweep", "block", "single"}
    assert set(fetched.frame["sentiment"]) == {"bullish", "bearish"}


@pytest.mark.integration
def test_requests_carry_the_bearer_key_and_the_documented_filters(fake, window):
    start, end = window
    client(fake, page_limit=150).options_flow(["GHOZ"], start, end)
    (request,) = fake.server.requests_to(FLOW_ALERTS)
    assert request.headers.get("Authorization") == f"Bearer {fake.api_key}"
    assert request.headers.get("UW-CLIENT-API-ID") == "100001"
    assert request.query == {
        "ticker_symbol": "GHOZ",
        "newer_than": str(int(start.timestamp() * 1000)),
        "older_than": str(int(end.timestamp() * 1000)),
        "limit": "150",
    }


@pytest.mark.integration
def test_pages_are_walked_back_in_time_until_a_short_page(fake, window):
    fetched = client(fake, page_limit=4).options_flow(["AIJO", "LPST"], *window)
    expected = fake.expected(["AIJO", "LPST"], *window)
    assert_matches(fetched.frame, expected)
    for ticker in ("AIJO", "LPST"):
        requests = [
            r for r in fake.server.requests_to(FLOW_ALERTS) if r.query["ticker_symbol"] == ticker
        ]
        alerts = expected.filter(pl.col("ticker") == ticker).height
        assert len(requests) >= alerts // 4 >= 3
        bounds = [int(r.query["older_than"]) for r in requests]
        assert bounds == sorted(bounds, reverse=True)  # each page asks for older alerts


@pytest.mark.integration
def test_alerts_sharing_a_timestamp_across_a_page_boundary_are_all_kept(server, window):
    def crowd(ticker, alerts):
        """Two more alerts at the instant of the window's third-newest one: the first page ends
        with one of the three, the other two are on the next page."""
        out = []
        for alert in alerts:
            out.append(alert)
            if alert["id"] == target:
                out += [{**alert, "id": f"{target}-twin{k}"} for k in range(2)]
        return out

    fake = install_unusual_whales(server, source=crowd)
    target = fake.expected(["HMTA"], *window).sort("ts", descending=True)["event_id"][2]
    fetched = client(fake, page_limit=3).options_flow(["HMTA"], *window)
    assert fetched.failures == {}
    twins = fetched.frame.filter(pl.col("event_id").str.contains("twin"))
    assert twins.height == 2
    assert fetched.frame["event_id"].is_duplicated().sum() == 0
    assert fetched.frame.height == fake.expected(["HMTA"], *window).height + 2


@pytest.mark.integration
def test_the_page_cap_is_an_error_not_a_silent_truncation(fake, window):
    fetched = client(fake, page_limit=1, max_pages=2).options_flow(["AIJO", "GHOZ"], *window)
    assert set(fetched.failures) == {"AIJO", "GHOZ"}
    assert "more than 2 pages" in fetched.failures["AIJO"]
    assert "max_pages" in fetched.failures["AIJO"]


@pytest.mark.integration
def test_429_is_retried_after_retry_after(fake, window):
    fake.server.fail_next(Fault("status", 429, headers={"Retry-After": "7"}))
    resource = client(fake, max_elapsed_s=60)
    slept: list[float] = []
    with resource.http_client(sleep=slept.append) as http:
        fetched = resource.fetch_options_flow(["IJUX"], *window, http=http)
    assert fetched.failures == {}
    assert_matches(fetched.frame, fake.expected(["IJUX"], *window))
    assert 7.0 in slept
    assert resource.last_stats.retry_after_waits == [7.0]


@pytest.mark.integration
def test_a_real_short_retry_after_is_waited_for(fake, window):
    fake.server.fail_next(Fault("status", 429, headers={"Retry-After": "0.3"}))
    fetched = client(fake).options_flow(["IJUX"], *window)
    first, second = fake.server.requests_to(FLOW_ALERTS)[:2]
    assert second.at - first.at >= 0.28
    assert fetched.failures == {}


@pytest.mark.integration
def test_a_wrong_key_is_a_401_whose_errors_never_show_the_key(fake, window):
    wrong = "uw_live_5b0e1d3c9a7f"
    fetched = client(fake, api_key=wrong).options_flow(["AIJO", "GHOZ"], *window)
    assert set(fetched.failures) == {"AIJO", "GHOZ"}
    for message in fetched.failures.values():
        assert "unusual_whales" in message and FLOW_ALERTS in message
        assert "HTTP 401" in message and "API key" in message
        assert wrong not in message
    assert len(fake.server.requests) == 2


@pytest.mark.integration
def test_a_ticker_failing_for_good_is_reported_while_others_succeed(fake, window):
    fake.server.fail_next(*[Fault("status", 503)] * 3)
    fetched = client(fake, max_concurrency=1).options_flow(["AIJO", "GHOZ"], *window)
    assert set(fetched.failures) == {"AIJO"}
    message = fetched.failures["AIJO"]
    assert "HTTP 503" in message and "AIJO" in message and "retries" in message
    assert fetched.frame["ticker"].unique().to_list() == ["GHOZ"]


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["truncated", "reset"])
def test_truncated_json_and_resets_are_retried(fake, window, kind):
    fake.server.fail_next(Fault(kind))
    resource = client(fake)
    fetched = resource.options_flow(["LPST"], *window)
    assert_matches(fetched.frame, fake.expected(["LPST"], *window))
    assert resource.last_stats.retries == 1


@pytest.mark.integration
def test_a_slow_response_is_retried(fake, window):
    fake.server.fail_next(Fault("slow", delay_s=0.5))
    resource = client(fake, timeout_s=0.2)
    fetched = resource.options_flow(["LPST"], *window)
    assert fetched.failures == {} and resource.last_stats.retries == 1


@pytest.mark.integration
@pytest.mark.parametrize(
    ("field", "value"), [("total_premium", None), ("strike", "n/a"), ("type", "straddle")]
)
def test_a_malformed_alert_names_the_endpoint_ticker_and_field(server, window, field, value):
    def spoil(ticker, page, alerts):
        if ticker == "GHOZ" and alerts:
            if value is None:
                alerts[0].pop(field)
            else:
                alerts[0][field] = value
        return alerts

    fake = install_unusual_whales(server, patch=spoil)
    fetched = client(fake).options_flow(["AIJO", "GHOZ"], *window)
    assert set(fetched.failures) == {"GHOZ"}
    message = fetched.failures["GHOZ"]
    assert FLOW_ALERTS in message and repr(field) in message and "malformed" in message
    assert fetched.frame["ticker"].unique().to_list() == ["AIJO"]


@pytest.mark.integration
def test_no_alerts_is_an_empty_frame_with_the_schema(fake, window):
    start = window[0]
    fetched = client(fake).options_flow(["AIJO"], start, start + timedelta(seconds=1))
    assert fetched.failures == {}
    assert fetched.frame.height == 0 and fetched.frame.schema == pl.Schema(FLOW_SCHEMA)


@pytest.mark.integration
def test_only_the_window_is_kept_even_if_the_vendor_sends_more(server, window):
    start, end = window
    outside = iso(end + timedelta(hours=1))

    def leak(ticker, page, alerts):
        return [{**alerts[0], "id": "late", "created_at": outside}, *alerts] if alerts else alerts

    fake = install_unusual_whales(server, patch=leak)
    fetched = client(fake).options_flow(["AIJO"], start, end)
    assert "late" not in fetched.frame["event_id"].to_list()
    assert_matches(fetched.frame, fake.expected(["AIJO"], start, end))
