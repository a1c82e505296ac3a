"""The minute frame (compiled passes) against a polars reference: joins and group-bys that state
the same definition, on simulated sessions and on hand-made edge cases."""

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ats_assets.core.calendar import nyse_calendar
from ats_assets.features.frames import FLOW_SUMS, TRADE_SUMS, minute_frame
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig

DAY = date(2024, 3, 5)
OPEN = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)


def reference(
    bars: pl.DataFrame, quotes: pl.DataFrame, trades: pl.DataFrame, flow: pl.DataFrame
) -> pl.DataFrame:
    """The minute frame as left joins of per-minute group-bys (the definition, spelled out)."""
    valid = quotes.filter(
        (pl.col("bid") > 0)
        & (pl.col("ask") >= pl.col("bid"))
        & ~pl.col("bid").is_nan()
        & ~pl.col("ask").is_nan()
    )
    mid = (pl.col("bid") + pl.col("ask")) / 2
    depth = pl.col("bid_size") + pl.col("ask_size")
    minute = pl.col("ts").dt.truncate("1m")
    quoted = valid.group_by("ticker", minute).agg(
        quoted_spread=(pl.col("ask") - pl.col("bid")).mean(),
        quoted_spread_bps=((pl.col("ask") - pl.col("bid")) / mid * 1e4).mean(),
        quote_imbalance=pl.when(depth > 0)
        .then((pl.col("bid_size") - pl.col("ask_size")) / depth)
        .mean(),
    )
    mids = valid.select("ticker", "ts", mid=mid).sort("ticker", "ts", maintain_order=True)
    classified = (
        trades.select("ticker", "ts", "price", "size")
        .sort("ticker", "ts")
        .join_asof(mids, on="ts", by="ticker", strategy="backward", check_sortedness=False)
    )
    side = pl.col("price") - pl.col("mid")
    traded = classified.group_by("ticker", minute).agg(
        buy_volume=pl.when(side > 0).then(pl.col("size")).otherwise(0.0).sum(),
        sell_volume=pl.when(side < 0).then(pl.col("size")).otherwise(0.0).sum(),
        effective_spread_bps=(
            (2 * side.abs() / pl.col("mid") * 1e4 * pl.col("size")).sum()
            / pl.when(pl.col("mid").is_not_null()).then(pl.col("size")).sum()
        ).fill_nan(None),
        trades=pl.len().cast(pl.Float64),
    )
    premium = pl.col("premium")
    flowed = flow.group_by("ticker", minute).agg(
        call_premium=premium.filter(pl.col("option_type") == "call").sum(),
        put_premium=premium.filter(pl.col("option_type") == "put").sum(),
        bullish_premium=premium.filter(pl.col("sentiment") == "bullish").sum(),
        bearish_premium=premium.filter(pl.col("sentiment") == "bearish").sum(),
        net_sweep_count=(
            (pl.col("execution") == "sweep").cast(pl.Float64)
            * pl.when(pl.col("sentiment") == "bullish").then(1.0).otherwise(-1.0)
        ).sum(),
        sweep_count=(pl.col("execution") == "sweep").sum().cast(pl.Float64),
        flow_count=pl.len().cast(pl.Float64),
    )
    opens = nyse_calendar().bounds_frame(sorted(bars["session"].unique().to_list()))
    return (
        bars.select(
            "ticker",
            "session",
            "ts",
            *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")],
            pl.col("vwap").cast(pl.Float64),
            pl.col("trade_count").cast(pl.Float64),
        )
        .join(opens.select("session", "session_open"), on="session", how="left")
        .with_columns(
            minute_of_session=(pl.col("ts") - pl.col("session_open"))
            .dt.total_minutes()
            .cast(pl.Int32)
        )
        .drop("session_open")
        .join(quoted, on=["ticker", "ts"], how="left")
        .join(traded, on=["ticker", "ts"], how="left")
        .join(flowed, on=["ticker", "ts"], how="left")
        .with_columns(pl.col(*TRADE_SUMS, *FLOW_SUMS).fill_null(0.0))
        .sort("ticker", "ts", maintain_order=True)
    )


def check(bars, quotes, trades, flow) -> pl.DataFrame:
    got = minute_frame(bars, quotes, trades, flow)
    assert_frame_equal(
        got, reference(bars, quotes, trades, flow), check_exact=False, rel_tol=1e-12, abs_tol=1e-9
    )
    return got


@pytest.fixture(scope="module")
def simulated() -> dict[str, pl.DataFrame]:
    market = SimulatedMarket(SimulationConfig(n_tickers=5))
    days = nyse_calendar().sessions_between(date(2024, 3, 4), date(2024, 3, 6))
    return {
        kind: pl.concat(
            [getattr(market.day(d), kind).with_columns(session=pl.lit(d)) for d in days]
        )
        for kind in ("bars", "quotes", "trades", "options_flow")
    }


def test_simulated_sessions_equal_the_reference(simulated):
    got = check(*simulated.values())
    assert got["trades"].sum() == len(simulated["trades"])  # every trade falls in a bar
    assert got["quoted_spread"].null_count() < len(got)


def test_input_in_any_order_gives_the_same_frame(simulated):
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=7) for k, v in simulated.items()}
    assert_frame_equal(
        minute_frame(*shuffled.values()),
        minute_frame(*simulated.values()),
        check_exact=False,
        rel_tol=1e-12,
    )


def bar(ticker: str, minute: int, close: float = 10.0) -> dict:
    return {
        "ticker": ticker,
        "ts": OPEN + timedelta(minutes=minute),
        "open": close,
        "high": close + 0.1,
        "low": close - 0.1,
        "close": close,
        "volume": 1000,
        "vwap": close,
        "trade_count": 10,
        "session": DAY,
    }


def quote(ticker, at: timedelta, bid, ask, bid_size=100, ask_size=100) -> dict:
    return {
        "ticker": ticker,
        "ts": OPEN + at,
        "bid": bid,
        "ask": ask,
        "bid_size": bid_size,
        "ask_size": ask_size,
    }


def trade(ticker, at: timedelta, price, size) -> dict:
    return {"ticker": ticker, "ts": OPEN + at, "price": price, "size": size}


def flow_event(ticker, at: timedelta, premium, option_type, sentiment, execution) -> dict:
    return {
        "ticker": ticker,
        "ts": OPEN + at,
        "premium": premium,
        "option_type": option_type,
        "sentiment": sentiment,
        "execution": execution,
    }


QUOTES = {
    "ticker": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "bid": pl.Float64,
    "ask": pl.Float64,
    "bid_size": pl.Int64,
    "ask_size": pl.Int64,
}
TRADES = {
    "ticker": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "price": pl.Float64,
    "size": pl.Float64,
}
FLOW = {
    "ticker": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "premium": pl.Float64,
    "option_type": pl.String,
    "sentiment": pl.String,
    "execution": pl.String,
}


def test_edge_cases_equal_the_reference():
    s = timedelta(seconds=1)
    bars = pl.DataFrame([bar("B", m) for m in (0, 1, 2, 4)] + [bar("A", m) for m in (2, 0, 1)])
    quotes = pl.DataFrame(
        [
            quote("A", 0 * s, 9.9, 10.1),
            quote("A", 20 * s, 0.0, 10.1),  # no bid: invalid
            quote("A", 30 * s, 10.2, 10.1),  # crossed: invalid
            quote("A", 65 * s, 9.95, 10.05, 0, 0),  # no depth: spread counts, imbalance not
            quote("A", 66 * s, 9.9, 10.3, None, 50),  # size unknown: imbalance not
            quote("B", 125 * s, 9.0, 9.2, 300, 100),
            quote("C", 5 * s, 1.0, 1.1),  # a ticker without bars
            quote("B", 185 * s, 9.0, 9.4),  # a minute without a bar
        ],
        schema=QUOTES,
    )
    trades = pl.DataFrame(
        [
            trade("A", 1 * s, 10.05, 100),  # above the mid: buy
            trade("A", 2 * s, 9.95, 50),  # below: sell
            trade("A", 3 * s, 10.0, 70),  # at the mid: neither
            trade("A", 66 * s, 10.2, None),  # size unknown
            trade("A", 66 * s, None, 30),  # price unknown: weighs in the spread, no side
            trade("B", 10 * s, 9.5, 10),  # before B's first quote: no mid
            trade("B", 130 * s, 9.15, 20),
            trade("B", 128 * s, 9.05, 40),  # out of time order
            trade("B", 250 * s, 9.1, 5),  # minute 4 (B has no bar at minute 3)
            trade("D", 1 * s, 5.0, 5),  # a ticker with neither bars nor quotes
        ],
        schema=TRADES,
    )
    flow = pl.DataFrame(
        [
            flow_event("A", 5 * s, 1000.0, "call", "bullish", "sweep"),
            flow_event("A", 6 * s, 500.0, "put", "bearish", "sweep"),
            flow_event("A", 7 * s, None, "call", "bullish", "block"),
            flow_event("B", 70 * s, 200.0, None, None, None),
            flow_event("B", 300 * s, 10.0, "call", "neutral", "sweep"),  # minute 5: no bar
        ],
        schema=FLOW,
    )
    got = check(bars, quotes, trades, flow)
    a0 = got.row(0, named=True)
    assert (a0["buy_volume"], a0["sell_volume"], a0["trades"]) == (100, 50, 3)
    assert a0["quoted_spread"] == pytest.approx(0.2)
    assert got.filter(ticker="B")["trades"].to_list() == [1, 0, 2, 1]


def test_duplicate_bars_both_get_their_minute():
    bars = pl.DataFrame([bar("A", 0), bar("A", 0, 11.0), bar("A", 1)])
    quotes = pl.DataFrame([quote("A", timedelta(seconds=3), 9.9, 10.1)], schema=QUOTES)
    trades = pl.DataFrame([trade("A", timedelta(seconds=4), 10.05, 10)], schema=TRADES)
    got = check(bars, quotes, trades, pl.DataFrame(schema=FLOW))
    assert got["buy_volume"].to_list() == [10, 10, 0]


def test_no_quotes_trades_or_flow():
    bars = pl.DataFrame([bar("A", m) for m in range(3)])
    got = check(
        bars, pl.DataFrame(schema=QUOTES), pl.DataFrame(schema=TRADES), pl.DataFrame(schema=FLOW)
    )
    assert got["quoted_spread"].null_count() == 3
    assert (got["trades"] == 0).all()


def test_a_trade_takes_the_quote_of_an_earlier_session():
    previous = nyse_calendar().previous_session(DAY)
    bars = pl.DataFrame([bar("A", 0)])
    quotes = pl.DataFrame(
        [quote("A", nyse_calendar().session_close(previous) - OPEN, 9.0, 9.2)], schema=QUOTES
    )
    trades = pl.DataFrame([trade("A", timedelta(seconds=1), 9.3, 10)], schema=TRADES)
    got = check(bars, quotes, trades, pl.DataFrame(schema=FLOW))
    assert got["buy_volume"].item() == 10
    assert got["effective_spread_bps"].item() == pytest.approx(2 * 0.2 / 9.1 * 1e4)


def test_many_events_per_minute_sum_exactly_as_counted():
    rng = np.random.default_rng(3)
    bars = pl.DataFrame([bar(t, m) for t in ("A", "B") for m in range(30)])
    n = 5000
    trades = pl.DataFrame(
        {
            "ticker": rng.choice(["A", "B", "Z"], n),
            "ts": [OPEN + timedelta(milliseconds=int(x)) for x in rng.integers(0, 31 * 60_000, n)],
            "price": rng.normal(10, 0.05, n),
            "size": rng.integers(1, 500, n).astype(float),
        },
        schema=TRADES,
    )
    quotes = pl.DataFrame(
        {
            "ticker": rng.choice(["A", "B"], n),
            "ts": [OPEN + timedelta(milliseconds=int(x)) for x in rng.integers(0, 30 * 60_000, n)],
            "bid": rng.normal(9.98, 0.01, n),
            "ask": rng.normal(10.02, 0.01, n),
            "bid_size": rng.integers(0, 300, n),
            "ask_size": rng.integers(0, 300, n),
        },
        schema=QUOTES,
    )
    got = check(bars, quotes, trades, pl.DataFrame(schema=FLOW))
    in_bars = trades.filter(pl.col("ticker") != "Z", pl.col("ts") < OPEN + timedelta(minutes=30))
    assert got["trades"].sum() == len(in_bars)


WARM_CHECK = """
import json, polars as pl
from numba.core.registry import CPUDispatcher
from ats_assets.features import minute_kernels
from ats_assets.features.frames import minute_frame
from ats_assets.features.indicators import warm_up
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from datetime import date

warm_up()
kernels = {n: f for n, f in vars(minute_kernels).items()
           if isinstance(f, CPUDispatcher) and not n.startswith("_")}
before = {n: len(f.signatures) for n, f in kernels.items()}
day = SimulatedMarket(SimulationConfig(n_tickers=3)).day(date(2024, 3, 5))
gaps = day.trades.with_columns(
    size=pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("size"))
)
s = pl.lit(date(2024, 3, 5))
minute_frame(day.bars.with_columns(session=s), day.quotes, gaps, day.options_flow)
print(json.dumps([before, {n: len(f.signatures) for n, f in kernels.items()}]))
"""


def test_the_warm_up_compiles_what_a_minute_frame_uses():
    # a fresh process: what the warm-up compiled there, and what a real frame then needed
    out = subprocess.run(
        [sys.executable, "-c", WARM_CHECK], capture_output=True, text=True, check=True
    )
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(before) >= 6 and all(before.values()), before
    assert after == before  # no signature compiled beyond the warm-up's


def test_rows_without_a_ticker_match_nothing_and_lose_no_bar():
    s = timedelta(seconds=1)
    bars = pl.DataFrame([bar("A", 0), bar("A", 1), {**bar("A", 0), "ticker": None}])
    quotes = pl.DataFrame(
        [quote("A", 1 * s, 9.9, 10.1), quote(None, 2 * s, 1.0, 9.0)], schema=QUOTES
    )
    trades = pl.DataFrame(
        [trade("A", 3 * s, 10.05, 10), trade(None, 4 * s, 10.05, 99)], schema=TRADES
    )
    flow = pl.DataFrame([flow_event(None, 5 * s, 1e4, "call", "bullish", "sweep")], schema=FLOW)
    got = check(bars, quotes, trades, flow)
    assert got["ticker"].to_list() == [None, "A", "A"]  # nulls first, as polars sorts
    assert got["buy_volume"].to_list() == [0, 10, 0]
    assert got["quoted_spread"].to_list()[:2] == [None, pytest.approx(0.2)]
    assert got["flow_count"].sum() == 0


def test_a_nan_bid_or_ask_is_not_a_valid_quote():
    s = timedelta(seconds=1)
    bars = pl.DataFrame([bar("A", 0)])
    quotes = pl.DataFrame(
        [quote("A", 1 * s, 9.9, 10.1), quote("A", 2 * s, 9.9, float("nan"))], schema=QUOTES
    )
    trades = pl.DataFrame([trade("A", 3 * s, 10.05, 10)], schema=TRADES)
    got = check(bars, quotes, trades, pl.DataFrame(schema=FLOW))
    assert got["quoted_spread"].item() == pytest.approx(0.2)
    assert got["buy_volume"].item() == 10  # against the last valid mid, 10.0


def test_times_compare_to_the_nanosecond():
    ns = pl.Datetime("ns", "UTC")
    bars = pl.DataFrame([bar("A", 0)]).with_columns(pl.col("ts").cast(ns))
    at = OPEN + timedelta(seconds=2)
    quotes = pl.DataFrame(
        [quote("A", timedelta(seconds=1), 9.9, 10.1), quote("A", timedelta(seconds=2), 10.1, 10.3)],
        schema=QUOTES,
    ).with_columns(pl.col("ts").cast(ns))
    # the second quote comes 700 ns after the trade's 300 ns within the same microsecond
    quotes = quotes.with_columns(
        pl.when(pl.col("ts") == at)
        .then(pl.col("ts") + pl.duration(nanoseconds=700))
        .otherwise(pl.col("ts"))
    )
    trades = pl.DataFrame(
        [trade("A", timedelta(seconds=2), 10.05, 10)], schema=TRADES
    ).with_columns(pl.col("ts").cast(ns) + pl.duration(nanoseconds=300))
    flow = pl.DataFrame(schema=FLOW).with_columns(pl.col("ts").cast(ns))
    got = check(bars, quotes, trades, flow)
    assert got["buy_volume"].item() == 10  # against the first quote's mid, 10.0
