"""Binary COPY for PostgreSQL: polars frames to COPY blocks and array-packed reads back.

Pure functions (no connection): the type mapping between polars and PostgreSQL, the block encoder
used by ``COPY ... FROM STDIN (FORMAT BINARY)`` and the decoder of the column arrays that
``PostgresWarehouse`` asks the server to pack on reads. See ``postgres.py`` for why.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from psycopg import sql

from ats_resources.warehouse.base import (
    WarehouseError,
)

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
