"""The warehouse interface every backend implements (DuckDB now, PostgreSQL next)."""

import re
from abc import abstractmethod
from dataclasses import dataclass
from datetime import date

import dagster as dg
import polars as pl

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class WarehouseError(RuntimeError):
    """A warehouse operation that could not be done, with what to do about it."""


def checked_identifier(name: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier (table and column names are never quoted input)."""
    if not _IDENTIFIER.match(name):
        raise WarehouseError(
            f"{name!r} is not a valid table or column name (use lower-case letters, digits, _)"
        )
    return name


@dataclass(frozen=True)
class TableStats:
    table: str
    rows: int
    partitions: int  # distinct values of the partition column (0 when it has none)
    tickers: int  # distinct tickers (0 when it has none)


class WarehouseResource(dg.ConfigurableResource):
    """Tables keyed by a date partition column.

    ``replace_window`` deletes the rows whose partition column lies in ``[start, end)`` and inserts
    ``frame`` in one transaction, so a re-run or an overlapping backfill never duplicates rows.
    """

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives, for people (a file path or a redacted connection string)."""

    @abstractmethod
    def replace_window(
        self, table: str, frame: pl.DataFrame, *, partition_column: str, start: date, end: date
    ) -> int:
        """Replace rows with ``start <= partition_column < end`` by ``frame``; returns rows written."""

    @abstractmethod
    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        """Replace the whole table by ``frame``; returns rows written."""

    @abstractmethod
    def read_window(
        self, table: str, *, partition_column: str, start: date, end: date
    ) -> pl.DataFrame:
        """Rows with ``start <= partition_column < end``, ordered by the table's natural key."""

    @abstractmethod
    def read_table(self, table: str) -> pl.DataFrame:
        """The whole table."""

    @abstractmethod
    def tables(self) -> list[str]:
        """Names of the tables that exist."""

    @abstractmethod
    def stats(self, table: str, *, partition_column: str = "session") -> TableStats:
        """Row, partition and ticker counts of one table."""

    @abstractmethod
    def partition_summary(self, table: str, *, partition_column: str = "session") -> pl.DataFrame:
        """Per partition value: ``rows``, ``tickers``, ``first_ts``, ``last_ts``."""
