"""PostgreSQL warehouse, a TimescaleDB hypertable per table where the extension is there.

Same contract as the DuckDB warehouse (see ``base.py``): one table per asset, a partition window
replaced in one transaction, reads in the natural ``session, ticker, ts`` order.

How it is fast
--------------
*Writes* stream the frame with binary ``COPY ... FROM STDIN``. The COPY payload is built with
numpy, a block of rows at a time, not value by value: every row is laid out at a fixed width (text
padded to the block's longest value), then the padding and the payloads of NULLs are dropped with
one boolean mask. Only a btree on the partition column is kept by default: it serves the window's
``DELETE`` and reads; a ``(ticker, ts)`` btree halves the write rate, so it is opt-in
(``ticker_ts_index``). Writers of one table queue on an advisory lock, so table creation and the
delete-then-insert never interleave.

*Reads* avoid a Python object, and a libpq message, per row: a row-by-row ``COPY TO`` costs the
client about 2 µs a row, three times what the server spends. The server packs each bucket of
rows (up to 65,536) into one array per column (``array_agg``; text as one ``string_agg`` blob plus
byte lengths), and numpy cuts the arrays out of the binary ``COPY`` output for polars. Rows are
then sorted by polars rather than the server (faster, and text in the same byte order as DuckDB).
With the default ``work_mem`` the server spills big reads' aggregation to temporary files: the
memory it uses stays bounded.

TimescaleDB
-----------
With ``timescale="auto"`` (the default) a new table that has a ``ts`` timestamp column becomes a
hypertable on ``ts`` when the ``timescaledb`` extension is installed in the database (or can be
created there), with native compression (segmented by ``ticker``) for chunks older than
``compress_after_days``. ``"on"`` makes a missing extension an error; ``"off"`` keeps plain tables.
Replacing a window in compressed chunks works (TimescaleDB >= 2.11 decompresses what it touches)
but is slower than writing recent days. Existing tables are never converted.
"""

import contextlib
import logging
from collections.abc import Iterator
from datetime import date

import polars as pl
import psycopg
from psycopg import sql
from pydantic import Field

from ats_resources.warehouse.base import (
    TableStats,
    WarehouseError,
    WarehouseResource,
    checked_identifier,
)
from ats_resources.warehouse.pg_binary import (
    _BUCKET_BYTES,
    _BUCKET_ROWS,
    _COPY_HEADER,
    _COPY_TRAILER,
    _INT_RANK,
    _NATURAL_ORDER,
    _TEXT_ALIASES,
    _TIMESCALE_MODES,
    _TYPES,
    _copy_blocks,
    _frame_from_messages,
    _out_column,
    _read_statement,
    pg_type_of,
)

logger = logging.getLogger(__name__)


def timescale_statements(
    table: str,
    time_column: str = "ts",
    segment_by: str | None = "ticker",
    compress_after_days: int = 7,
    *,
    schema: str = "public",
) -> list[str]:
    """SQL that turns a new, empty ``schema.table`` into a compressed TimescaleDB hypertable.

    ``compress_after_days <= 0`` leaves compression off. Names must be plain identifiers.
    """
    for name in (table, time_column, schema, *([segment_by] if segment_by else [])):
        checked_identifier(name)
    qualified = sql.Identifier(schema, table)
    regclass = sql.Literal(qualified.as_string(None))
    statements = [
        sql.SQL(
            "SELECT create_hypertable({}, {}, if_not_exists => TRUE, migrate_data => TRUE)"
        ).format(regclass, sql.Literal(time_column))
    ]
    if compress_after_days > 0:
        options = [sql.SQL("timescaledb.compress")]
        if segment_by:
            options.append(
                sql.SQL("timescaledb.compress_segmentby = {}").format(sql.Literal(segment_by))
            )
        options.append(
            sql.SQL("timescaledb.compress_orderby = {}").format(sql.Literal(f"{time_column} DESC"))
        )
        statements.append(
            sql.SQL("ALTER TABLE {} SET ({})").format(qualified, sql.SQL(", ").join(options))
        )
        statements.append(
            sql.SQL("SELECT add_compression_policy({}, INTERVAL {}, if_not_exists => TRUE)").format(
                regclass, sql.Literal(f"{int(compress_after_days)} days")
            )
        )
    return [s.as_string(None) for s in statements]


# -- binary COPY in ----------------------------------------------------------------------------


class PostgresWarehouse(WarehouseResource):
    """A PostgreSQL (optionally TimescaleDB) schema holding one table per asset."""

    host: str = Field(default="127.0.0.1", description="Server host name or address.")
    port: int = Field(default=5432, description="Server port.")
    database: str = Field(description="Database name.")
    user: str = Field(default="postgres", description="User name.")
    password: str = Field(
        default="", repr=False, description="Password; empty for trust or .pgpass auth."
    )
    schema_name: str = Field(
        default="public", description="Schema of the tables (created when missing)."
    )
    timescale: str = Field(
        default="auto",
        description="auto: hypertables when the timescaledb extension is there; on: require it; off: plain tables.",
    )
    compress_after_days: int = Field(
        default=7, description="Compress hypertable chunks older than this many days; 0: never."
    )
    ticker_ts_index: bool = Field(
        default=False,
        description="Also index (ticker, ts) on new tables: faster single-ticker reads, half the write rate.",
    )
    connect_timeout_s: int = Field(default=10, description="Seconds to wait for a connection.")

    @property
    def location(self) -> str:
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.database} "
            f"(schema {self.schema_name})"
        )

    # -- connections ---------------------------------------------------------------------------
    def _redacted(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text

    @contextlib.contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        try:
            con = psycopg.connect(
                host=self.host,
                port=self.port,
                dbname=self.database,
                user=self.user,
                password=self.password or None,
                connect_timeout=self.connect_timeout_s,
                application_name="ats-warehouse",
                client_encoding="UTF8",  # text goes both ways as UTF-8, whatever the server's
                autocommit=True,
            )
        except psycopg.Error as exc:
            reason = self._redacted(" ".join(str(exc).split()) or type(exc).__name__)
            raise WarehouseError(
                f"cannot connect to the PostgreSQL warehouse at {self.user}@{self.host}:{self.port}"
                f"/{self.database}: {reason}. Check that the server is running and reachable and "
                "that TIMESCALEDB_HOST, TIMESCALEDB_PORT, TIMESCALEDB_DATABASE, TIMESCALEDB_USER and "
                "TIMESCALEDB_PASSWORD are right"
            ) from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def _qualified(self, table: str) -> sql.Identifier:
        return sql.Identifier(checked_identifier(self.schema_name), checked_identifier(table))

    def _columns(self, con: psycopg.Connection, table: str) -> list[tuple[str, str]]:
        """(name, type) of the table's columns in order; empty when it does not exist."""
        rows = con.execute(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [self._qualified(table).as_string(con)],
        ).fetchall()
        return [(name, _TEXT_ALIASES.get(udt, udt)) for name, udt in rows]

    # -- writes --------------------------------------------------------------------------------
    def _timescale_available(self, con: psycopg.Connection) -> bool:
        """Whether new tables become hypertables (creating the extension when it can)."""
        mode = self.timescale.strip().lower()
        if mode not in _TIMESCALE_MODES:
            raise WarehouseError(
                f"timescale={self.timescale!r} is not a known choice; use one of: auto, on, off"
            )
        if mode == "off":
            return False
        if con.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            return True
        available = con.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if available:
            try:
                with con.transaction():  # a savepoint: a failure leaves the write going
                    con.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                return True
            except psycopg.Error as exc:
                if mode == "on":
                    raise WarehouseError(
                        f"the timescaledb extension is available at {self.location} but could not "
                        f"be created: {exc}. Create it as a superuser (CREATE EXTENSION timescaledb; "
                        "it needs shared_preload_libraries = 'timescaledb') or set timescale to auto"
                    ) from exc
                logger.warning("timescaledb could not be created (%s); using plain tables", exc)
                return False
        if mode == "on":
            raise WarehouseError(
                f"timescale is 'on' but the timescaledb extension is missing at {self.location}: "
                "run PostgreSQL with TimescaleDB (for example the timescale/timescaledb image) "
                "or set timescale to auto or off"
            )
        return False

    def _create(
        self,
        con: psycopg.Connection,
        table: str,
        types: dict[str, str],
        partition_column: str | None,
    ) -> None:
        schema = checked_identifier(self.schema_name)
        con.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ats.warehouse.schema:{schema}"]
        )
        hypertable = self._timescale_available(con) and types.get("ts") in (
            "timestamptz",
            "timestamp",
        )
        qualified = self._qualified(table)
        if not con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone():
            con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        con.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                qualified,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_TYPES[t].ddl))
                    for c, t in types.items()
                ),
            )
        )
        if partition_column:
            self._index(con, table, [partition_column])
        if self.ticker_ts_index and {"ticker", "ts"} <= types.keys():
            self._index(con, table, ["ticker", "ts"])
        if hypertable:
            segment_by = "ticker" if "ticker" in types else None
            for statement in timescale_statements(
                table, "ts", segment_by, self.compress_after_days, schema=schema
            ):
                con.execute(statement)

    def _index(self, con: psycopg.Connection, table: str, columns: list[str]) -> None:
        con.execute(
            sql.SQL("CREATE INDEX ON {} ({})").format(
                self._qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        )

    def _has_index_on(self, con: psycopg.Connection, table: str, column: str) -> bool:
        return bool(
            con.execute(
                "SELECT 1 FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                "WHERE i.indrelid = to_regclass(%s) AND a.attname = %s",
                [self._qualified(table).as_string(con), column],
            ).fetchone()
        )

    def _conformed(
        self, table: str, frame: pl.DataFrame, wanted: dict[str, str], stored: dict[str, str]
    ) -> pl.DataFrame:
        """``frame`` cast to the stored column types, or the schema-changed error."""
        if set(stored) != set(wanted):
            raise WarehouseError(
                f"table {table} has columns {list(stored)} but the asset produced {frame.columns}; "
                f"the asset's schema changed: drop the table (DROP TABLE {self.schema_name}.{table}) "
                "and re-materialize"
            )
        casts = {}
        for column, udt in wanted.items():
            if udt == stored[column]:
                continue
            if _INT_RANK.get(udt, 9) < _INT_RANK.get(stored[column], 0):
                casts[column] = _TYPES[stored[column]].dtype
                continue
            raise WarehouseError(
                f"table {table} column {column} has type {stored[column]} but the asset produced "
                f"{frame.schema[column]} ({udt}); the asset's schema changed: drop the table "
                f"(DROP TABLE {self.schema_name}.{table}) and re-materialize"
            )
        return frame.with_columns(pl.col(c).cast(t) for c, t in casts.items()) if casts else frame

    def _write(
        self,
        table: str,
        frame: pl.DataFrame,
        partition_column: str | None,
        window: tuple[date, date] | None,
    ) -> int:
        table = checked_identifier(table)
        wanted = {checked_identifier(c): pg_type_of(c, frame.schema[c]) for c in frame.columns}
        qualified = self._qualified(table)
        with self._connect() as con, con.transaction():
            con.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                [f"ats.warehouse.table:{self.schema_name}.{table}"],
            )
            stored = dict(self._columns(con, table))
            if not stored:
                self._create(con, table, wanted, partition_column)
                stored = wanted
            elif partition_column and not self._has_index_on(con, table, partition_column):
                self._index(con, table, [partition_column])
            frame = self._conformed(table, frame, wanted, stored)
            if window is None:
                con.execute(sql.SQL("TRUNCATE {}").format(qualified))
            else:
                column = sql.Identifier(partition_column)
                con.execute(
                    sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(
                        qualified, column, column
                    ),
                    list(window),
                )
            if frame.height:
                self._copy_in(con, qualified, frame, stored)
        return frame.height

    def _copy_in(
        self,
        con: psycopg.Connection,
        qualified: sql.Identifier,
        frame: pl.DataFrame,
        stored: dict[str, str],
    ) -> None:
        columns = [_out_column(frame[c], stored[c]) for c in frame.columns]
        # Fixed-width columns first: the COPY column list may be in any order.
        columns.sort(key=lambda c: c.offsets is not None)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            qualified, sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        )
        with con.cursor() as cur, cur.copy(statement) as copy:
            copy.write(_COPY_HEADER)
            for block in _copy_blocks(columns, frame.height):
                copy.write(block.data)
            copy.write(_COPY_TRAILER)

    def replace_window(
        self, table: str, frame: pl.DataFrame, *, partition_column: str, start: date, end: date
    ) -> int:
        column = checked_identifier(partition_column)
        return self._write(table, frame, column, (start, end))

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        return self._write(table, frame, None, None)

    # -- reads ---------------------------------------------------------------------------------
    def _query_frame(
        self,
        con: psycopg.Connection,
        query: sql.Composable,
        columns: list[tuple[str, str]],
        bucket_rows: int = _BUCKET_ROWS,
    ) -> pl.DataFrame:
        """The result of ``query`` (whose output columns are ``columns``) as a frame."""
        statement = _read_statement(query, columns, bucket_rows, self._server_utf8(con))
        with con.cursor() as cur, cur.copy(statement) as copy:
            messages = list(copy)
        return _frame_from_messages(messages, columns)

    @staticmethod
    def _server_utf8(con: psycopg.Connection) -> bool:
        return con.info.parameter_status("server_encoding") == "UTF8"

    def _bucket_rows(self, con: psycopg.Connection, table: str, columns) -> int:
        """Rows per bucket for ``table``: fewer when its rows are wide (long text values)."""
        if all(t in _TYPES and _TYPES[t].width for _, t in columns):
            return _BUCKET_ROWS
        width = con.execute(
            sql.SQL(
                "SELECT max(pg_column_size(s.*)) FROM (SELECT * FROM {} LIMIT 1000) AS s"
            ).format(self._qualified(table))
        ).fetchone()[0]
        return int(min(_BUCKET_ROWS, max(256, _BUCKET_BYTES // max(int(width or 1), 1))))

    def _read(self, table: str, where: sql.Composable | None) -> pl.DataFrame:
        table = checked_identifier(table)
        with self._connect() as con:
            columns = self._columns(con, table)
            if not columns:
                raise WarehouseError(
                    f"table {table} does not exist in {self.location}: materialize it first"
                )
            query = sql.SQL("SELECT * FROM {}").format(self._qualified(table))
            if where is not None:
                query = sql.SQL("{} WHERE {}").format(query, where)
            frame = self._query_frame(con, query, columns, self._bucket_rows(con, table, columns))
        order = [c for c in _NATURAL_ORDER if c in frame.columns]
        return frame.sort(order, nulls_last=True, maintain_order=True) if order else frame

    def _window(self, partition_column: str, start: date, end: date) -> sql.Composable:
        column = sql.Identifier(checked_identifier(partition_column))
        return sql.SQL("{} >= {} AND {} < {}").format(
            column, sql.Literal(start), column, sql.Literal(end)
        )

    def read_window(
        self, table: str, *, partition_column: str, start: date, end: date
    ) -> pl.DataFrame:
        return self._read(table, self._window(partition_column, start, end))

    def read_table(self, table: str) -> pl.DataFrame:
        return self._read(table, None)

    def tables(self) -> list[str]:
        with self._connect() as con:
            return [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "ORDER BY 1",
                    [self.schema_name],
                ).fetchall()
            ]

    def stats(self, table: str, *, partition_column: str = "session") -> TableStats:
        table = checked_identifier(table)
        with self._connect() as con:
            columns = dict(self._columns(con, table))
            if not columns:
                raise WarehouseError(f"table {table} does not exist in {self.location}")
            parts = (
                sql.SQL("count(DISTINCT {})").format(
                    sql.Identifier(checked_identifier(partition_column))
                )
                if partition_column in columns
                else sql.SQL("0")
            )
            tickers = sql.SQL("count(DISTINCT ticker)" if "ticker" in columns else "0")
            rows, n_parts, n_tickers = con.execute(
                sql.SQL("SELECT count(*), {}, {} FROM {}").format(
                    parts, tickers, self._qualified(table)
                )
            ).fetchone()
        return TableStats(
            table=table, rows=int(rows), partitions=int(n_parts), tickers=int(n_tickers)
        )

    def partition_summary(self, table: str, *, partition_column: str = "session") -> pl.DataFrame:
        table, column = checked_identifier(table), checked_identifier(partition_column)
        with self._connect() as con:
            columns = dict(self._columns(con, table))
            if not columns:
                raise WarehouseError(f"table {table} does not exist in {self.location}")
            if column not in columns:
                raise WarehouseError(f"table {table} has no partition column {column!r}")
            ts_type = columns.get("ts", "timestamptz")
            ts = sql.Identifier("ts") if "ts" in columns else sql.SQL("NULL::timestamptz")
            tickers = sql.SQL("count(DISTINCT ticker)" if "ticker" in columns else "0::bigint")
            query = sql.SQL(
                "SELECT {col}, count(*) AS rows, {tickers} AS tickers, min({ts}) AS first_ts, "
                "max({ts}) AS last_ts FROM {table} GROUP BY {col}"
            ).format(
                col=sql.Identifier(column), tickers=tickers, ts=ts, table=self._qualified(table)
            )
            result = [
                (column, columns[column]),
                ("rows", "int8"),
                ("tickers", "int8"),
                ("first_ts", ts_type),
                ("last_ts", ts_type),
            ]
            return self._query_frame(con, query, result).sort(
                column, nulls_last=True, maintain_order=True
            )
