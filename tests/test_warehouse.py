"""The DuckDB warehouse: window replacement, reads, schema guard and the single-writer lock."""

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from ats_resources.warehouse import DuckDBWarehouse, WarehouseError


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
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(path=str(tmp_path / "wh" / "warehouse.duckdb"))


def test_round_trip_keeps_types_and_utc(warehouse: DuckDBWarehouse):
    frame = bars([D1])
    warehouse.replace_window("raw_bars", frame, partition_column="session", start=D1, end=D2)
    back = warehouse.read_window("raw_bars", partition_column="session", start=D1, end=D2)
    assert back.schema == frame.schema
    assert back.equals(frame)


def test_replacing_a_window_twice_keeps_the_same_rows(warehouse: DuckDBWarehouse):
    for _ in range(2):
        warehouse.replace_window(
            "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
        )
    assert warehouse.stats("raw_bars").rows == 4


def test_replacing_one_window_leaves_the_others(warehouse: DuckDBWarehouse):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    warehouse.replace_window(
        "raw_bars", bars([D2], price=11.0), partition_column="session", start=D2, end=D3
    )
    table = warehouse.read_table("raw_bars")
    assert table.filter(pl.col("session") == D1)["close"].to_list() == [10.0, 10.0]
    assert table.filter(pl.col("session") == D2)["close"].to_list() == [11.0, 11.0]


def test_an_empty_frame_clears_its_window(warehouse: DuckDBWarehouse):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    warehouse.replace_window(
        "raw_bars", bars([D2]).clear(), partition_column="session", start=D2, end=D3
    )
    assert warehouse.read_table("raw_bars")["session"].unique().to_list() == [D1]


def test_read_window_returns_only_that_window(warehouse: DuckDBWarehouse):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2, D3]), partition_column="session", start=D1, end=date(2024, 3, 7)
    )
    window = warehouse.read_window("raw_bars", partition_column="session", start=D2, end=D3)
    assert window["session"].unique().to_list() == [D2]


def test_a_changed_schema_is_refused_and_nothing_is_lost(warehouse: DuckDBWarehouse):
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


def test_unsafe_table_names_are_refused(warehouse: DuckDBWarehouse):
    with pytest.raises(WarehouseError, match="not a valid table"):
        warehouse.replace_table("bars; DROP TABLE x", bars([D1]))


def test_reading_a_missing_table_says_to_materialize_it(warehouse: DuckDBWarehouse):
    warehouse.replace_table("other", bars([D1]))
    with pytest.raises(WarehouseError, match="does not exist"):
        warehouse.read_table("raw_bars")


def test_partition_summary_counts_rows_and_tickers(warehouse: DuckDBWarehouse):
    warehouse.replace_window(
        "raw_bars", bars([D1, D2]), partition_column="session", start=D1, end=D3
    )
    summary = warehouse.partition_summary("raw_bars")
    assert summary["session"].to_list() == [D1, D2]
    assert summary["rows"].to_list() == [2, 2] and summary["tickers"].to_list() == [2, 2]


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


def test_concurrent_writers_wait_for_the_lock_instead_of_failing(warehouse: DuckDBWarehouse):
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
