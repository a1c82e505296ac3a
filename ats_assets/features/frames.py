"""Bar frames for features: 1-minute bars enriched with quotes, trades and options flow, resampled.

``minute_frame`` joins each 1-minute bar with what happened in its minute (spreads, quote
imbalance, buy/sell volume, options-flow premium); ``resample`` builds 5m/15m/1h bars inside each
session (aligned to the open, so 09:30-10:30 is the first hour) and one 1d bar per session. Every
resampled bar carries ``available_at``: the end of its window (at the latest the session's close),
when a live system could first know it complete.
"""

from datetime import date, timedelta

import numpy as np
import polars as pl

from ats_assets.core.calendar import nyse_calendar

MINUTE = timedelta(minutes=1)
TIMEFRAME_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}
FLOW_SUMS = (
    "call_premium",
    "put_premium",
    "bullish_premium",
    "bearish_premium",
    "net_sweep_count",
    "sweep_count",
    "flow_count",
)
TRADE_SUMS = ("buy_volume", "sell_volume", "trades")
QUOTE_MEANS = ("quoted_spread", "quoted_spread_bps", "quote_imbalance")  # per-minute quote means
# The columns resample aggregates (as float64).
BAR_VALUES = (
    "open",
    "high",
    "low",
    "close",
    "vwap",
    "volume",
    "trade_count",
    *QUOTE_MEANS,
    "effective_spread_bps",
    *TRADE_SUMS,
    *FLOW_SUMS,
)


def ticker_enum(*tickers: pl.Series) -> pl.Enum:
    """An Enum of the distinct tickers in ``tickers``, sorted: its codes order rows as the
    strings do, and a cast to it costs one lookup per row."""
    return pl.Enum(pl.concat([t.unique() for t in tickers]).drop_nulls().unique().sort())


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` contiguous and read-only: every kernel input alike, so numba compiles (and
    caches) one signature per kernel whether polars handed out a view or a copy."""
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def ticker_codes(column: pl.Series, tickers: pl.Enum) -> np.ndarray:
    """Ticker codes, int64: 1, 2, ... in ticker order; 0 for a null ticker (first, as polars
    sorts nulls; events without a ticker are dropped before they are placed)."""
    codes = column.cast(tickers).to_physical().cast(pl.Int64) + 1
    return _read_only(codes.fill_null(0).to_numpy())


def epoch_ns(column: pl.Series) -> np.ndarray:
    """Times as int64 nanoseconds since the epoch (exact for any time unit)."""
    return _read_only(column.dt.epoch("ns").to_numpy())


def _floats(frame: pl.DataFrame, *columns: str | pl.Expr) -> list[np.ndarray]:
    """Columns of ``frame`` as float64 arrays, null as NaN."""
    values = frame.select(pl.col(c).cast(pl.Float64) if isinstance(c, str) else c for c in columns)
    return [_read_only(values[c].fill_null(np.nan).to_numpy()) for c in values.columns]


def minute_frame(
    bars: pl.DataFrame, quotes: pl.DataFrame, trades: pl.DataFrame, flow: pl.DataFrame
) -> pl.DataFrame:
    """1-minute bars with microstructure and options-flow columns, sorted by ticker and ts.

    Each bar gets what happened in its minute (an event's ts truncated to the minute equals the
    bar's ts) for its ticker: the means of the valid quotes' spread (also in basis points of the
    mid) and imbalance ((bid size - ask size) / depth), where a quote is valid with bid > 0 and
    ask >= bid (neither NaN); the buy and sell volume of the trades, a trade being a buy above / a
    sell below the mid of the ticker's last valid quote at or before it (earlier sessions
    included; of quotes at the same time, the later in the input), with their size-weighted
    effective spread 2 |price - mid| / mid in basis points and their count; and the options
    flow's premiums (call, put, bullish, bearish), sweeps (net of bearish ones) and count. Sums
    are 0 in a minute without events; means (spreads, imbalance) are null there. Events without a
    ticker belong to no bar; a bar without a ticker (sorted first) gets no events. Times compare
    to the nanosecond. The passes are compiled (:mod:`ats_assets.features.minute_kernels`).
    """
    from ats_assets.features import minute_kernels as mk  # numba: loaded on first use

    tickers = ticker_enum(*(f["ticker"] for f in (bars, quotes, trades, flow)))
    codes = len(tickers.categories) + 1  # and 0 for no ticker
    bar_code = ticker_codes(bars["ticker"], tickers)
    perm, bar_starts = (_read_only(a) for a in mk.order(bar_code, epoch_ns(bars["ts"]), codes))
    sessions = sorted(bars["session"].unique().to_list())
    opens = nyse_calendar().bounds_frame(sessions).select("session", "session_open")
    frame = bars[perm].select(
        "ticker",
        "session",
        "ts",
        *[pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")],
        pl.col("vwap").cast(pl.Float64),
        pl.col("trade_count").cast(pl.Float64),
        minute_of_session=(
            pl.col("ts")
            - pl.col("session").replace_strict(
                opens["session"], opens["session_open"], return_dtype=pl.Datetime("us", "UTC")
            )
        )
        .dt.total_minutes()
        .cast(pl.Int32),
    )
    bar_ts = epoch_ns(frame["ts"])
    bar_code = _read_only(bar_code[perm])
    names = (*QUOTE_MEANS, *mk.TRADE_COLUMNS, *FLOW_SUMS)
    enriched = np.zeros((len(names), len(frame)))  # one row per column; the kernels fill them
    quoted, traded, flowed = np.split(enriched, [len(QUOTE_MEANS), -len(FLOW_SUMS)])

    # polars orders NaN above every number: a NaN bid or ask is not a valid quote either
    bid_ask = pl.col("bid", "ask")
    valid = quotes.filter(
        (pl.col("bid") > 0)
        & (pl.col("ask") >= pl.col("bid"))
        & pl.all_horizontal(bid_ask.is_not_nan())
        & pl.col("ticker").is_not_null()
    )
    quote_code = ticker_codes(valid["ticker"], tickers)
    quote_ts = epoch_ns(valid["ts"])
    quote_perm, quote_starts = (_read_only(a) for a in mk.order(quote_code, quote_ts, codes))
    bid, ask, bid_size, ask_size = _floats(valid, "bid", "ask", "bid_size", "ask_size")
    rows = _read_only(mk.locate(bar_starts, bar_ts, quote_code, quote_ts))
    mk.quote_minutes(rows, bid, ask, bid_size, ask_size, quoted)

    trades = trades.filter(pl.col("ticker").is_not_null())
    trade_code = ticker_codes(trades["ticker"], tickers)
    trade_ts = epoch_ns(trades["ts"])
    price, size = _floats(trades, "price", "size")
    mk.trade_minutes(
        _read_only(mk.locate(bar_starts, bar_ts, trade_code, trade_ts)),
        trade_code,
        trade_ts,
        price,
        size,
        quote_starts,
        _read_only(quote_ts[quote_perm]),
        _read_only(((bid + ask) / 2)[quote_perm]),
        traded,
    )

    flow = flow.filter(pl.col("ticker").is_not_null())
    premium = pl.col("premium").cast(pl.Float64)
    sweep = (pl.col("execution") == "sweep").cast(pl.Float64)
    flow_values = _floats(
        flow,
        *(
            pl.when(condition).then(premium).alias(name)
            for name, condition in (
                ("call_premium", pl.col("option_type") == "call"),
                ("put_premium", pl.col("option_type") == "put"),
                ("bullish_premium", pl.col("sentiment") == "bullish"),
                ("bearish_premium", pl.col("sentiment") == "bearish"),
            )
        ),
        (sweep * pl.when(pl.col("sentiment") == "bullish").then(1.0).otherwise(-1.0)).alias(
            "net_sweep_count"
        ),
        sweep.alias("sweep_count"),
        pl.lit(1.0).alias("flow_count"),
    )
    flow_code = ticker_codes(flow["ticker"], tickers)
    mk.sums(
        _read_only(mk.locate(bar_starts, bar_ts, flow_code, epoch_ns(flow["ts"]))),
        _read_only(np.column_stack(flow_values).reshape(len(flow), len(FLOW_SUMS))),
        flowed,
    )
    mk.copy_duplicates(bar_code, bar_ts, enriched)
    return frame.with_columns(
        pl.Series(name, values, nan_to_null=True)
        for name, values in zip(names, enriched, strict=True)
    )


def resample(minute: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Bars of ``timeframe`` built within each session, with ``available_at`` (UTC).

    ``minute`` must be sorted by ticker and ts (``minute_frame`` is); so is the result.
    """
    if timeframe == "1m":
        return minute.with_columns(available_at=pl.col("ts") + MINUTE)
    from ats_assets.features import minute_kernels as mk  # numba: loaded on first use

    # The frame is sorted by ticker and ts, so each output bar is a run of consecutive rows (of
    # one ticker, session and bucket of the session's minutes): one compiled pass finds the
    # runs, one per column aggregates them. Nulls are skipped as polars' aggregations skip them.
    size = TIMEFRAME_MINUTES.get(timeframe)
    bucket = pl.col("minute_of_session") // size if size else pl.lit(0)
    keys = minute.select(
        pl.col("ticker").rle_id().cast(pl.Int64),
        pl.col("session").to_physical().cast(pl.Int64),
        bucket.cast(pl.Int64).fill_null(-1),
    )
    starts = mk.bucket_starts(*(_read_only(keys.to_series(i).to_numpy()) for i in range(3)))
    first, last = starts[:-1], starts[1:] - 1
    bars = minute.select("ticker", "session", "ts", "minute_of_session")[pl.Series(first)]
    bars = bars.with_columns(_last=minute["ts"].gather(pl.Series(last)) + MINUTE)
    x = {c: _read_only(minute[c].cast(pl.Float64).to_numpy()) for c in BAR_VALUES}

    def reduce(column: str, how: int) -> np.ndarray:
        return mk.bucket_reduce(x[column], starts, how)

    close = x["close"][last]
    dollars, volume, _ = mk.bucket_weighted(x["vwap"], x["volume"], starts)
    spread, _, weight = mk.bucket_weighted(x["effective_spread_bps"], x["trades"], starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "open": x["open"][first],
            "high": reduce("high", mk.MAX),
            "low": reduce("low", mk.MIN),
            "close": close,
            "vwap": np.where(volume > 0, dollars / volume, close),  # no volume: the last close
            "volume": volume,
            "trade_count": reduce("trade_count", mk.SUM),
            **{c: reduce(c, mk.MEAN) for c in QUOTE_MEANS},
            "effective_spread_bps": spread / weight,  # trade-weighted; NaN (null) without trades
            **{c: reduce(c, mk.SUM) for c in (*TRADE_SUMS, *FLOW_SUMS)},
        }
    bars = bars.with_columns(
        pl.Series(name, column, nan_to_null=True) for name, column in values.items()
    )
    # A bar is known when its window ends (a bucket of the session, or the session itself), at
    # the latest at the close; not at its last row's minute, which for a bar still being built
    # (live trading) or a ticker without a bar in the window's last minute would come earlier.
    bounds = nyse_calendar().bounds_frame(sorted(bars["session"].unique().to_list()))
    if timeframe == "1d":
        end = pl.col("session_close")
    else:
        size = TIMEFRAME_MINUTES[timeframe]
        left = size - pl.col("minute_of_session") % size
        end = pl.min_horizontal(pl.col("ts") + pl.duration(minutes=left), pl.col("session_close"))
    return (
        bars.join(bounds.select("session", "session_close"), on="session", how="left")
        .with_columns(available_at=pl.max_horizontal(end, pl.col("_last")))
        .drop("_last", "session_close")
        .select(*(c for c in bars.columns if c != "_last"), "available_at")
    )


def sessions_before(day: date, count: int) -> list[date]:
    """The ``count`` sessions before ``day`` and ``day`` itself, oldest first."""
    calendar = nyse_calendar()
    out = [day]
    while len(out) <= count:
        out.insert(0, calendar.previous_session(out[0]))
    return out
