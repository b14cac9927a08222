"""Extract one department table into the lake: streamed in chunks, every value as text.

Values are kept exactly as the department stored them (as strings, NULL stays NULL, '' stays '')
so that normalisation sees the real formats and faults.
"""
from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from govdata.lake import open_writer
from govdata.standards.model import SourceConfig
from govdata.transforms.normalise import canonical_keys

CHUNK_ROWS = 100_000
RECORD_ID = "_source_record_id"
ROW_HASH = "_row_hash"


class SourceUnavailableError(RuntimeError):
    """The department's database could not be reached or read (message names the source)."""


# Connections (URL forms, read-only SQLite, connect timeout) live in govdata/connections.py,
# light enough for the preflight that runs before Airflow; re-exported here for callers.
from govdata.connections import source_engine, sqlalchemy_url  # noqa: F401


def _quote(engine: sa.Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def build_query(engine: sa.Engine, source: SourceConfig, watermark: str | None) -> tuple[str, dict]:
    """SELECT of the mapped columns (plus key and watermark column), newer than the watermark."""
    columns = dict.fromkeys([source.primary_key, *source.columns, *_incremental_column(source)])
    select = ", ".join(_quote(engine, c) for c in columns)
    sql = f"SELECT {select} FROM {_quote(engine, source.table)}"
    params: dict = {}
    inc = _incremental_column(source)
    if inc and watermark is not None:
        sql += f" WHERE {_quote(engine, inc[0])} > :watermark"
        params["watermark"] = watermark
    return sql + f" ORDER BY {_quote(engine, source.primary_key)}", params


def _incremental_column(source: SourceConfig) -> list[str]:
    return [source.incremental["column"]] if source.incremental else []


# Marks a value whose bytes are not UTF-8 (invalid UTF-8 stored as TEXT, a BLOB, another
# encoding): the decodable rest is kept with U+FFFD in place of each bad byte, and normalise
# quarantines any value holding U+FFFD as `undecodable`. The run never stops on it, and no
# message ever carries the bytes (sqlite3's own decode error quotes the whole raw value).
REPLACEMENT = "\ufffd"
_decode_text = functools.partial(str, encoding="utf-8", errors="replace")  # C-level: no Python frame per value
_INT64_LIMIT = 2.0 ** 63


def _text_of(value) -> str | None:
    """One DB value as text: bytes decoded (U+FFFD for bad bytes), integral REALs as integers."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode_text(bytes(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.1e17 stored as REAL -> '110000000000000000', never '1.1e+17'
    return str(value)


def _floats_as_text(arr: pa.Array) -> pa.Array:
    """Doubles as text: integral ones as integer text (a REAL 1.0 code is '1'), others as stored."""
    values = arr.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < _INT64_LIMIT)
    if not integral.any():
        return arr.cast(pa.string())
    as_int = pc.cast(pc.if_else(pa.array(integral), arr, 0.0), pa.int64()).cast(pa.string())
    return pc.if_else(pa.array(integral & arr.is_valid().to_numpy(zero_copy_only=False)), as_int,
                      arr.cast(pa.string()))


def _as_text(values: list) -> pa.Array:
    """One column of DB values as Arrow strings, exactly as stored (no float-ification of ints;
    integral REALs as integer text; bytes decoded as UTF-8, bad bytes as U+FFFD)."""
    return _text_column(values)[0]


def _text_column(values: list) -> tuple[pa.Array, bool]:
    """(_as_text(values), whether the values already were those str objects and NULLs)."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed types in a SQLite column
        return pa.array([_text_of(v) for v in values], pa.string()), False
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.cast(pa.string()), True
    if pa.types.is_null(arr.type):
        return pa.nulls(len(values), pa.string()), True
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):  # BLOBs
        return pa.array([_text_of(v) for v in values], pa.string()), False
    if pa.types.is_floating(arr.type):
        return _floats_as_text(arr), False
    if pa.types.is_timestamp(arr.type):
        # "2024-01-02 03:04:05" rather than Arrow's microsecond padding.
        return pa.array([None if v is None else v.isoformat(sep=" ") for v in values], pa.string()), False
    return arr.cast(pa.string()), False


def row_hashes(frame: pd.DataFrame) -> pd.Series:
    """A stable per-row digest over the values (change detection between snapshots)."""
    return pd.util.hash_pandas_object(frame, index=False).map("{:016x}".format)


def _chunks(engine: sa.Engine, source: SourceConfig, watermark: str | None) -> Iterator[tuple[list[str], list]]:
    sql, params = build_query(engine, source, watermark)
    with engine.connect() as conn:
        _decode_sqlite_text(conn)
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, sqlite3.Connection):
            # SQLite straight through its DB-API cursor (the query's :name parameters are
            # sqlite3's own style): SQLAlchemy's per-row Result wrapping cost a quarter of the read.
            cursor = dbapi.cursor()
            try:
                cursor.execute(sql, params)
                names = [d[0] for d in cursor.description]
                while rows := cursor.fetchmany(CHUNK_ROWS):
                    yield names, rows
            finally:
                cursor.close()
            return
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(sa.text(sql), params)
        names = list(result.keys())
        while rows := result.fetchmany(CHUNK_ROWS):
            yield names, rows


def _decode_sqlite_text(conn: sa.Connection) -> None:
    """SQLite TEXT is not checked to be UTF-8: decode it leniently (bad bytes -> U+FFFD) instead
    of letting sqlite3 raise mid-stream, with the raw value in its message."""
    dbapi = conn.connection.dbapi_connection
    if isinstance(dbapi, sqlite3.Connection):
        dbapi.text_factory = _decode_text


def _chunk_table(source: SourceConfig, names: list[str], rows: list) -> pa.Table:
    """One chunk as Arrow text columns plus the record id and the row hash (the same digest as
    row_hashes: pandas' hash_pandas_object over the text values). A column whose values already
    are str (or NULL) is hashed as the very objects the driver returned, not converted back from
    Arrow; every column is hashed value by value (no factorisation), then combined as pandas does."""
    from pandas.core.util.hashing import combine_hash_arrays

    columns = list(zip(*rows))
    arrays, hashes = {}, []
    for name, col in zip(names, columns):
        values = list(col)
        arr, as_is = _text_column(values)
        arrays[name] = arr
        hashes.append(_hash_text(np.array(values, dtype=object) if as_is else arr.to_numpy(zero_copy_only=False),
                                 arr))
    out = dict(arrays)
    out[RECORD_ID] = canonical_keys(arrays[source.primary_key])
    out[ROW_HASH] = _hex64(combine_hash_arrays(iter(hashes), len(hashes)) if hashes
                          else np.zeros(len(rows), dtype=np.uint64))
    return pa.table(out)


_NULL_HASH = np.iinfo(np.uint64).max   # what hash_pandas_object gives a NULL (categorised hashing)


def _hash_text(values: np.ndarray, arr: pa.Array) -> np.ndarray:
    """pd.util.hash_array(values) without its factorisation: the same digests (NULL -> u8max)."""
    hashed = pd.util.hash_array(values, categorize=False)
    if arr.null_count:
        hashed[arr.is_null().to_numpy(zero_copy_only=False)] = _NULL_HASH
    return hashed


def _hex64(hashes: np.ndarray) -> pa.Array:
    """uint64 hashes as 16-digit lowercase hex text, as '{:016x}'.format gives them."""
    digits = hashes.astype(">u8").tobytes().hex()
    return pa.array([digits[i:i + 16] for i in range(0, len(digits), 16)], pa.string())


@dataclass
class ExtractResult:
    source: str
    path: str
    rows: int
    watermark: str | None

    def as_xcom(self) -> dict:
        return {"source": self.source, "raw_path": self.path, "rows": self.rows, "watermark": self.watermark}


def extract_source(source: SourceConfig, out_path: str, watermark: str | None = None) -> ExtractResult:
    """Stream one source table into a Parquet file; returns the rows written and the new watermark."""
    engine = source_engine(source.connection)
    writer = fh = None
    rows = 0
    new_watermark = watermark
    inc = _incremental_column(source)
    try:
        for names, chunk in _chunks(engine, source, watermark):
            missing = [c for c in source.columns if c not in names]
            if missing:
                raise SourceUnavailableError(f"source {source.name}: table {source.table} has no column {missing[0]}")
            table = _chunk_table(source, names, chunk)
            if writer is None:
                writer, fh = open_writer(out_path, table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += table.num_rows
            if inc:
                top = pc.max(table[inc[0]]).as_py()
                new_watermark = max(filter(None, [new_watermark, top]), default=None)
    except sa.exc.SQLAlchemyError as exc:
        raise SourceUnavailableError(
            f"source {source.name}: cannot read table {source.table} ({type(exc).__name__}: {_redact(str(exc))})"
        ) from None
    finally:
        if writer is not None:
            writer.close()
            fh.close()
        engine.dispose()
    if writer is None:  # empty result: still write the file with the mapped columns
        _write_empty(source, out_path)
    return ExtractResult(source.name, out_path, rows, new_watermark)


def _write_empty(source: SourceConfig, out_path: str) -> None:
    names = list(dict.fromkeys([source.primary_key, *source.columns, *_incremental_column(source), RECORD_ID, ROW_HASH]))
    schema = pa.schema([(n, pa.string()) for n in names])
    writer, fh = open_writer(out_path, schema)
    writer.close()
    fh.close()


def _redact(message: str) -> str:
    """Driver messages can echo SQL parameters and passwords; keep the first line, without URLs."""
    first = message.splitlines()[0] if message else ""
    return re.sub(r"\w+://\S+", "<url>", first)[:300]
