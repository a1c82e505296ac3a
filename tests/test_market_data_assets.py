"""Materializing the market-data assets with the real DuckDB warehouse in a temporary folder."""

from collections.abc import Callable
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ats_assets.definitions import defs
from ats_assets.market_data.assets import market_data_assets
from ats_resources.market_data import SimulatedMarketResource
from ats_resources.vendors.collect import Fetched

TABLES = ("raw_bars", "raw_quotes", "raw_trades", "options_flow")
DAY = date(2024, 3, 5)


def materialize(
    resources: dict, instance: dg.DagsterInstance, first: str, last: str | None = None, **kw
):
    tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last or first}
    return dg.materialize(
        market_data_assets, resources=resources, instance=instance, tags=tags, **kw
    )


def row_counts(resources: dict) -> dict[str, int]:
    return {t: resources["warehouse"].stats(t).rows for t in TABLES}


def failed_checks(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def test_the_code_location_holds_the_market_data_assets_and_their_quarantines():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(TABLES) | {f"{t}_quarantine" for t in TABLES} <= keys


def test_a_partition_materializes_every_ticker_into_duckdb(resources, instance):
    result = materialize(resources, instance, DAY.isoformat())
    assert result.success
    bars = resources["warehouse"].read_table("raw_bars")
    assert bars["ticker"].n_unique() >= 150
    assert bars["session"].unique().to_list() == [DAY]
    assert len(bars) == bars["ticker"].n_unique() * 390
    assert not failed_checks(result)
    assert all(resources["warehouse"].stats(f"{t}_quarantine").rows == 0 for t in TABLES)


def test_rematerializing_a_partition_keeps_row_count(resources, instance):
    materialize(resources, instance, DAY.isoformat())
    first = row_counts(resources)
    materialize(resources, instance, DAY.isoformat())
    assert row_counts(resources) == first
    bars = resources["warehouse"].read_table("raw_bars")
    assert bars.select(pl.struct("ticker", "ts").is_duplicated().sum()).item() == 0


def test_a_range_runs_as_one_run_and_writes_each_session(resources, instance):
    result = materialize(resources, instance, "2024-11-26", "2024-12-02")
    assert result.success
    summary = resources["warehouse"].partition_summary("raw_bars")
    assert summary["session"].to_list() == [
        date(2024, 11, 26),
        date(2024, 11, 27),
        date(2024, 11, 29),
        date(2024, 12, 2),
    ]
    early = summary.filter(pl.col("session") == date(2024, 11, 29))
    assert early["rows"].item() == early["tickers"].item() * 210


def test_materialization_metadata_describes_the_partition(resources, instance):
    result = materialize(resources, instance, DAY.isoformat())
    [mat] = [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey("raw_bars")
    ]
    metadata = mat.materialization.metadata
    assert metadata["dagster/row_count"].value == metadata["rows_written"].value > 0
    assert metadata["tickers"].value >= 150
    assert metadata["quarantined_rows"].value == 0
    assert "preview" in metadata and "first_ts" in metadata
    assert metadata["warehouse_table"].value == "raw_bars"


# -- bad prints -----------------------------------------------------------------------------------
Mutation = Callable[[pl.DataFrame], pl.DataFrame]


class MutatedMarket(SimulatedMarketResource):
    """The simulated market whose pages pass through ``mutations`` first: a vendor's bad prints."""

    def _mutate(self, kind: str, fetched: Fetched) -> Fetched:
        mutate = MUTATIONS.get(kind)
        return Fetched(mutate(fetched.frame) if mutate else fetched.frame, fetched.failures)

    def bars(self, symbols, start, end):
        return self._mutate("bars", super().bars(symbols, start, end))

    def quotes(self, symbols, start, end):
        return self._mutate("quotes", super().quotes(symbols, start, end))

    def options_flow(self, symbols, start, end):
        return self._mutate("options_flow", super().options_flow(symbols, start, end))


MUTATIONS: dict[str, Mutation] = {}


def set_row(frame: pl.DataFrame, index: int, **values) -> pl.DataFrame:
    """``frame`` with the columns of row ``index`` replaced by ``values`` (expressions or scalars)."""
    here = pl.int_range(pl.len()) == index
    return frame.with_columns(
        [
            pl.when(here)
            .then(v if isinstance(v, pl.Expr) else pl.lit(v))
            .otherwise(pl.col(c))
            .alias(c)
            for c, v in values.items()
        ]
    )


def bad_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """One bad print per bars rule, each on its own ticker (stale_price_run needs a run of 15)."""
    tickers = frame["ticker"].unique(maintain_order=True).to_list()
    rows = {
        t: frame.with_row_index("i").filter(pl.col("ticker") == t)["i"].to_list()
        for t in tickers[:12]
    }
    mid = lambda t, k=200: rows[t][k]  # noqa: E731
    f = frame
    f = set_row(f, mid(tickers[0]), close=float("nan"))  # nan_value
    f = set_row(f, mid(tickers[1]), vwap=0.0)  # non_positive_price
    f = set_row(f, mid(tickers[2]), high=pl.col("low"), low=pl.col("high") + 0.05)  # high_below_low
    f = set_row(f, mid(tickers[3]), open=pl.col("high") + 0.05)  # open_close_outside_range
    f = set_row(f, mid(tickers[4]), volume=-5)  # negative_volume
    scale = {c: pl.col(c) * 1.5 for c in ("open", "high", "low", "close", "vwap")}
    f = set_row(f, mid(tickers[5]), **scale)  # price_jump
    start = mid(tickers[6], 100)
    prev_close = f["close"][start - 1]
    for k in range(start, start + 15):  # stale_price_run: the feed repeats one bar 15 times
        f = set_row(
            f, k, open=prev_close, high=prev_close, low=prev_close, close=prev_close, volume=700
        )
    # out_of_order: swap two neighbouring bars of one ticker (the earlier one now arrives late)
    a, b = mid(tickers[7]), mid(tickers[7]) + 1
    f = pl.concat([f[:a], f[b : b + 1], f[a : a + 1], f[b + 1 :]])
    last = rows[tickers[8]][-1]  # duplicate_key: the ticker's last bar sent twice
    f = pl.concat([f[: last + 1], f[last : last + 1], f[last + 1 :]])
    last = (
        rows[tickers[9]][-1] + 1
    )  # (shifted by the inserted copy) out_of_session: 5 minutes after the close
    late = f[last : last + 1].with_columns(pl.col("ts") + timedelta(minutes=5))
    f = pl.concat([f[: last + 1], late, f[last + 1 :]])
    stranger = f[:1].with_columns(ticker=pl.lit("ZZZZ9"))  # unknown_ticker
    return pl.concat([f, stranger])


def crossed_quote(frame: pl.DataFrame) -> pl.DataFrame:
    return set_row(frame, 500, bid=pl.col("ask") + 0.05)


def expired_option(frame: pl.DataFrame) -> pl.DataFrame:
    return set_row(frame, 7, expiry=DAY - timedelta(days=1))


EXPECTED_BARS = {
    "nan_value": 1,
    "non_positive_price": 1,
    "high_below_low": 1,
    "open_close_outside_range": 1,
    "negative_volume": 1,
    "price_jump": 1,
    "stale_price_run": 14,  # the first of the 15 identical bars is kept
    "out_of_order": 1,
    "duplicate_key": 1,
    "out_of_session": 1,
    "unknown_ticker": 1,
}


@pytest.fixture
def bad_prints(monkeypatch):
    monkeypatch.setitem(MUTATIONS, "bars", bad_bars)
    monkeypatch.setitem(MUTATIONS, "quotes", crossed_quote)
    monkeypatch.setitem(MUTATIONS, "options_flow", expired_option)


def test_one_bad_print_of_each_rule_is_quarantined_and_counted(resources, instance, bad_prints):
    market = MutatedMarket()
    resources = {**resources, "market_data": market, "options_flow_source": market}
    result = materialize(resources, instance, DAY.isoformat(), raise_on_error=False)
    failed = failed_checks(result)
    counts = {
        name: e.metadata["quarantined_rows"].value
        for (asset, name), e in failed.items()
        if asset == "raw_bars"
    }
    assert counts == EXPECTED_BARS
    assert set(failed) == {("raw_bars", r) for r in EXPECTED_BARS} | {
        ("raw_quotes", "crossed_quote"),
        ("options_flow", "expired_option"),
    }
    warehouse = resources["warehouse"]
    quarantine = warehouse.read_table("raw_bars_quarantine")
    assert len(quarantine) == sum(EXPECTED_BARS.values())
    assert quarantine["rules"].value_counts().sort("rules").to_dicts() == sorted(
        ({"rules": r, "count": n} for r, n in EXPECTED_BARS.items()), key=lambda d: d["rules"]
    )
    assert quarantine["session"].unique().to_list() == [DAY]
    clean = warehouse.read_table("raw_bars")
    n_tickers = 200
    # every clean row is valid and nothing was lost: clean + quarantined = what the source sent
    assert len(clean) + len(quarantine) == n_tickers * 390 + 3  # duplicate, late row, stranger
    assert clean.select(pl.struct("ticker", "ts").is_duplicated().sum()).item() == 0
    assert warehouse.read_table("raw_quotes_quarantine")["rules"].to_list() == ["crossed_quote"]
    assert warehouse.read_table("options_flow_quarantine")["rules"].to_list() == ["expired_option"]


def test_clean_rows_are_written_when_some_rows_are_quarantined(resources, instance, bad_prints):
    market = MutatedMarket()
    resources = {**resources, "market_data": market, "options_flow_source": market}
    result = materialize(resources, instance, DAY.isoformat(), raise_on_error=False)
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert set(TABLES) <= materialized


# -- failing tickers ------------------------------------------------------------------------------
class FlakyVendor(SimulatedMarketResource):
    """A source that fails for good on the first ``failing`` tickers of the universe."""

    failing: int = 0

    def bars(self, symbols, start, end):
        fetched = super().bars(symbols, start, end)
        lost = list(symbols)[: self.failing]
        return Fetched(
            fetched.frame.filter(~pl.col("ticker").is_in(lost)),
            {t: f"Polygon aggregates for {t}: rejected (HTTP 500)" for t in lost},
        )


def test_a_ticker_that_fails_is_named_and_fails_its_check(resources, instance):
    vendor = FlakyVendor(failing=3)
    result = materialize(
        {**resources, "market_data": vendor}, instance, DAY.isoformat(), raise_on_error=False
    )
    check = failed_checks(result)[("raw_bars", "tickers_fetched")]
    failed = check.metadata["failed_tickers"].value.split(", ")
    assert failed == sorted(vendor.universe()["ticker"].to_list()[:3])
    assert "HTTP 500" in check.metadata["failures"].value
    assert resources["warehouse"].read_table("raw_bars")["ticker"].n_unique() == 197


def test_too_many_failed_tickers_fail_the_partition_and_write_nothing(resources, instance):
    vendor = FlakyVendor(failing=20)  # 10% of 200 > 5%
    result = materialize(
        {**resources, "market_data": vendor}, instance, DAY.isoformat(), raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure and "raw_bars" in e.step_key)
    assert "20 of 200 tickers failed" in failure.step_failure_data.error.message
    assert "raw_bars" not in resources["warehouse"].tables()


def test_every_check_is_blocking():
    for asset in market_data_assets:
        assert asset.check_specs and all(spec.blocking for spec in asset.check_specs)


@pytest.mark.parametrize("asset", market_data_assets, ids=lambda a: a.node_def.name)
def test_assets_use_single_run_backfills_and_the_warehouse_pool(asset):
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert asset.node_def.pool == "warehouse"
