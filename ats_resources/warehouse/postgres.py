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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
from psycopg import sql
from pydantic import Field

from ats_resources.warehouse.base import (
    TableStats,
    WarehouseError,
    WarehouseResource,
    checked_identifier,
)

logger = logging.getLogger(__name__)

_NATURAL_ORDER = ("session", "ticker", "ts")
_TIMESCALE_MODES = ("auto", "on", "off")
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = _COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # flags, extension
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000
_BLOCK_ROWS = 32_768  # rows per COPY block
_BLOCK_BYTES = 64 << 20  # the padded block may not grow past this (long text values)


@dataclass(frozen=True)
class _PgType:
    """A PostgreSQL column type the warehouse reads and writes in binary."""

    ddl: str  # type name in CREATE TABLE
    width: int  # bytes of the binary value; 0: variable length (text)
    wire: str  # numpy dtype of the binary value
    dtype: pl.DataType  # what it reads back as


_TYPES: dict[str, _PgType] = {
    "bool": _PgType("boolean", 1, "u1", pl.Boolean()),
    "int2": _PgType("smallint", 2, ">i2", pl.Int16()),
    "int4": _PgType("integer", 4, ">i4", pl.Int32()),
    "int8": _PgType("bigint", 8, ">i8", pl.Int64()),
    "float4": _PgType("real", 4, ">f4", pl.Float32()),
    "float8": _PgType("double precision", 8, ">f8", pl.Float64()),
    "date": _PgType("date", 4, ">i4", pl.Date()),
    "timestamptz": _PgType("timestamptz", 8, ">i8", pl.Datetime("us", "UTC")),
    "timestamp": _PgType("timestamp", 8, ">i8", pl.Datetime("us")),
    "text": _PgType("text", 0, "", pl.String()),
}
# Types whose binary form is text's; anything else not in _TYPES is read as ``::text``.
_TEXT_ALIASES = {"varchar": "text", "bpchar": "text", "name": "text", "citext": "text"}
# Integer types a stored column may be wider than the frame's (the frame is cast up).
_INT_RANK = {"int2": 1, "int4": 2, "int8": 3}


def pg_type_of(column: str, dtype: pl.DataType) -> str:
    """The PostgreSQL type (``pg_type.typname``) that stores a polars column."""
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.Int8, pl.Int16, pl.UInt8):
        return "int2"
    if dtype in (pl.Int32, pl.UInt16):
        return "int4"
    if dtype in (pl.Int64, pl.UInt32):
        return "int8"
    if dtype == pl.Float32:
        return "float4"
    if dtype == pl.Float64:
        return "float8"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "text"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    raise WarehouseError(
        f"column {column!r} has type {dtype}, which the PostgreSQL warehouse does not store; "
        "cast it to Boolean, Int16/32/64, Float32/64, String, Date or Datetime"
    )


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


@dataclass
class _OutColumn:
    """One frame column ready for the COPY payload."""

    name: str
    pg: _PgType
    values: np.ndarray | None = None  # fixed width: values in the column's numpy dtype
    nulls: np.ndarray | None = None  # bool per row, None when there are none
    offsets: np.ndarray | None = None  # text: arrow offsets (n + 1)
    data: np.ndarray | None = None  # text: the bytes the offsets point into


def _out_column(series: pl.Series, udt: str) -> _OutColumn:
    pg = _TYPES[udt]
    column = _OutColumn(series.name, pg)
    if series.null_count():
        column.nulls = series.is_null().to_numpy()
    if udt == "text":
        array = series.cast(pl.String).rechunk().to_arrow()
        if array.type != pa.large_string():
            array = array.cast(pa.large_string())
        _, offsets, data = array.buffers()
        column.offsets = np.frombuffer(offsets, dtype=np.int64)[
            array.offset : array.offset + len(array) + 1
        ]
        column.data = (
            np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
        )
        return column
    if udt == "date":
        physical = series.cast(pl.Int32) - _PG_EPOCH_DAYS
    elif udt in ("timestamptz", "timestamp"):
        physical = series.dt.cast_time_unit("us").to_physical() - _PG_EPOCH_US
    elif udt == "bool":
        physical = series.cast(pl.UInt8)
    else:
        physical = series.cast(pg.dtype)
    column.values = physical.fill_null(0).to_numpy()
    return column


def _copy_blocks(columns: Sequence[_OutColumn], n: int) -> Iterator[np.ndarray]:
    """The rows of a binary COPY payload (no header or trailer), a block of rows at a time."""
    fixed_width = 2 + sum(4 + c.pg.width for c in columns)
    lengths = [np.diff(c.offsets) for c in columns if c.offsets is not None]
    start = 0
    while start < n:
        stop = min(n, start + _BLOCK_ROWS)
        while stop - start > 1:
            widest = fixed_width + sum(4 + int(x[start:stop].max()) for x in lengths)
            if (stop - start) * widest <= _BLOCK_BYTES:
                break
            stop = start + (stop - start) // 2
        yield _copy_block(columns, start, stop)
        start = stop


def _copy_block(columns: Sequence[_OutColumn], start: int, stop: int) -> np.ndarray:
    n = stop - start
    fields: list[tuple[str, str]] = [("n", ">i2")]
    text_widths: dict[int, int] = {}
    for i, c in enumerate(columns):
        fields.append((f"l{i}", ">i4"))
        if c.offsets is None:
            fields.append((f"v{i}", c.pg.wire))
        else:
            width = int(np.diff(c.offsets[start : stop + 1]).max()) if n else 0
            text_widths[i] = width
            if width:
                fields.append((f"v{i}", f"V{width}"))
    layout = np.dtype(fields)
    rows = np.empty(n, dtype=layout)
    rows["n"] = len(columns)
    matrix = rows.view(np.uint8).reshape(n, layout.itemsize)
    keep: np.ndarray | None = None  # bytes of the padded rows that go on the wire
    for i, c in enumerate(columns):
        nulls = c.nulls[start:stop] if c.nulls is not None else None
        if c.offsets is None:
            rows[f"v{i}"] = c.values[start:stop]
            rows[f"l{i}"] = c.pg.width if nulls is None else np.where(nulls, -1, c.pg.width)
            if nulls is not None and nulls.any():
                if keep is None:
                    keep = np.ones(matrix.shape, dtype=bool)
                at = layout.fields[f"v{i}"][1]
                keep[nulls, at : at + c.pg.width] = False
            continue
        offsets = c.offsets[start : stop + 1]
        length = np.diff(offsets)
        rows[f"l{i}"] = length if nulls is None else np.where(nulls, -1, length)
        width = text_widths[i]
        if not width:
            continue
        at = layout.fields[f"v{i}"][1]
        inside = np.arange(width) < length[:, None]
        # Row-major order of ``inside`` is the order of the value bytes: one masked assignment.
        matrix[:, at : at + width][inside] = c.data[offsets[0] : offsets[-1]]
        if nulls is not None:
            inside &= ~nulls[:, None]
        if keep is None:
            keep = np.ones(matrix.shape, dtype=bool)
        keep[:, at : at + width] = inside
    return matrix.reshape(-1) if keep is None else matrix[keep]


# -- reads: columns as arrays ------------------------------------------------------------------
#
# One COPY message per bucket of rows instead of one per row (see the module docstring): for 20
# days of 1-minute bars (1.17M rows) about 1.5 s instead of 2.5-3 s on a 2-core test machine.

_BUCKET_ROWS = 65_536  # rows per bucket at most
_BUCKET_BYTES = 32 << 20  # and about this much data (PostgreSQL caps a value at 1 GB)
_BUCKET = "ats__bucket"  # name of the bucket column (an identifier no asset column uses)


def _read_statement(
    query: sql.Composable, columns: Sequence[tuple[str, str]], bucket_rows: int, utf8: bool
) -> sql.Composed:
    """COPY of ``query`` (output ``columns``) as per-column arrays, one row per bucket of rows.

    For each fixed-width column: its array and the (1-based) positions of its NULLs; for each
    text column: the byte lengths (-1 for NULL) and the concatenated UTF-8 bytes. All aggregates
    of one group see the same rows in the same order, so the arrays line up.
    """
    inner: list[sql.Composable] = []
    outer: list[sql.Composable] = []
    for i, (name, udt) in enumerate(columns):
        value = sql.SQL("r.{}").format(sql.Identifier(name))
        if udt in _TYPES and _TYPES[udt].width:
            array = sql.Identifier(f"a{i}")
            inner.append(sql.SQL("array_agg({}) AS {}").format(value, array))
            outer += [array, sql.SQL("array_positions({}, NULL)").format(array)]
            continue
        lengths, blob = sql.Identifier(f"l{i}"), sql.Identifier(f"s{i}")
        if utf8:  # the server's text is already UTF-8: send it as is
            text, empty = sql.SQL("{}::text").format(value), sql.SQL("''")
        else:
            text, empty = (
                sql.SQL("convert_to({}::text, 'UTF8')").format(value),
                sql.SQL("''::bytea"),
            )
        inner.append(
            sql.SQL("array_agg(coalesce(octet_length({}), -1)) AS {}").format(text, lengths)
        )
        inner.append(sql.SQL("string_agg({}, {}) AS {}").format(text, empty, blob))
        outer += [lengths, blob]
    return sql.SQL(
        "COPY (SELECT {outer} FROM ("
        "SELECT r.{bucket}, {inner} FROM ("
        "SELECT q.*, (row_number() OVER () - 1) / {rows} AS {bucket} FROM ({query}) AS q"
        ") AS r GROUP BY r.{bucket}"
        ") AS g ORDER BY g.{bucket}) TO STDOUT (FORMAT BINARY)"
    ).format(
        outer=sql.SQL(", ").join(outer),
        inner=sql.SQL(", ").join(inner),
        bucket=sql.Identifier(_BUCKET),
        rows=sql.Literal(int(bucket_rows)),
        query=query,
    )


def _fields(message: memoryview) -> list[memoryview | None]:
    """The fields of one binary COPY row."""
    count = int.from_bytes(message[:2], "big", signed=True)
    fields: list[memoryview | None] = []
    at = 2
    for _ in range(count):
        size = int.from_bytes(message[at : at + 4], "big", signed=True)
        at += 4
        fields.append(message[at : at + size] if size >= 0 else None)
        at += max(size, 0)
    return fields


def _array_elements(array: memoryview) -> tuple[int, bool, int]:
    """(elements, has NULLs, offset of the first element) of a 0- or 1-dimensional binary array."""
    dimensions = int.from_bytes(array[:4], "big")
    if dimensions == 0:
        return 0, False, 12
    if dimensions != 1:
        raise WarehouseError(f"expected a one-dimensional array from the server, got {dimensions}")
    return int.from_bytes(array[12:16], "big"), bool(int.from_bytes(array[4:8], "big")), 20


def _int_array(array: memoryview) -> np.ndarray:
    """An int4[] without NULLs as int64."""
    n, _, at = _array_elements(array)
    layout = np.dtype([("length", ">i4"), ("value", ">i4")])
    return np.frombuffer(array, dtype=layout, count=n, offset=at)["value"].astype(np.int64)


def _fixed_array(
    array: memoryview, null_positions: memoryview, pg: _PgType
) -> tuple[np.ndarray, np.ndarray | None]:
    """The values (native byte order) and NULL mask (None: no NULLs) of a fixed-width array."""
    n, has_nulls, at = _array_elements(array)
    native = np.dtype(pg.wire).newbyteorder("=")
    if not has_nulls:
        layout = np.dtype([("length", ">i4"), ("value", pg.wire)])
        values = np.frombuffer(array, dtype=layout, count=n, offset=at)["value"]
        return values.astype(native), None
    nulls = np.zeros(n, dtype=bool)
    nulls[_int_array(null_positions) - 1] = True
    size = np.where(nulls, 4, 4 + pg.width)  # a NULL element is its length (-1) alone
    starts = np.empty(n, dtype=np.int64)
    starts[0] = at
    np.cumsum(size[:-1], out=starts[1:])
    starts[1:] += at
    raw = np.frombuffer(bytes(array) + bytes(pg.width), dtype=np.uint8)  # NULLs read past the end
    values = raw[(starts + 4)[:, None] + np.arange(pg.width)].view(pg.wire).ravel()
    return values.astype(native), nulls


def _frame_from_messages(messages: list, columns: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """A frame from the COPY messages of :func:`_read_statement` (one per bucket)."""
    if not messages or bytes(messages[0][: len(_COPY_SIGNATURE)]) != _COPY_SIGNATURE:
        raise WarehouseError("unexpected COPY output from the server (no binary signature)")
    first = memoryview(messages[0])
    header = 19 + int.from_bytes(first[15:19], "big")
    rows = [first[header:], *map(memoryview, messages[1:])]
    parts: list[list] = [[] for _ in columns]
    for message in rows:
        if not len(message) or (len(message) == 2 and bytes(message) == _COPY_TRAILER):
            continue
        fields = _fields(message)
        for i, (_, udt) in enumerate(columns):
            first_field, second_field = fields[2 * i], fields[2 * i + 1]
            if udt in _TYPES and _TYPES[udt].width:
                parts[i].append(_fixed_array(first_field, second_field, _TYPES[udt]))
            else:
                blob = (
                    np.frombuffer(second_field, dtype=np.uint8).copy()
                    if second_field is not None
                    else np.empty(0, dtype=np.uint8)
                )
                parts[i].append((_int_array(first_field), blob))
    return pl.DataFrame(
        [_series(name, udt, part) for (name, udt), part in zip(columns, parts, strict=True)]
    )


def _series(name: str, udt: str, parts: list) -> pl.Series:
    pg = _TYPES.get(udt, _TYPES["text"])
    if not pg.width:
        lengths = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=np.int64)
        data = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype=np.uint8)
        nulls = lengths < 0
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.maximum(lengths, 0), out=offsets[1:])
        any_null = bool(nulls.any())
        array = pa.LargeStringArray.from_buffers(
            len(lengths),
            pa.py_buffer(offsets),
            pa.py_buffer(data),
            pa.py_buffer(np.packbits(~nulls, bitorder="little")) if any_null else None,
            int(nulls.sum()) if any_null else 0,
        )
        return pl.Series(name, array)
    native = np.dtype(pg.wire).newbyteorder("=")
    values = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=native)
    nulls = None
    if any(p[1] is not None for p in parts):
        nulls = np.concatenate(
            [p[1] if p[1] is not None else np.zeros(len(p[0]), dtype=bool) for p in parts]
        )
    if udt == "date":
        values = values + np.int32(_PG_EPOCH_DAYS)
    elif udt in ("timestamptz", "timestamp"):
        values = values + np.int64(_PG_EPOCH_US)
    elif udt == "bool":
        values = values.astype(bool)
    return pl.Series(name, pa.array(values, mask=nulls)).cast(pg.dtype)


# -- the resource ------------------------------------------------------------------------------


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
