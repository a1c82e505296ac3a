"""DuckDB warehouse: the embedded default, one file at ``$ATS_DATA_DIR/warehouse.duckdb``.

DuckDB allows one writing process per file. Each operation opens the file, does its work in one
transaction and closes it, so the lock is held only for the write itself; a process that finds the
file locked waits and retries (up to ``lock_timeout_s``) rather than failing. Runs also share the
``warehouse`` concurrency pool (see dagster.yaml), so Dagster itself never starts two writers.
"""

import contextlib
import random
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
from pydantic import Field

from ats_resources.warehouse.base import (
    TableStats,
    WarehouseError,
    WarehouseResource,
    checked_identifier,
)

_NATURAL_ORDER = ("session", "ticker", "ts")


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class DuckDBWarehouse(WarehouseResource):
    """A DuckDB file holding one table per asset."""

    path: str = Field(description="Path of the DuckDB file; its folder is created when missing.")
    lock_timeout_s: float = Field(
        default=300.0, description="How long to wait for another writer's lock."
    )

    @property
    def location(self) -> str:
        return str(Path(self.path).resolve())

    @contextlib.contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        path = Path(self.path)
        if read_only and not path.exists():
            raise WarehouseError(f"no warehouse at {path}: materialize an asset first (make demo)")
        path.parent.mkdir(parents=True, exist_ok=True)
        # A writer checkpoints at COMMIT instead of logging to the WAL and checkpointing at close:
        # the same durability and lock span, one write of the data instead of two.
        config = {} if read_only else {"checkpoint_threshold": "0b"}
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only, config=config)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    raise WarehouseError(
                        f"cannot open the DuckDB warehouse at {path}: {exc}. Another process holds it; "
                        "close other DuckDB sessions on that file or raise lock_timeout_s"
                    ) from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def _columns(self, con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
        """Column names of ``table`` (a checked identifier); empty when it does not exist."""
        # Not information_schema: its first query in a connection costs ~5 ms, a tenth of a write.
        try:
            return [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
        except duckdb.CatalogException:
            return []

    def _write(self, table: str, frame: pl.DataFrame, where: str | None, params: list) -> int:
        table = checked_identifier(table)
        for column in frame.columns:
            checked_identifier(column)
        with self._connect() as con:
            con.register("incoming", frame.to_arrow())
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM incoming LIMIT 0")
                existing = self._columns(con, table)
                if set(existing) != set(frame.columns):
                    raise WarehouseError(
                        f"table {table} has columns {existing} but the asset produced {frame.columns}; "
                        f"the asset's schema changed: drop the table (DROP TABLE {table}) and re-materialize"
                    )
                con.execute(f"DELETE FROM {table}" + (f" WHERE {where}" if where else ""), params)
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("incoming")
        return len(frame)

    def replace_window(
        self, table: str, frame: pl.DataFrame, *, partition_column: str, start: date, end: date
    ) -> int:
        column = checked_identifier(partition_column)
        return self._write(table, frame, f"{column} >= ? AND {column} < ?", [start, end])

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        return self._write(table, frame, None, [])

    def _read(self, table: str, where: str | None, params: list) -> pl.DataFrame:
        table = checked_identifier(table)
        with self._connect(read_only=True) as con:
            columns = self._columns(con, table)
            if not columns:
                raise WarehouseError(
                    f"table {table} does not exist in {self.location}: materialize it first"
                )
            order = [c for c in _NATURAL_ORDER if c in columns]
            sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
            sql += f" ORDER BY {', '.join(order)}" if order else ""
            return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())

    def read_window(
        self, table: str, *, partition_column: str, start: date, end: date
    ) -> pl.DataFrame:
        column = checked_identifier(partition_column)
        return self._read(table, f"{column} >= ? AND {column} < ?", [start, end])

    def read_table(self, table: str) -> pl.DataFrame:
        return self._read(table, None, [])

    def tables(self) -> list[str]:
        if not Path(self.path).exists():
            return []
        with self._connect(read_only=True) as con:
            return [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables ORDER BY 1"
                ).fetchall()
            ]

    def stats(self, table: str, *, partition_column: str = "session") -> TableStats:
        table = checked_identifier(table)
        with self._connect(read_only=True) as con:
            columns = self._columns(con, table)
            if not columns:
                raise WarehouseError(f"table {table} does not exist in {self.location}")
            parts = (
                f"count(DISTINCT {checked_identifier(partition_column)})"
                if partition_column in columns
                else "0"
            )
            tickers = "count(DISTINCT ticker)" if "ticker" in columns else "0"
            rows, n_parts, n_tickers = con.execute(
                f"SELECT count(*), {parts}, {tickers} FROM {table}"
            ).fetchone()
        return TableStats(
            table=table, rows=int(rows), partitions=int(n_parts), tickers=int(n_tickers)
        )

    def partition_summary(self, table: str, *, partition_column: str = "session") -> pl.DataFrame:
        table, column = checked_identifier(table), checked_identifier(partition_column)
        with self._connect(read_only=True) as con:
            columns = self._columns(con, table)
            if not columns:
                raise WarehouseError(f"table {table} does not exist in {self.location}")
            tickers = "count(DISTINCT ticker)" if "ticker" in columns else "0"
            first, last = ("min(ts)", "max(ts)") if "ts" in columns else ("NULL", "NULL")
            sql = (
                f"SELECT {column}, count(*) AS rows, {tickers} AS tickers, {first} AS first_ts, "
                f"{last} AS last_ts FROM {table} GROUP BY {column} ORDER BY {column}"
            )
            return pl.from_arrow(con.sql(sql).to_arrow_table())
