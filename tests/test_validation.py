"""The validation rules catalogue, exercised through the market-data specs one bad row at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.core.validation import STALE_RUN_BARS, Validated, evaluate, validate
from ats_assets.market_data.specs import (
    MARKET_DATA_SPECS,
    OPTIONS_FLOW,
    RAW_BARS,
    RAW_QUOTES,
    RAW_TRADES,
    MarketDataSpec,
    conform,
)
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig

DAY = date(2024, 3, 5)
SESSION = nyse_calendar().session(DAY)
OPEN, CLOSE = SESSION.open, SESSION.close
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
BOUNDS = nyse_calendar().bounds_frame([DAY])
UNIVERSE = ("AAA", "BBB")
NAN = float("nan")


# -- row builders ---------------------------------------------------------------------------------
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
    row = {"ticker": ticker, "ts": ts, "bid": 10.00, "ask": 10.02, "bid_size": 300, "ask_size": 200}
    return row | changes


def _trade(ticker: str, ts, trade_id: str, **changes: Any) -> dict[str, Any]:
    row = {
        "ticker": ticker,
        "ts": ts,
        "trade_id": trade_id,
        "price": 10.2,
        "size": 100.0,
        "exchange": "N",
        "conditions": "",
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
    """Valid rows in arrival order: AAA's (in time order) first, then BBB's."""
    if spec is RAW_BARS:
        return [_bar("AAA", OPEN + 2 * i * MINUTE) for i in range(5)] + [
            _bar("BBB", OPEN + 2 * i * MINUTE) for i in range(3)
        ]
    if spec is RAW_QUOTES:
        return [_quote("AAA", OPEN + (5 + 60 * i) * SECOND) for i in range(5)] + [
            _quote("BBB", OPEN + (5 + 60 * i) * SECOND) for i in range(2)
        ]
    if spec is RAW_TRADES:
        return [_trade("AAA", OPEN + (5 + 60 * i) * SECOND, str(i)) for i in range(5)] + [
            _trade("BBB", OPEN + (5 + 60 * i) * SECOND, str(i)) for i in range(2)
        ]
    return [
        _alert("e-AAA-0", "AAA", OPEN + 30 * SECOND),
        _alert("e-AAA-1", "AAA", OPEN + 90 * MINUTE),
        _alert("e-BBB-0", "BBB", OPEN + 30 * SECOND),
    ]


def _spare_row(spec: MarketDataSpec) -> dict[str, Any]:
    """A further valid AAA row, later than every clean one (the cases spoil it)."""
    if spec is RAW_BARS:
        return _bar("AAA", OPEN + 10 * MINUTE)
    if spec is RAW_QUOTES:
        return _quote("AAA", OPEN + 305 * SECOND)
    if spec is RAW_TRADES:
        return _trade("AAA", OPEN + 305 * SECOND, "5")
    return _alert("e-AAA-2", "AAA", OPEN + 120 * MINUTE)


def _conformed(
    spec: MarketDataSpec, rows: list[dict[str, Any]], session: date = DAY
) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, strict=False), spec, session)


def _validate(
    spec: MarketDataSpec, frame: pl.DataFrame, bounds: pl.DataFrame = BOUNDS
) -> Validated:
    return validate(frame, spec.rules_for(UNIVERSE), bounds=bounds)


def _failed(validated: Validated) -> dict[str, int]:
    return {o.rule.name: o.failed_rows for o in validated.outcomes if not o.passed}


# -- one bad row per rule -------------------------------------------------------------------------
@dataclass(frozen=True)
class BadRow:
    """The spec's clean rows plus its spare row spoilt by ``changes``, arriving at index ``at``."""

    spec: MarketDataSpec
    rule: str
    changes: dict[str, Any] = field(default_factory=dict)
    at: int | None = None  # arrival index of the bad row; None: it arrives last

    @property
    def id(self) -> str:
        changes = "-".join(f"{k}={v}" for k, v in self.changes.items())
        return f"{self.spec.name}-{self.rule}-{changes}"

    def rows(self) -> list[dict[str, Any]]:
        rows = _clean_rows(self.spec)
        index = len(rows) if self.at is None else self.at
        rows.insert(index, _spare_row(self.spec) | self.changes)
        return rows

    @property
    def index(self) -> int:
        return len(_clean_rows(self.spec)) if self.at is None else self.at

    def frame(self) -> pl.DataFrame:
        return _conformed(self.spec, self.rows())


BAR_SPIKE_AT = 3  # after AAA's bars at minutes 0, 2 and 4: a bar at minute 5 is in time order
TRADE_SPIKE_AT = 3  # after AAA's trades at 5, 65 and 125 s: a trade at 155 s is in time order

ONE_BAD_ROW = [
    # raw_bars
    BadRow(RAW_BARS, "nan_value", {"close": NAN}),
    BadRow(RAW_BARS, "nan_value", {"open": None}),
    BadRow(RAW_BARS, "nan_value", {"volume": None}),
    BadRow(RAW_BARS, "non_positive_price", {"vwap": 0.0}),
    BadRow(RAW_BARS, "non_positive_price", {"vwap": -10.1}),
    BadRow(RAW_BARS, "non_positive_price", {"low": 0.0}),
    BadRow(RAW_BARS, "high_below_low", {"high": 9.4}),
    BadRow(RAW_BARS, "high_below_low", {"low": 10.6}),
    BadRow(RAW_BARS, "open_close_outside_range", {"open": 10.6}),
    BadRow(RAW_BARS, "open_close_outside_range", {"open": 9.4}),
    BadRow(RAW_BARS, "open_close_outside_range", {"high": 10.1}),
    BadRow(RAW_BARS, "negative_volume", {"volume": -1}),
    BadRow(RAW_BARS, "negative_volume", {"trade_count": -3}),
    BadRow(RAW_BARS, "duplicate_key", {"ts": OPEN + 8 * MINUTE}),
    BadRow(RAW_BARS, "out_of_session", {"ts": CLOSE}),
    BadRow(RAW_BARS, "out_of_session", {"ts": OPEN - MINUTE}, at=0),
    BadRow(RAW_BARS, "out_of_order", {"ts": OPEN + 7 * MINUTE}),
    BadRow(
        RAW_BARS, "price_jump", {"ts": OPEN + 5 * MINUTE, "high": 15.5, "close": 15.3}, BAR_SPIKE_AT
    ),
    BadRow(RAW_BARS, "unknown_ticker", {"ticker": "ZZZ"}),
    # raw_quotes
    BadRow(RAW_QUOTES, "nan_value", {"bid": NAN}),
    BadRow(RAW_QUOTES, "nan_value", {"ask": None}),
    BadRow(RAW_QUOTES, "nan_value", {"ask_size": None}),
    BadRow(RAW_QUOTES, "non_positive_price", {"bid": 0.0}),
    BadRow(RAW_QUOTES, "non_positive_price", {"bid": -1.0}),
    BadRow(RAW_QUOTES, "crossed_quote", {"bid": 10.03}),
    BadRow(RAW_QUOTES, "negative_size", {"bid_size": -100}),
    BadRow(RAW_QUOTES, "negative_size", {"ask_size": -1}),
    BadRow(RAW_QUOTES, "duplicate_key", {"ts": OPEN + 245 * SECOND}),
    BadRow(RAW_QUOTES, "out_of_session", {"ts": CLOSE}),
    BadRow(RAW_QUOTES, "out_of_session", {"ts": CLOSE + timedelta(microseconds=1)}),
    BadRow(RAW_QUOTES, "out_of_session", {"ts": OPEN - timedelta(microseconds=1)}, at=0),
    BadRow(RAW_QUOTES, "out_of_order", {"ts": OPEN + 100 * SECOND}),
    BadRow(RAW_QUOTES, "unknown_ticker", {"ticker": "ZZZ"}),
    # raw_trades
    BadRow(RAW_TRADES, "nan_value", {"price": NAN}),
    BadRow(RAW_TRADES, "nan_value", {"size": None}),
    BadRow(RAW_TRADES, "non_positive_price", {"price": 0.0}),
    BadRow(RAW_TRADES, "non_positive_price", {"price": -10.2}),
    BadRow(RAW_TRADES, "non_positive_size", {"size": 0.0}),
    BadRow(RAW_TRADES, "non_positive_size", {"size": -100.0}),
    BadRow(RAW_TRADES, "duplicate_key", {"trade_id": "4"}),
    BadRow(RAW_TRADES, "out_of_session", {"ts": CLOSE}),
    BadRow(RAW_TRADES, "out_of_session", {"ts": OPEN - SECOND}, at=0),
    BadRow(RAW_TRADES, "out_of_order", {"ts": OPEN + 100 * SECOND}),
    BadRow(RAW_TRADES, "price_jump", {"ts": OPEN + 155 * SECOND, "price": 15.3}, TRADE_SPIKE_AT),
    BadRow(RAW_TRADES, "unknown_ticker", {"ticker": "ZZZ"}),
    # options_flow
    BadRow(OPTIONS_FLOW, "nan_value", {"strike": NAN}),
    BadRow(OPTIONS_FLOW, "nan_value", {"price": None}),
    BadRow(OPTIONS_FLOW, "nan_value", {"size": None}),
    BadRow(OPTIONS_FLOW, "nan_value", {"premium": NAN}),
    BadRow(OPTIONS_FLOW, "nan_value", {"underlying_price": None}),
    BadRow(OPTIONS_FLOW, "non_positive_value", {"strike": 0.0}),
    BadRow(OPTIONS_FLOW, "non_positive_value", {"price": -0.45}),
    BadRow(OPTIONS_FLOW, "non_positive_value", {"size": 0}),
    BadRow(OPTIONS_FLOW, "non_positive_value", {"premium": 0.0}),
    BadRow(OPTIONS_FLOW, "non_positive_value", {"underlying_price": -10.1}),
    BadRow(OPTIONS_FLOW, "duplicate_key", {"event_id": "e-AAA-1"}),
    BadRow(OPTIONS_FLOW, "out_of_session", {"ts": CLOSE}),
    BadRow(OPTIONS_FLOW, "out_of_session", {"ts": OPEN - timedelta(hours=1)}),
    BadRow(OPTIONS_FLOW, "expired_option", {"expiry": DAY - timedelta(days=1)}),
    BadRow(OPTIONS_FLOW, "invalid_option_type", {"option_type": "straddle"}),
    BadRow(OPTIONS_FLOW, "invalid_sentiment", {"sentiment": "neutral"}),
    BadRow(OPTIONS_FLOW, "unknown_ticker", {"ticker": "ZZZ"}),
]
ONE_BAD_ROW_PARAMS = [pytest.param(case, id=case.id) for case in ONE_BAD_ROW]

# Rules that judge a run of rows rather than one row (tested below with runs of bars).
RUN_RULES = {"stale_price_run"}
SPECS_WITH_RUN_RULES = [
    spec for spec in MARKET_DATA_SPECS if RUN_RULES & {r.name for r in spec.rules_for(UNIVERSE)}
]


def test_the_cases_cover_every_rule_of_every_spec():
    covered = {(case.spec.name, case.rule) for case in ONE_BAD_ROW} | {
        (spec.name, rule) for spec in SPECS_WITH_RUN_RULES for rule in RUN_RULES
    }
    expected = {
        (spec.name, rule.name) for spec in MARKET_DATA_SPECS for rule in spec.rules_for(UNIVERSE)
    }
    assert covered == expected


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_a_clean_frame_passes_every_rule(spec):
    frame = _conformed(spec, [*_clean_rows(spec), _spare_row(spec)])
    validated = _validate(spec, frame)
    assert [o.rule.name for o in validated.outcomes] == [r.name for r in spec.rules_for(UNIVERSE)]
    assert _failed(validated) == {}
    assert validated.quarantined.is_empty()


@pytest.mark.parametrize("case", ONE_BAD_ROW_PARAMS)
def test_one_bad_row_fails_exactly_its_rule_once_and_is_sampled(case: BadRow):
    frame = case.frame()
    validated = _validate(case.spec, frame)
    assert _failed(validated) == {case.rule: 1}
    outcome = next(o for o in validated.outcomes if o.rule.name == case.rule)
    assert outcome.total_rows == len(frame)
    assert_frame_equal(outcome.sample, frame[case.index : case.index + 1])


@pytest.mark.parametrize("case", ONE_BAD_ROW_PARAMS)
def test_one_bad_row_is_quarantined_under_its_rule(case: BadRow):
    frame = case.frame()
    quarantined = _validate(case.spec, frame).quarantined
    expected = frame[case.index : case.index + 1].with_columns(rules=pl.lit(case.rule))
    assert_frame_equal(quarantined, expected)


@pytest.mark.parametrize("case", ONE_BAD_ROW_PARAMS)
def test_every_other_row_of_a_one_bad_row_frame_is_clean(case: BadRow):
    frame = case.frame()
    others = frame.with_row_index("_i").filter(pl.col("_i") != case.index).drop("_i")
    clean = _validate(case.spec, frame).clean
    assert_frame_equal(clean, others.sort("ticker", "ts", maintain_order=True))


# -- stale_price_run ------------------------------------------------------------------------------
def _bars_with_flat_run(length: int) -> pl.DataFrame:
    """Five clean AAA bars (close 10.2), ``length`` flat bars at 10.2, then one more clean bar."""
    times = iter(OPEN + i * MINUTE for i in range(5 + length + 1))
    flat = {"open": 10.2, "high": 10.2, "low": 10.2, "close": 10.2, "vwap": 10.2}
    rows = (
        [_bar("AAA", next(times)) for _ in range(5)]
        + [_bar("AAA", next(times), **flat) for _ in range(length)]
        + [_bar("AAA", next(times))]
    )
    return _conformed(RAW_BARS, rows)


@pytest.mark.parametrize("spec", SPECS_WITH_RUN_RULES, ids=lambda s: s.name)
def test_a_run_of_stale_run_bars_identical_bars_quarantines_the_repeats(spec):
    validated = _validate(spec, _bars_with_flat_run(STALE_RUN_BARS))
    repeats = STALE_RUN_BARS - 1  # the first bar of the run is the genuine last print
    assert _failed(validated) == {"stale_price_run": repeats}
    assert validated.quarantined["rules"].to_list() == ["stale_price_run"] * repeats
    assert validated.quarantined["high"].to_list() == [10.2] * repeats


@pytest.mark.parametrize("spec", SPECS_WITH_RUN_RULES, ids=lambda s: s.name)
def test_a_run_one_bar_shorter_than_stale_run_bars_passes(spec):
    assert _failed(_validate(spec, _bars_with_flat_run(STALE_RUN_BARS - 1))) == {}


# -- nothing is dropped, order and shape of the outputs ---------------------------------------------
def _every_bad_row_at_once(spec: MarketDataSpec) -> pl.DataFrame:
    bad = [_spare_row(case.spec) | case.changes for case in ONE_BAD_ROW if case.spec is spec]
    return _conformed(spec, [*_clean_rows(spec), *bad])


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_clean_and_quarantined_rows_add_up_to_the_input(spec):
    frame = _every_bad_row_at_once(spec)
    validated = _validate(spec, frame)
    assert len(validated.quarantined) > 0
    assert len(validated.clean) + len(validated.quarantined) == len(frame)


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_clean_rows_come_back_sorted_by_ticker_then_ts(spec):
    rows = _clean_rows(spec)
    bbb_first = [r for r in rows if r["ticker"] == "BBB"] + [
        r for r in rows if r["ticker"] == "AAA"
    ]
    frame = _conformed(spec, bbb_first)
    clean = _validate(spec, frame).clean
    assert_frame_equal(clean, frame.sort("ticker", "ts"))


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_the_quarantined_frame_has_the_input_columns_plus_rules(spec):
    frame = _every_bad_row_at_once(spec)
    quarantined = _validate(spec, frame).quarantined
    assert quarantined.schema == pl.Schema({**frame.schema, "rules": pl.Utf8})


# -- a row breaking two rules ---------------------------------------------------------------------
def _quote_with_two_faults() -> pl.DataFrame:
    """A re-sent quote (same ticker and ts as the one before) with a negative bid size."""
    rows = _clean_rows(RAW_QUOTES)
    rows.append(_quote("AAA", OPEN + 245 * SECOND, bid_size=-100))
    return _conformed(RAW_QUOTES, rows)


def test_a_row_breaking_two_rules_lists_both_in_catalogue_order():
    # In the catalogue negative_size comes before duplicate_key (the reverse of alphabetical order).
    names = [r.name for r in RAW_QUOTES.rules_for(UNIVERSE)]
    assert names.index("negative_size") < names.index("duplicate_key")
    quarantined = _validate(RAW_QUOTES, _quote_with_two_faults()).quarantined
    assert quarantined["rules"].to_list() == ["negative_size,duplicate_key"]


def test_a_row_breaking_two_rules_is_counted_under_both():
    validated = _validate(RAW_QUOTES, _quote_with_two_faults())
    assert _failed(validated) == {"negative_size": 1, "duplicate_key": 1}
    assert len(validated.quarantined) == 1


# -- nan_value ------------------------------------------------------------------------------------
def _nan_value_columns(spec: MarketDataSpec) -> list[str]:
    return [c for c, t in spec.schema.items() if t in (pl.Float64, pl.Int64)]


NAN_VALUE_CASES = [
    pytest.param(spec, column, bad, id=f"{spec.name}-{column}-{label}")
    for spec in MARKET_DATA_SPECS
    for column in _nan_value_columns(spec)
    for bad, label in ((NAN, "nan"), (None, "null"))
]


@pytest.mark.parametrize(("spec", "column", "bad"), NAN_VALUE_CASES)
def test_a_nan_or_null_number_is_nan_value_only(spec, column, bad):
    frame = _conformed(spec, [*_clean_rows(spec), _spare_row(spec) | {column: bad}])
    validated = _validate(spec, frame)
    assert _failed(validated) == {"nan_value": 1}
    assert validated.quarantined["rules"].to_list() == ["nan_value"]


UNPARSEABLE_CASES = [
    pytest.param(spec, column, id=f"{spec.name}-{column}")
    for spec in MARKET_DATA_SPECS
    for column in _nan_value_columns(spec)
]


@pytest.mark.parametrize(("spec", "column"), UNPARSEABLE_CASES)
def test_an_unparseable_number_is_cast_to_null_and_is_nan_value_only(spec, column):
    rows = [*_clean_rows(spec), _spare_row(spec) | {column: "abc"}]
    as_text = [r | {column: str(r[column])} for r in rows]  # the source sent the column as text
    raw = pl.DataFrame(as_text, strict=False)
    assert raw.schema[column] == pl.Utf8
    frame = conform(raw, spec, DAY)
    assert frame[column].null_count() == 1
    validated = _validate(spec, frame)
    assert _failed(validated) == {"nan_value": 1}
    assert validated.quarantined["rules"].to_list() == ["nan_value"]


# -- duplicate_key --------------------------------------------------------------------------------
def test_duplicate_key_keeps_the_first_copy_to_arrive_even_when_the_later_copy_differs():
    # The later copy has an earlier ts and other values: arrival, not time, decides which stays.
    first = _alert("e-1", "AAA", OPEN + 60 * MINUTE)
    later = _alert("e-1", "AAA", OPEN + 30 * MINUTE, strike=12.0, size=5, premium=225.0)
    frame = _conformed(OPTIONS_FLOW, [first, _alert("e-2", "BBB", OPEN + MINUTE), later])
    validated = _validate(OPTIONS_FLOW, frame)
    assert _failed(validated) == {"duplicate_key": 1}
    assert_frame_equal(validated.quarantined.drop("rules"), frame[2:3])
    assert validated.clean.filter(pl.col("event_id") == "e-1")["strike"].to_list() == [11.0]


def test_duplicate_key_keeps_the_first_of_identical_copies_and_quarantines_the_rest():
    bar = _bar("AAA", OPEN + MINUTE)
    frame = _conformed(RAW_BARS, [_bar("AAA", OPEN), bar, bar, bar])
    validated = _validate(RAW_BARS, frame)
    assert _failed(validated) == {"duplicate_key": 2}
    assert len(validated.clean) == 2
    assert validated.quarantined["rules"].to_list() == ["duplicate_key"] * 2


def test_a_trade_id_repeated_on_another_exchange_is_not_a_duplicate():
    rows = [*_clean_rows(RAW_TRADES), _spare_row(RAW_TRADES) | {"trade_id": "4", "exchange": "Q"}]
    assert _failed(_validate(RAW_TRADES, _conformed(RAW_TRADES, rows))) == {}


# -- out_of_order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [RAW_BARS, RAW_QUOTES, RAW_TRADES], ids=lambda s: s.name)
def test_out_of_order_flags_only_the_late_row_of_two_swapped_neighbours(spec):
    rows = [r for r in _clean_rows(spec) if r["ticker"] == "AAA"]
    rows[1], rows[2] = rows[2], rows[1]
    frame = _conformed(spec, rows)
    validated = _validate(spec, frame)
    assert _failed(validated) == {"out_of_order": 1}
    assert frame["ts"][2] < frame["ts"][1]
    assert validated.quarantined["ts"].to_list() == [frame["ts"][2]]


def test_out_of_order_does_not_flag_a_row_with_an_equal_timestamp():
    ts = OPEN + MINUTE
    rows = [_trade("AAA", OPEN, "0"), _trade("AAA", ts, "1"), _trade("AAA", ts, "2")]
    assert _failed(_validate(RAW_TRADES, _conformed(RAW_TRADES, rows))) == {}


def test_out_of_order_is_judged_per_ticker():
    rows = [_quote("AAA", OPEN + 10 * MINUTE), _quote("BBB", OPEN + MINUTE)]
    assert _failed(_validate(RAW_QUOTES, _conformed(RAW_QUOTES, rows))) == {}


# -- out_of_session -------------------------------------------------------------------------------
def test_the_session_open_instant_is_inside_and_the_close_instant_is_outside():
    rows = [_bar("AAA", OPEN), _bar("BBB", CLOSE - MINUTE), _bar("CCC", CLOSE)]
    validated = validate(_conformed(RAW_BARS, rows), RAW_BARS.rules, bounds=BOUNDS)
    assert _failed(validated) == {"out_of_session": 1}
    assert validated.quarantined["ticker"].to_list() == ["CCC"]


def test_an_early_close_session_ends_at_its_early_close():
    day = date(2024, 11, 29)  # the day after Thanksgiving: the NYSE closes at 13:00 ET
    close = nyse_calendar().session(day).close
    assert (close.hour, close.minute) == (18, 0)  # 13:00 EST in UTC
    rows = [_bar("AAA", close - MINUTE), _bar("AAA", close)]
    validated = validate(
        _conformed(RAW_BARS, rows, day),
        RAW_BARS.rules_for(UNIVERSE),
        bounds=nyse_calendar().bounds_frame([day]),
    )
    assert _failed(validated) == {"out_of_session": 1}
    assert validated.quarantined["ts"].to_list() == [close]


def test_a_row_whose_session_has_no_bounds_fails_out_of_session():
    frame = _conformed(RAW_BARS, _clean_rows(RAW_BARS))
    other_day = nyse_calendar().bounds_frame([date(2024, 3, 6)])
    assert _failed(_validate(RAW_BARS, frame, bounds=other_day)) == {"out_of_session": len(frame)}


# -- price_jump -----------------------------------------------------------------------------------
def _aaa_bars(closes: list[float]) -> pl.DataFrame:
    """AAA bars one minute apart, each opening at its close with a 1% range around it."""
    rows = [
        _bar(
            "AAA",
            OPEN + i * MINUTE,
            open=c,
            high=round(c * 1.01, 4),
            low=round(c * 0.99, 4),
            close=c,
            vwap=c,
        )
        for i, c in enumerate(closes)
    ]
    # Wiggle the opens so that no bar is flat (stale_price_run is not what these tests are about).
    for row in rows:
        row["open"] = round(row["close"] * 0.999, 4)
    return _conformed(RAW_BARS, rows)


def _gently_trending(n: int) -> list[float]:
    return [round(10.0 * (1 + 0.0005 * ((i % 3) - 1)), 4) for i in range(n)]


def test_a_single_fifty_percent_spike_in_the_middle_is_flagged_once():
    closes = _gently_trending(20)
    closes[10] = round(closes[10] * 1.5, 4)
    frame = _aaa_bars(closes)
    validated = _validate(RAW_BARS, frame)
    assert _failed(validated) == {"price_jump": 1}
    assert validated.quarantined["ts"].to_list() == [OPEN + 10 * MINUTE]


def test_a_level_shift_is_not_a_price_jump():
    closes = _gently_trending(20)
    closes = closes[:10] + [round(c * 1.05, 4) for c in closes[10:]]
    assert _failed(_validate(RAW_BARS, _aaa_bars(closes))) == {}


def test_a_spike_on_the_last_bar_is_flagged_on_the_way_in():
    closes = _gently_trending(20)
    closes[-1] = round(closes[-1] * 1.5, 4)
    validated = _validate(RAW_BARS, _aaa_bars(closes))
    assert _failed(validated) == {"price_jump": 1}
    assert validated.quarantined["ts"].to_list() == [OPEN + 19 * MINUTE]


# -- simulated data: no false positives -----------------------------------------------------------
@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SimulationConfig())


def _simulated_frames(market: SimulatedMarket, day: date) -> dict[str, pl.DataFrame]:
    simulated = market.day(day)
    return {
        RAW_BARS.name: simulated.bars,
        RAW_QUOTES.name: simulated.quotes,
        RAW_TRADES.name: simulated.trades,
        OPTIONS_FLOW.name: simulated.options_flow,
    }


def test_a_whole_simulated_day_of_bars_has_no_price_jump_or_stale_price_run(market):
    frame = conform(market.day(DAY).bars, RAW_BARS, DAY)
    outcomes = {o.rule.name: o for o in evaluate(frame, RAW_BARS.rules, bounds=BOUNDS)}
    assert outcomes["price_jump"].failed_rows == 0
    assert outcomes["stale_price_run"].failed_rows == 0


def _clean_simulated_days(market: SimulatedMarket) -> list[date]:
    """Eight ordinary sessions, the first crash day of 2024 and the early close of 2024-11-29."""
    regimes = market.regime_path(date(2024, 1, 2), date(2024, 12, 31))
    crash = regimes.filter(pl.col("regime") == "crash_mean_reverting")["session"][0]
    ordinary = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 13))
    return [*ordinary, crash, date(2024, 11, 29)]


def test_the_simulated_days_include_a_crash_day(market):
    days = _clean_simulated_days(market)
    regimes = market.regime_path(min(days), max(days)).filter(pl.col("session").is_in(days))
    assert len(days) == 10
    assert "crash_mean_reverting" in regimes["regime"].to_list()


def test_ten_simulated_days_of_every_spec_quarantine_nothing(market):
    universe = market.universe.tickers.tolist()
    calendar = nyse_calendar()
    quarantined = {}
    for day in _clean_simulated_days(market):
        frames = _simulated_frames(market, day)
        bounds = calendar.bounds_frame([day])
        for spec in MARKET_DATA_SPECS:
            frame = conform(frames[spec.name], spec, day)
            validated = validate(frame, spec.rules_for(universe), bounds=bounds)
            assert len(validated.clean) == len(frame)
            if failed := _failed(validated):
                quarantined[(day.isoformat(), spec.name)] = failed
    assert quarantined == {}


def test_a_quiet_low_priced_simulated_ticker_is_not_taken_for_a_stuck_feed(market):
    day = date(2024, 10, 15)
    frame = conform(market.day(day).bars, RAW_BARS, day)
    bounds = nyse_calendar().bounds_frame([day])
    outcomes = {o.rule.name: o for o in evaluate(frame, RAW_BARS.rules, bounds=bounds)}
    assert outcomes["stale_price_run"].failed_rows == 0


# -- specific valid and invalid values ------------------------------------------------------------
def test_a_locked_quote_is_valid():
    rows = [*_clean_rows(RAW_QUOTES), _spare_row(RAW_QUOTES) | {"bid": 10.02, "ask": 10.02}]
    assert _failed(_validate(RAW_QUOTES, _conformed(RAW_QUOTES, rows))) == {}


def test_an_expiry_on_the_session_day_is_valid():
    rows = [*_clean_rows(OPTIONS_FLOW), _spare_row(OPTIONS_FLOW) | {"expiry": DAY}]
    assert _failed(_validate(OPTIONS_FLOW, _conformed(OPTIONS_FLOW, rows))) == {}


@pytest.mark.parametrize("value", ["CALL", "Put", "straddle", "", None])
def test_an_option_type_other_than_call_or_put_is_invalid(value):
    rows = [*_clean_rows(OPTIONS_FLOW), _spare_row(OPTIONS_FLOW) | {"option_type": value}]
    validated = _validate(OPTIONS_FLOW, _conformed(OPTIONS_FLOW, rows))
    assert _failed(validated) == {"invalid_option_type": 1}


@pytest.mark.parametrize("value", ["neutral", "Bullish", "", None])
def test_a_sentiment_other_than_bullish_or_bearish_is_invalid(value):
    rows = [*_clean_rows(OPTIONS_FLOW), _spare_row(OPTIONS_FLOW) | {"sentiment": value}]
    validated = _validate(OPTIONS_FLOW, _conformed(OPTIONS_FLOW, rows))
    assert _failed(validated) == {"invalid_sentiment": 1}


@pytest.mark.parametrize("value", ["put", "call"])
def test_both_option_types_are_valid(value):
    rows = [*_clean_rows(OPTIONS_FLOW), _spare_row(OPTIONS_FLOW) | {"option_type": value}]
    assert _failed(_validate(OPTIONS_FLOW, _conformed(OPTIONS_FLOW, rows))) == {}


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_a_row_with_a_null_ticker_is_quarantined_as_unknown_ticker(spec):
    rows = [*_clean_rows(spec), _spare_row(spec) | {"ticker": None}]
    validated = _validate(spec, _conformed(spec, rows))
    assert validated.quarantined["rules"].to_list() == ["unknown_ticker"]


@pytest.mark.parametrize(
    ("spec", "changes"),
    [
        pytest.param(RAW_QUOTES, {"ask": 0.0}, id="raw_quotes-ask=0"),
        pytest.param(RAW_BARS, {"close": 0.0}, id="raw_bars-close=0"),
        pytest.param(RAW_BARS, {"high": 0.0}, id="raw_bars-high=0"),
    ],
)
def test_a_non_positive_price_is_non_positive_price_only(spec, changes):
    rows = [*_clean_rows(spec), _spare_row(spec) | changes]
    assert _failed(_validate(spec, _conformed(spec, rows))) == {"non_positive_price": 1}


# -- empty frames ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_an_empty_frame_passes_every_rule(spec):
    frame = conform(pl.DataFrame(), spec, DAY)
    outcomes = _validate(spec, frame).outcomes
    assert len(outcomes) == len(spec.rules_for(UNIVERSE))
    assert all(o.passed and o.total_rows == 0 and o.sample.is_empty() for o in outcomes)


@pytest.mark.parametrize("spec", MARKET_DATA_SPECS, ids=lambda s: s.name)
def test_an_empty_frame_gives_empty_clean_and_quarantined_frames_with_the_right_columns(spec):
    frame = conform(pl.DataFrame(), spec, DAY)
    validated = _validate(spec, frame)
    assert validated.clean.is_empty() and validated.quarantined.is_empty()
    assert validated.clean.schema == frame.schema
    assert validated.quarantined.schema == pl.Schema({**frame.schema, "rules": pl.Utf8})


# -- conform --------------------------------------------------------------------------------------
def test_conform_names_a_missing_column():
    rows = [{k: v for k, v in _bar("AAA", OPEN).items() if k != "vwap"}]
    with pytest.raises(ValueError, match="vwap"):
        conform(pl.DataFrame(rows), RAW_BARS, DAY)


def test_conform_puts_session_first_with_the_spec_types():
    frame = _conformed(RAW_BARS, _clean_rows(RAW_BARS))
    assert frame.schema == pl.Schema({"session": pl.Date, **RAW_BARS.schema})
    assert frame["session"].to_list() == [DAY] * len(frame)
