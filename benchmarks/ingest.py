"""Warehouse ingest benchmark: write and read rates of simulated 1-minute bars, per backend.

Run with ``python -m benchmarks.ingest``; prints a table. One day is 150 tickers of 1-minute bars
(58,500 rows with a leading ``session`` column, as the assets write them); the window is 20 days.

* write 1 day: ``replace_window`` of one day into a table that already holds it (delete, then
  insert), median of ``--repeats``;
* write 20 days: ``replace_window`` of the 20-day window in one call (a backfill), median;
* read 20 days: ``read_window`` of the 20-day window, median.

DuckDB uses a temporary file. PostgreSQL uses a temporary schema in the database named by
``TIMESCALEDB_HOST/PORT/DATABASE/USER/PASSWORD`` (defaults 127.0.0.1, 5432, test, postgres, "")
and drops it afterwards; when the server cannot be reached only DuckDB is measured.
"""

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import psycopg

from ats_assets.core.calendar import nyse_calendar
from ats_resources.simulation.market import SimulatedMarket, SimulationConfig
from ats_resources.warehouse.base import WarehouseResource
from ats_resources.warehouse.duckdb import DuckDBWarehouse
from ats_resources.warehouse.postgres import PostgresWarehouse

TARGETS = {"DuckDB": 1_000_000, "PostgreSQL": 300_000}  # write rows/s
TABLE = "raw_bars"


def simulated_days(n_days: int, n_tickers: int) -> list[pl.DataFrame]:
    """``n_days`` sessions of 1-minute bars with a leading ``session`` column."""
    market = SimulatedMarket(SimulationConfig(n_tickers=n_tickers))
    sessions = nyse_calendar().sessions_between(date(2024, 1, 2), date(2024, 12, 31))[:n_days]
    return [
        market.day(d).bars.select(pl.lit(d, dtype=pl.Date).alias("session"), pl.all())
        for d in sessions
    ]


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(warehouse: WarehouseResource, days: list[pl.DataFrame], repeats: int) -> dict:
    """Rows per second of the three operations."""
    first, window = days[0], pl.concat(days)
    start, end = first["session"][0], window["session"].max()
    end += timedelta(days=1)

    day_end = start + timedelta(days=1)

    def write_one() -> None:
        warehouse.replace_window(TABLE, first, partition_column="session", start=start, end=day_end)

    def write_window() -> None:
        warehouse.replace_window(TABLE, window, partition_column="session", start=start, end=end)

    def read_window() -> pl.DataFrame:
        return warehouse.read_window(TABLE, partition_column="session", start=start, end=end)

    write_one()  # creates the table: not timed
    one_day = _median_seconds(write_one, repeats)
    twenty_days = _median_seconds(write_window, max(1, repeats // 2 + 1))
    read = _median_seconds(read_window, repeats)
    back = read_window()
    assert back.height == window.height and back.schema == window.schema, "read-back differs"
    return {
        "write_1": first.height / one_day,
        "write_20": window.height / twenty_days,
        "read_20": window.height / read,
    }


def postgres_settings() -> dict:
    return {
        "host": os.environ.get("TIMESCALEDB_HOST", "127.0.0.1"),
        "port": int(os.environ.get("TIMESCALEDB_PORT", "5432")),
        "database": os.environ.get("TIMESCALEDB_DATABASE", "test"),
        "user": os.environ.get("TIMESCALEDB_USER", "postgres"),
        "password": os.environ.get("TIMESCALEDB_PASSWORD", ""),
    }


def _postgres_connection(settings: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=settings["host"],
        port=settings["port"],
        dbname=settings["database"],
        user=settings["user"],
        password=settings["password"] or None,
        connect_timeout=2,
        autocommit=True,
    )


def measure_postgres(days: list[pl.DataFrame], repeats: int, **options) -> dict | str:
    """Rates in a throw-away schema, or why PostgreSQL could not be measured."""
    settings = postgres_settings()
    try:
        _postgres_connection(settings).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        return f"PostgreSQL not reachable at {settings['host']}:{settings['port']} ({reason})"
    schema = f"ats_bench_{uuid.uuid4().hex[:8]}"
    try:
        return measure(PostgresWarehouse(**settings, schema_name=schema, **options), days, repeats)
    finally:
        with _postgres_connection(settings) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--tickers", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--ticker-ts-index",
        action="store_true",
        help="also measure PostgreSQL with the optional (ticker, ts) index",
    )
    args = parser.parse_args()

    days = simulated_days(args.days, args.tickers)
    print(
        f"{args.days} sessions x {args.tickers} tickers of 1-minute bars: "
        f"{days[0].height:,} rows per day, {sum(d.height for d in days):,} rows in all"
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = DuckDBWarehouse(path=str(Path(tmp) / "warehouse.duckdb"))
        results["DuckDB"] = measure(warehouse, days, args.repeats)
    notes = []
    postgres = measure_postgres(days, args.repeats)
    if isinstance(postgres, str):
        notes.append(postgres + "; showing DuckDB only")
    else:
        results["PostgreSQL"] = postgres
        if args.ticker_ts_index:
            indexed = measure_postgres(days, args.repeats, ticker_ts_index=True)
            if isinstance(indexed, dict):
                results["PostgreSQL +(ticker,ts)"] = indexed

    header = f"{'backend':<26}| {'write 1 day':>14} | {'write 20 days':>14} | {'read 20 days':>14}"
    print(header + "\n" + "-" * len(header))
    for backend, rates in results.items():
        print(
            f"{backend:<26}| {rates['write_1']:>14,.0f} | {rates['write_20']:>14,.0f} | "
            f"{rates['read_20']:>14,.0f}"
        )
    print("(rows/s)")
    for note in notes:
        print(note)
    for backend, target in TARGETS.items():
        if backend in results:
            rates = results[backend]
            worst = min(rates["write_1"], rates["write_20"])
            verdict = "PASS" if worst >= target else "MISS"
            print(
                f"target {backend} write >= {target:,} rows/s: {verdict} "
                f"(1 day {rates['write_1']:,.0f}, 20 days {rates['write_20']:,.0f})"
            )


if __name__ == "__main__":
    main()
