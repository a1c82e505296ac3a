"""The warehouses: window replacement, reads, schema guard; DuckDB's writer lock; PostgreSQL's
connection handling, indexes and TimescaleDB statements.

The shared tests run against both backends. The PostgreSQL ones (marked ``integration``) use a
throw-away schema in the database named by ``TIMESCALEDB_*`` (default ``test`` on 127.0.0.1) and
are skipped when no server answers, or fail under ``CI=true``.
"""

import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import psycopg
import pytest
from psycopg import sql

from ats_resources.warehouse import DuckDBWarehouse, WarehouseError, WarehouseResource, pg_binary
from ats_resources.warehouse import postgres as pg_module
from ats_resources.warehouse.postgres import PostgresWarehouse, timescale_statements
from tests.services import require_postgres


def bars(
    days: list[date], tickers: tuple[str, ...] = ("AAA", "BBB"), price: float = 10.0
) -> pl.DataFrame:
    rows = [
        {
            "session": d,
            "ticker": t,
            "ts": datetime(d.year, d.month, d.day, 15, tzinfo=UTC),
            "close": price,
        }
        for d in days
        for t in tickers
    ]
    return pl.DataFrame(
        rows,
        schema={
            "session": pl.Date,
            "ticker": pl.Utf8,
            "ts": pl.Datetime("us", "UTC"),
            "close": pl.Float64,
        },
    )


D1, D2, D3 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)


@pytest.fixture
def pg_schema() -> Iterator[tuple[dict, str]]:
    """(psycopg connection kwargs, name of a new empty schema), dropped afterwards."""
    conn = require_postgres()
    schema = f"ats_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**conn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield conn, schema
    finally:
        with psycopg.connect(**conn, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def postgres_warehouse(conn: dict, schema: str, **options) -> PostgresWarehouse:
    return PostgresWarehouse(
        host=conn["host"],
        port=conn["port"],
        database=conn["dbname"],
        user=conn["user"],
        password=conn["password"],
        schema_name=schema,
        **options,
    )


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(tmp_path / "wh" / "warehouse.duckdb"))


@pytest.fixture
def postgres(pg_schema: tuple[dict, str]) -> PostgresWarehouse:
    return postgres_warehouse(*pg_schema)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.integration)])
def warehouse(request: pytest.FixtureRequest) -> WarehouseResource:
    return request.getfixturevalue(
        f"{request.param}_warehouse" if request.param == "duckdb" else "postgres"
    )


# -- both backends -----------------------------------------------------------------------------


def test_round_trip_keeps_types_and_utc(warehouse: WarehouseResource):
    frame = bars([D1])
    warehouse.replace_window("raw_bars", frame, partition_column="session", start=D1, end=D2)
    back = warehouse.read_window("raw_bars", partition_column="session", start=D1, end=D2)
    assert back.schema == frame.schema
    assert back.equals(frame)


def test_every_stored_type_and_nulls_round_trip(warehouse: WarehouseResource):
    frame = pl.DataFrame(
        {
            "session": [D1, D1, D1, D2],
            "ticker": ["AAA", "", None, 'ÉÜ€ "q"\t\n\\'],
            "ts": [datetime(2024, 3, 4, 14, 30, 0, 123456, tzinfo=UTC), None, None, None],
            "naive": [datetime(2024, 3, 4, 9, 30), None, datetime(1999, 12, 31, 23, 59), None],
            "close": [1.5, None, float("nan"), float("-inf")],
            "f32": pl.Series([0.5, None, 2.0, -1.0], dtype=pl.Float32),
            "volume": [1, None, -(2**62), 2**62],
            "i32": pl.Series([1, 2, None, -(2**31)], dtype=pl.Int32),
            "i16": pl.Series([1, None, 3, -4], dtype=pl.Int16),
            "flag": [True, None, False, True],
            "day": [date(1970, 1, 1), date(1900, 5, 6), None, date(2100, 1, 1)],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "naive": pl.Datetime("us")},
    )
    warehouse.replace_window("mixed", frame, partition_column="session", start=D1, end=D3)
    back = warehouse.read_table("mixed")
    assert back.schema == frame.schema
    expected = frame.sort(["session", "ticker", "ts"], nulls_last=True, maintain_order=True)
    assert back.equals(expected)


def test_an_empty_frame_creates_an_empty_table_with_its_types(warehouse: WarehouseResource):
    frame = bars([D1]).clear()
    assert warehouse.replace_table("empty", frame) == 0
    back = warehouse.read_table("empty")
    assert back.schema == frame.schema and back.height == 0
    assert "empty" in warehouse.tables()


def test_replacing_a_window_twice_keeps_the_same_rows(warehouse: WarehouseResource):
    for _ in range(2):
        warehouse.replace_window(
            "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
        )
    assert warehouse.stats("raw_bars").rows == 4


def test_replacing_one_window_leaves_the_others(warehouse: WarehouseResource):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    warehouse.replace_window(
        "raw_bars", bars([D2], price=11.0), partition_column="session", start=D2, end=D3
    )
    table = warehouse.read_table("raw_bars")
    assert table.filter(pl.col("session") == D1)["close"].to_list() == [10.0, 10.0]
    assert table.filter(pl.col("session") == D2)["close"].to_list() == [11.0, 11.0]


def test_replace_table_replaces_everything(warehouse: WarehouseResource):
    warehouse.replace_table("ref", bars([D1, D2]))
    warehouse.replace_table("ref", bars([D3], tickers=("CCC",)))
    table = warehouse.read_table("ref")
    assert table["ticker"].to_list() == ["CCC"] and table["session"].to_list() == [D3]


def test_an_empty_frame_clears_its_window(warehouse: WarehouseResource):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    warehouse.replace_window(
        "raw_bars", bars([D2]).clear(), partition_column="session", start=D2, end=D3
    )
    assert warehouse.read_table("raw_bars")["session"].unique().to_list() == [D1]


def test_read_window_returns_only_that_window(warehouse: WarehouseResource):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2, D3]), partition_column="session", start=D1, end=date(2024, 3, 7)
    )
    window = warehouse.read_window("raw_bars", partition_column="session", start=D2, end=D3)
    assert window["session"].unique().to_list() == [D2]


def test_reads_come_in_session_ticker_ts_order(warehouse: WarehouseResource):
    frame = bars([D2, D1], tickers=("BBB", "AAA", "B", "a"))
    warehouse.replace_window("raw_bars", frame, partition_column="session", start=D1, end=D3)
    back = warehouse.read_table("raw_bars")
    assert back.select("session", "ticker").rows() == [
        (d, t)
        for d in (D1, D2)
        for t in ("AAA", "B", "BBB", "a")  # byte order, like DuckDB
    ]


def test_a_changed_schema_is_refused_and_nothing_is_lost(warehouse: WarehouseResource):
    warehouse.replace_window("raw_bars", bars([D1]), partition_column="session", start=D1, end=D2)
    with pytest.raises(WarehouseError, match="schema changed"):
        warehouse.replace_window(
            "raw_bars",
            bars([D1]).with_columns(extra=pl.lit(1)),
            partition_column="session",
            start=D1,
            end=D2,
        )
    assert warehouse.stats("raw_bars").rows == 2


def test_unsafe_table_names_are_refused(warehouse: WarehouseResource):
    with pytest.raises(WarehouseError, match="not a valid table"):
        warehouse.replace_table("bars; DROP TABLE x", bars([D1]))


def test_unsafe_column_names_are_refused(warehouse: WarehouseResource):
    with pytest.raises(WarehouseError, match="not a valid table or column"):
        warehouse.replace_table("raw_bars", bars([D1]).rename({"close": 'close"; --'}))


def test_reading_a_missing_table_says_to_materialize_it(warehouse: WarehouseResource):
    warehouse.replace_table("other", bars([D1]))
    with pytest.raises(WarehouseError, match="does not exist"):
        warehouse.read_table("raw_bars")


def test_stats_of_a_missing_table_say_it_does_not_exist(warehouse: WarehouseResource):
    warehouse.replace_table("other", bars([D1]))
    with pytest.raises(WarehouseError, match="does not exist"):
        warehouse.stats("raw_bars")


def test_stats_count_rows_partitions_and_tickers(warehouse: WarehouseResource):
    warehouse.replace_window(
        "raw_bars",
        bars([D1, D2], tickers=("A", "B", "C")),
        partition_column="session",
        start=D1,
        end=D3,
    )
    stats = warehouse.stats("raw_bars")
    assert (stats.table, stats.rows, stats.partitions, stats.tickers) == ("raw_bars", 6, 2, 3)


def test_partition_summary_counts_rows_and_tickers(warehouse: WarehouseResource):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    summary = warehouse.partition_summary("raw_bars")
    assert summary["session"].to_list() == [D1, D2]
    assert summary["rows"].to_list() == [2, 2] and summary["tickers"].to_list() == [2, 2]
    assert summary.schema["first_ts"] == pl.Datetime("us", "UTC")
    assert summary["last_ts"].to_list() == [
        datetime(2024, 3, 4, 15, tzinfo=UTC),
        datetime(2024, 3, 5, 15, tzinfo=UTC),
    ]


# -- DuckDB ------------------------------------------------------------------------------------

WRITER = """
import sys
from datetime import date, timedelta
import polars as pl
from ats_resources.warehouse import DuckDBWarehouse
w = DuckDBWarehouse(path=sys.argv[1])
offset = int(sys.argv[2])
for i in range(15):
    d = date(2024, 1, 1) + timedelta(days=offset * 100 + i)
    frame = pl.DataFrame({"session": [d] * 5000, "x": list(range(5000))})
    w.replace_window("t", frame, partition_column="session", start=d, end=d + timedelta(days=1))
"""


def test_concurrent_writers_wait_for_the_lock_instead_of_failing(
    duckdb_warehouse: DuckDBWarehouse,
):
    warehouse = duckdb_warehouse
    warehouse.replace_table("t", pl.DataFrame({"session": [date(2000, 1, 1)], "x": [0]}))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, warehouse.path, str(k)], stderr=subprocess.PIPE
        )
        for k in (1, 2)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert warehouse.stats("t").rows == 1 + 2 * 15 * 5000


# -- PostgreSQL without a server ---------------------------------------------------------------

SECRET = "s3cret-value"


def test_the_password_never_shows_in_location_repr_or_connection_errors():
    warehouse = PostgresWarehouse(
        host="127.0.0.1", port=1, database="test", password=SECRET, connect_timeout_s=2
    )
    assert warehouse.location == "postgresql://postgres@127.0.0.1:1/test (schema public)"
    assert SECRET not in repr(warehouse)
    with pytest.raises(WarehouseError) as raised:
        warehouse.tables()
    message = str(raised.value)
    assert "postgres@127.0.0.1:1/test" in message and "TIMESCALEDB_HOST" in message
    assert "running" in message
    shown = "".join(traceback.format_exception(raised.value))
    assert SECRET not in shown


def test_timescale_statements_make_a_compressed_hypertable_segmented_by_ticker():
    statements = timescale_statements("raw_bars", "ts", "ticker", 7, schema="market")
    assert statements == [
        "SELECT create_hypertable('\"market\".\"raw_bars\"', 'ts', if_not_exists => TRUE, "
        "migrate_data => TRUE)",
        'ALTER TABLE "market"."raw_bars" SET (timescaledb.compress, '
        "timescaledb.compress_segmentby = 'ticker', timescaledb.compress_orderby = 'ts DESC')",
        "SELECT add_compression_policy('\"market\".\"raw_bars\"', INTERVAL '7 days', "
        "if_not_exists => TRUE)",
    ]


def test_timescale_statements_without_ticker_or_compression():
    plain = timescale_statements("flow", "ts", None, 3)
    assert "compress_segmentby" not in plain[1] and "INTERVAL '3 days'" in plain[2]
    assert timescale_statements("flow", "ts", "ticker", 0) == plain[:1]
    with pytest.raises(WarehouseError, match="not a valid"):
        timescale_statements("flow'); DROP TABLE x; --", "ts", None, 3)


def test_frames_with_types_postgres_cannot_store_are_refused_before_connecting():
    warehouse = PostgresWarehouse(host="127.0.0.1", port=1, database="test")
    frame = pl.DataFrame({"session": [D1], "tags": [["a", "b"]]})
    with pytest.raises(WarehouseError, match="'tags' has type List"):
        warehouse.replace_table("tagged", frame)


# -- PostgreSQL with a server ------------------------------------------------------------------


def _indexes(conn: dict, schema: str) -> list[str]:
    with psycopg.connect(**conn) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY indexdef", [schema]
            )
        ]


@pytest.mark.integration
def test_new_tables_get_a_partition_index(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    warehouse = postgres_warehouse(conn, schema)
    warehouse.replace_window("raw_bars", bars([D1]), partition_column="session", start=D1, end=D2)
    assert [d.split(" USING ")[1] for d in _indexes(conn, schema)] == ["btree (session)"]


@pytest.mark.integration
def test_the_ticker_ts_index_is_opt_in(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    warehouse = postgres_warehouse(conn, schema, ticker_ts_index=True)
    warehouse.replace_window("raw_bars", bars([D1]), partition_column="session", start=D1, end=D2)
    warehouse.replace_table("no_ts", pl.DataFrame({"ticker": ["A"]}))
    assert sorted(d.split(" USING ")[1] for d in _indexes(conn, schema)) == [
        "btree (session)",
        "btree (ticker, ts)",
    ]


@pytest.mark.integration
def test_a_table_first_written_whole_gets_its_partition_index_later(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    warehouse = postgres_warehouse(conn, schema)
    warehouse.replace_table("raw_bars", bars([D1]))
    assert _indexes(conn, schema) == []
    for _ in range(2):
        warehouse.replace_window(
            "raw_bars", bars([D2]), partition_column="session", start=D2, end=D3
        )
    assert len(_indexes(conn, schema)) == 1
    assert warehouse.stats("raw_bars").rows == 4


@pytest.mark.integration
def test_a_fresh_resource_on_the_same_schema_writes_again(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    postgres_warehouse(conn, schema).replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    indexes = _indexes(conn, schema)
    again = postgres_warehouse(conn, schema)
    again.replace_window("raw_bars", bars([D2]), partition_column="session", start=D2, end=D3)
    assert again.stats("raw_bars").rows == 4
    assert _indexes(conn, schema) == indexes
    assert again.tables() == ["raw_bars"]


@pytest.mark.integration
def test_a_missing_schema_is_created(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    nested = f"{schema}_new"
    try:
        warehouse = postgres_warehouse(conn, nested)
        assert warehouse.tables() == []
        warehouse.replace_table("raw_bars", bars([D1]))
        assert warehouse.tables() == ["raw_bars"]
    finally:
        with psycopg.connect(**conn, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(nested)))


@pytest.mark.integration
def test_timescale_on_without_the_extension_is_an_error(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    with psycopg.connect(**conn) as con:
        if con.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone():
            pytest.skip("this server has TimescaleDB")
    warehouse = postgres_warehouse(conn, schema, timescale="on")
    with pytest.raises(WarehouseError, match="timescaledb extension is missing"):
        warehouse.replace_window(
            "raw_bars", bars([D1]), partition_column="session", start=D1, end=D2
        )
    assert warehouse.tables() == []  # the failed write left nothing behind
    plain = postgres_warehouse(conn, schema, timescale="auto")
    assert (
        plain.replace_window("raw_bars", bars([D1]), partition_column="session", start=D1, end=D2)
        == 2
    )


@pytest.mark.integration
def test_an_unknown_timescale_mode_is_an_error(pg_schema: tuple[dict, str]):
    warehouse = postgres_warehouse(*pg_schema, timescale="maybe")
    with pytest.raises(WarehouseError, match="auto, on, off"):
        warehouse.replace_table("raw_bars", bars([D1]))


@pytest.mark.integration
def test_narrower_integers_are_widened_and_other_type_changes_refused(postgres: PostgresWarehouse):
    frame = pl.DataFrame({"session": [D1], "n": [1]})
    postgres.replace_window("counts", frame, partition_column="session", start=D1, end=D2)
    narrower = frame.with_columns(pl.col("n").cast(pl.Int32) + 1)
    postgres.replace_window("counts", narrower, partition_column="session", start=D1, end=D2)
    assert postgres.read_table("counts")["n"].to_list() == [2]
    with pytest.raises(WarehouseError, match=r"column n has type int8.*schema changed"):
        postgres.replace_window(
            "counts",
            frame.with_columns(pl.col("n").cast(pl.Float64)),
            partition_column="session",
            start=D1,
            end=D2,
        )


@pytest.mark.integration
def test_many_copy_blocks_and_read_buckets_keep_rows_aligned(
    postgres: PostgresWarehouse, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pg_binary, "_BLOCK_ROWS", 7)
    monkeypatch.setattr(pg_module, "_BUCKET_ROWS", 5)
    n = 103
    frame = pl.DataFrame(
        {
            "session": [D1] * n,
            "ticker": [None if i % 11 == 0 else "T" * (i % 5) + str(i) for i in range(n)],
            "ts": [datetime(2024, 3, 4, 14, i % 60, tzinfo=UTC) for i in range(n)],
            "x": [None if i % 3 == 0 else i / 7 for i in range(n)],
            "n": [None if i % 4 == 0 else i for i in range(n)],
        }
    )
    postgres.replace_window("aligned", frame, partition_column="session", start=D1, end=D2)
    back = postgres.read_table("aligned")
    assert back.equals(
        frame.sort(["session", "ticker", "ts"], nulls_last=True, maintain_order=True)
    )
    by_ticker = back.filter(pl.col("ticker").is_not_null())
    assert (by_ticker["ticker"].str.extract(r"(\d+)$").cast(pl.Int64) % 3 == 0).to_list() == (
        by_ticker["x"].is_null().to_list()
    )


@pytest.mark.integration
def test_reads_work_when_the_server_does_not_speak_utf8(
    postgres: PostgresWarehouse, monkeypatch: pytest.MonkeyPatch
):
    frame = bars([D1], tickers=("ÄÖ", "", "X"))
    postgres.replace_window("raw_bars", frame, partition_column="session", start=D1, end=D2)
    monkeypatch.setattr(PostgresWarehouse, "_server_utf8", staticmethod(lambda con: False))
    assert postgres.read_table("raw_bars").equals(frame.sort(["session", "ticker", "ts"]))


@pytest.mark.integration
def test_columns_of_other_types_are_read_as_text(pg_schema: tuple[dict, str]):
    conn, schema = pg_schema
    with psycopg.connect(**conn) as con:
        con.execute(
            sql.SQL("CREATE TABLE {} (session date, amount numeric, note varchar(5))").format(
                sql.Identifier(schema, "ledger")
            )
        )
        con.execute(
            sql.SQL("INSERT INTO {} VALUES ('2024-03-04', 1.25, 'ab'), (NULL, NULL, NULL)").format(
                sql.Identifier(schema, "ledger")
            )
        )
    back = postgres_warehouse(conn, schema).read_table("ledger")
    assert back.schema == pl.Schema({"session": pl.Date, "amount": pl.String, "note": pl.String})
    assert back.rows() == [(D1, "1.25", "ab"), (None, None, None)]
