"""Row-level validity rules of the market-data specs, checked one bad row at a time."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.core.validation import evaluate
from ats_assets.market_data.specs import (
    MARKET_DATA_SPECS,
    OPTIONS_FLOW,
    RAW_BARS,
    RAW_QUOTES,
    MarketDataSpec,
    conform,
)

DAY = date(2024, 3, 5)
SESSION = nyse_calendar().session(DAY)
OPEN, CLOSE = SESSION.open, SESSION.close
MINUTE = timedelta(minutes=1)
BOUNDS = nyse_calendar().bounds_frame([DAY])


def _bar(ticker: str, ts, **changes: Any) -> dict[str, Any]:
    row = {
        "ticker": ticker,
        "ts": ts,
        "open": 10.0,
        "high": 10.5,
        "low": 9.5,
        "close": 10.2,
        "volume": 1_000,
        "vwap": 10.1,
        "trade_count": 12,
    }
    return row | changes


def _quote(ticker: str, ts, **changes: Any) -> dict[str, Any]:
    row = {
        "ticker": ticker,
        "ts": ts,
        "bid": 10.00,
        "ask": 10.02,
        "bid_size": 300,
        "ask_size": 200,
    }
    return row | changes


def _alert(event_id: str, ticker: str, ts, **changes: Any) -> dict[str, Any]:
    row = {
        "event_id": event_id,
        "ticker": ticker,
        "ts": ts,
        "option_type": "call",
        "strike": 11.0,
        "expiry": DAY + timedelta(days=3),
        "price": 0.45,
        "size": 20,
        "premium": 900.0,
        "underlying_price": 10.1,
        "execution": "sweep",
        "side": "ask",
        "sentiment": "bullish",
    }
    return row | changes


def _clean_rows(spec: MarketDataSpec) -> list[dict[str, Any]]:
    """Three valid rows; the middle one (index 1) is the one the cases spoil."""
    if spec is RAW_BARS:
        return [_bar("AAA", OPEN), _bar("AAA", OPEN + MINUTE), _bar("BBB", OPEN)]
    if spec is RAW_QUOTES:
        return [
            _quote("AAA", OPEN + timedelta(seconds=5)),
            _quote("AAA", OPEN + timedelta(seconds=65)),
            _quote("BBB", OPEN + timedelta(seconds=5)),
        ]
    return [
        _alert("e-AAA-0", "AAA", OPEN + timedelta(seconds=30)),
        _alert("e-AAA-1", "AAA", OPEN + timedelta(minutes=90)),
        _alert("e-BBB-0", "BBB", OPEN + timedelta(seconds=30)),
    ]


def _frame(spec: MarketDataSpec, **changes: Any) -> pl.DataFrame:
    """A conformed frame of the spec's clean rows with ``changes`` applied to row 1."""
    rows = _clean_rows(spec)
    rows[1] = rows[1] | changes
    return conform(pl.DataFrame(rows, strict=False), spec, DAY)


def _failed(outcomes) -> dict[str, int]:
    return {o.rule.name: o.failed_rows for o in outcomes if not o.passed}


# (spec, rule it must break, change to row 1); every case breaks exactly one rule in one row.
ONE_BAD_ROW = [
    (RAW_BARS, "positive_prices", {"vwap": 0.0}),
    (RAW_BARS, "positive_prices", {"vwap": -10.1}),
    (RAW_BARS, "positive_prices", {"low": 0.0}),
    (RAW_BARS, "ohlc_consistent", {"low": 10.1}),
    (RAW_BARS, "ohlc_consistent", {"high": 10.1}),
    (RAW_BARS, "ohlc_consistent", {"low": 10.6}),
    (RAW_BARS, "non_negative_volume_trade_count", {"volume": -1}),
    (RAW_BARS, "non_negative_volume_trade_count", {"trade_count": -3}),
    (RAW_BARS, "non_negative_volume_trade_count", {"volume": None}),
    (RAW_BARS, "inside_session", {"ts": CLOSE}),
    (RAW_BARS, "inside_session", {"ts": OPEN - MINUTE}),
    (RAW_QUOTES, "positive_prices", {"bid": 0.0}),
    (RAW_QUOTES, "positive_prices", {"bid": -1.0}),
    (RAW_QUOTES, "bid_not_above_ask", {"bid": 10.03}),
    (RAW_QUOTES, "non_negative_bid_size_ask_size", {"bid_size": -100}),
    (RAW_QUOTES, "non_negative_bid_size_ask_size", {"ask_size": -1}),
    (RAW_QUOTES, "inside_session", {"ts": CLOSE + timedelta(microseconds=1)}),
    (RAW_QUOTES, "inside_session", {"ts": OPEN - timedelta(microseconds=1)}),
    (OPTIONS_FLOW, "positive_values", {"strike": 0.0}),
    (OPTIONS_FLOW, "positive_values", {"price": -0.45}),
    (OPTIONS_FLOW, "positive_values", {"size": 0}),
    (OPTIONS_FLOW, "positive_values", {"premium": 0.0}),
    (OPTIONS_FLOW, "positive_values", {"underlying_price": -10.1}),
    (OPTIONS_FLOW, "inside_session", {"ts": CLOSE}),
    (OPTIONS_FLOW, "inside_session", {"ts": OPEN - timedelta(hours=1)}),
    (OPTIONS_FLOW, "expiry_not_before_session", {"expiry": DAY - timedelta(days=1)}),
]
# Duplicate keys: row 1 is given row 0's key, so both rows break the rule.
DUPLICATE_KEY = [
    (RAW_BARS, "unique_ticker_ts", {"ts": OPEN}),
    (RAW_QUOTES, "unique_ticker_ts", {"ts": OPEN + timedelta(seconds=5)}),
    (OPTIONS_FLOW, "unique_event_id", {"event_id": "e-AAA-0"}),
]


def _case_id(case) -> str:
    spec, rule, changes = case
    return f"{spec.name}-{rule}-" + "-".join(f"{k}={v}" for k, v in changes.items())


def test_the_cases_cover_every_rule_of_every_spec():
    covered = {(spec.name, rule) for spec, rule, _ in ONE_BAD_ROW + DUPLICATE_KEY}
    expected = {(spec.name, rule.name) for spec in MARKET_DATA_SPECS for rule in spec.rules}
    assert covered == expected


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_a_clean_frame_passes_every_rule(spec):
    frame = _frame(spec)
    outcomes = evaluate(frame, spec.rules, bounds=BOUNDS)
    assert [o.rule.name for o in outcomes] == [r.name for r in spec.rules]
    assert all(o.passed for o in outcomes)
    assert all(o.total_rows == 3 and o.sample.is_empty() for o in outcomes)


@pytest.mark.parametrize("case", ONE_BAD_ROW, ids=_case_id)
def test_one_bad_row_fails_exactly_its_rule_and_is_sampled(case):
    spec, rule, changes = case
    frame = _frame(spec, **changes)
    outcomes = {o.rule.name: o for o in evaluate(frame, spec.rules, bounds=BOUNDS)}
    assert _failed(outcomes.values()) == {rule: 1}
    assert_frame_equal(outcomes[rule].sample, frame[1:2])


@pytest.mark.parametrize("case", DUPLICATE_KEY, ids=_case_id)
def test_a_duplicated_key_flags_both_rows(case):
    spec, rule, changes = case
    frame = _frame(spec, **changes)
    outcomes = {o.rule.name: o for o in evaluate(frame, spec.rules, bounds=BOUNDS)}
    assert _failed(outcomes.values()) == {rule: 2}
    assert_frame_equal(outcomes[rule].sample, frame[0:2])


PRICE_COLUMNS = [
    (RAW_BARS, "positive_prices", col) for col in ("open", "high", "low", "close", "vwap")
] + [(RAW_QUOTES, "positive_prices", col) for col in ("bid", "ask")]


@pytest.mark.parametrize("bad", [float("nan"), None], ids=["nan", "null"])
@pytest.mark.parametrize(
    ("spec", "rule", "column"), PRICE_COLUMNS, ids=lambda x: getattr(x, "name", x)
)
def test_nan_and_null_prices_are_violations(spec, rule, column, bad):
    frame = _frame(spec, **{column: bad})
    outcomes = {o.rule.name: o for o in evaluate(frame, spec.rules, bounds=BOUNDS)}
    assert outcomes[rule].failed_rows == 1
    assert outcomes[rule].sample.select("ticker", "ts").rows() == [frame.row(1)[1:3]]
    # Whatever else the bad value trips, it is only ever this one row.
    assert all(n == 1 for n in _failed(outcomes.values()).values())


OPTION_VALUES = [
    (column, bad)
    for column in ("strike", "price", "premium", "underlying_price")
    for bad in (float("nan"), None)
] + [("size", None)]  # size is an integer column: it cannot hold NaN


@pytest.mark.parametrize(("column", "bad"), OPTION_VALUES, ids=lambda x: str(x))
def test_nan_and_null_option_values_are_violations(column, bad):
    frame = _frame(OPTIONS_FLOW, **{column: bad})
    outcomes = evaluate(frame, OPTIONS_FLOW.rules, bounds=BOUNDS)
    assert _failed(outcomes) == {"positive_values": 1}


def test_a_null_expiry_is_a_violation():
    frame = _frame(OPTIONS_FLOW, expiry=None)
    assert _failed(evaluate(frame, OPTIONS_FLOW.rules, bounds=BOUNDS)) == {
        "expiry_not_before_session": 1
    }


def test_expiry_on_the_session_day_is_valid():
    frame = _frame(OPTIONS_FLOW, expiry=DAY)
    assert _failed(evaluate(frame, OPTIONS_FLOW.rules, bounds=BOUNDS)) == {}


def test_a_locked_quote_is_valid():
    frame = _frame(RAW_QUOTES, bid=10.02, ask=10.02)
    assert _failed(evaluate(frame, RAW_QUOTES.rules, bounds=BOUNDS)) == {}


def test_the_session_open_instant_is_inside_and_the_close_instant_is_outside():
    frame = conform(
        pl.DataFrame([_bar("AAA", OPEN), _bar("BBB", CLOSE - MINUTE), _bar("CCC", CLOSE)]),
        RAW_BARS,
        DAY,
    )
    outcomes = {o.rule.name: o for o in evaluate(frame, RAW_BARS.rules, bounds=BOUNDS)}
    assert _failed(outcomes.values()) == {"inside_session": 1}
    assert outcomes["inside_session"].sample["ticker"].to_list() == ["CCC"]


def test_a_row_whose_session_has_no_bounds_fails_inside_session():
    frame = _frame(RAW_BARS)
    other_day = nyse_calendar().bounds_frame([date(2024, 3, 6)])
    assert _failed(evaluate(frame, RAW_BARS.rules, bounds=other_day)) == {"inside_session": 3}


def test_an_early_close_session_ends_at_its_early_close():
    day = date(2024, 11, 29)
    close = nyse_calendar().session(day).close
    frame = conform(pl.DataFrame([_bar("AAA", close - MINUTE), _bar("AAA", close)]), RAW_BARS, day)
    outcomes = evaluate(frame, RAW_BARS.rules, bounds=nyse_calendar().bounds_frame([day]))
    assert _failed(outcomes) == {"inside_session": 1}


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_an_empty_frame_passes_every_rule(spec):
    frame = conform(pl.DataFrame(), spec, DAY)
    assert frame.columns == ["session", *spec.schema]
    outcomes = evaluate(frame, spec.rules, bounds=BOUNDS)
    assert all(o.passed and o.total_rows == 0 and o.sample.is_empty() for o in outcomes)


def test_conform_names_a_missing_column():
    rows = [{k: v for k, v in _bar("AAA", OPEN).items() if k != "vwap"}]
    with pytest.raises(ValueError, match="vwap"):
        conform(pl.DataFrame(rows), RAW_BARS, DAY)


def test_conform_puts_session_first_with_the_spec_types():
    frame = _frame(RAW_BARS)
    assert frame.schema == pl.Schema({"session": pl.Date, **RAW_BARS.schema})
    assert frame["session"].to_list() == [DAY] * 3


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_ohlc_rule_on_its_own_flags_nan_and_null(column: str):
    from math import nan

    from ats_assets.core.validation import OHLC_CONSISTENT

    frame = pl.DataFrame(
        {"open": [10.0, 10.0], "high": [10.5, 10.5], "low": [9.5, 9.5], "close": [10.2, 10.2]}
    ).with_columns(pl.Series(column, [nan, None], dtype=pl.Float64))
    assert evaluate(frame, [OHLC_CONSISTENT])[0].failed_rows == 2


def test_crossed_quote_rule_on_its_own_flags_a_nan_ask():
    from math import nan

    from ats_assets.core.validation import BID_NOT_ABOVE_ASK

    frame = pl.DataFrame({"bid": [10.0, 10.0], "ask": [nan, 10.01]})
    assert evaluate(frame, [BID_NOT_ABOVE_ASK])[0].failed_rows == 1
