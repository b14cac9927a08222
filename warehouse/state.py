"""Reads of the warehouse (read_table, read_arrow_table) and extraction state per source (etl_state): the watermark plus free-form state (row hashes,
snapshot info) as JSON. The pipeline also writes etl_state rows inside the load transaction, so
a watermark only advances with a successful load."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
from govdata.warehouse.connections import backend_of, connect, duckdb_paths, sql_text
from govdata.warehouse.ddl import _missing_tables
from govdata.warehouse.schema import VAULT_SCHEMA, arrow_schema, qualified, table_for


def read_state(url: str, source_system: str) -> dict | None:
    """{'watermark': ..., 'rows_extracted': ..., 'run_id': ..., **state} or None (never extracted)."""
    frame = read_table(url, "etl_state")
    if frame is None:
        return None
    rows = frame[frame["source_system"] == source_system]
    if rows.empty:
        return None
    row = rows.iloc[0]
    state = json.loads(row["state"]) if isinstance(row["state"], str) and row["state"] else {}
    rows_extracted = None if pd.isna(row["rows_extracted"]) else int(row["rows_extracted"])
    watermark = None if pd.isna(row["watermark"]) else row["watermark"]
    return {**state, "watermark": watermark, "rows_extracted": rows_extracted, "run_id": row["run_id"]}


def write_state(url: str, source_system: str, state: dict, run_id: str) -> None:
    """Replace the state of one source; `watermark` and `rows_extracted` get their own columns."""
    rest = {k: v for k, v in state.items() if k not in ("watermark", "rows_extracted", "run_id")}
    watermark = state.get("watermark")
    row = pd.DataFrame({
        "source_system": [source_system],
        "watermark": [None if watermark is None else str(watermark)],
        "rows_extracted": pd.array([state.get("rows_extracted")], dtype="Int64"),
        "state": [json.dumps(rest, ensure_ascii=False, sort_keys=True, default=str)],
        "run_id": [run_id],
        "updated_at": [datetime.now(UTC).replace(tzinfo=None)],
    })
    from govdata.warehouse.load import load_tables

    load_tables(url, {"etl_state": row}, run_id)


def read_table(url: str, name: str) -> pd.DataFrame | None:
    """A whole warehouse table as a DataFrame; None when the warehouse or the table does not exist."""
    arrow = read_arrow_table(url, name)
    return None if arrow is None else arrow.to_pandas()


def read_arrow_table(url: str, name: str, columns: list[str] | None = None, where: str | None = None
                     ) -> pa.Table | None:
    """A warehouse table (or some of its columns, of the rows `where` — SQL both backends
    read — holds) as an Arrow table; None when the warehouse or the table does not exist."""
    table = table_for(name)
    if backend_of(url) == "duckdb" and not Path(duckdb_paths(url)[0]).exists():
        return None
    with connect(url, vault=table.schema == VAULT_SCHEMA, read_only=True) as db:
        if qualified(table) in _missing_tables(db):
            return None
        return _typed(db.fetch_arrow(f"SELECT {', '.join(columns) if columns else '*'} FROM {qualified(table)}"
                                     + (f" WHERE {where}" if where else "")), table)


EXPORT_BATCH_ROWS = 200_000   # PostgreSQL rows fetched (as Python values) at a time while exporting


def export_parquet(url: str, name: str, path: str, columns: list[str] | None = None, where: str | None = None
                   ) -> str | None:
    """A warehouse table (its `columns`, the rows `where` holds) written to the Parquet file
    `path` without holding it in memory: DuckDB copies it itself, PostgreSQL rows come through a
    server-side cursor a batch at a time. `path`, or None when the table does not exist or is
    empty (nothing written)."""
    table = table_for(name)
    if backend_of(url) == "duckdb" and not Path(duckdb_paths(url)[0]).exists():
        return None
    select = (f"SELECT {', '.join(columns) if columns else '*'} FROM {qualified(table)}"
              + (f" WHERE {where}" if where else ""))
    with connect(url, vault=table.schema == VAULT_SCHEMA, read_only=True) as db:
        if qualified(table) in _missing_tables(db):
            return None
        rows = _copy_duckdb(db, select, path) if db.backend == "duckdb" else _copy_postgres(db, select, path, table)
    if not rows:
        Path(path).unlink(missing_ok=True)
        return None
    return path


def _copy_duckdb(db, select: str, path: str) -> int:
    db.execute("SET enable_progress_bar = false")   # a long copy would draw one on the task's stdout
    return db.fetchall(f"COPY ({select}) TO {sql_text(path)} (FORMAT parquet, COMPRESSION zstd)")[0][0]   # rows


def _copy_postgres(db, select: str, path: str, table) -> int:
    out = ParquetAppender(path)
    # named: a server-side cursor, which lives in a transaction
    with db.con.transaction(), db.con.cursor(name="govdata_export") as cur:
        cur.itersize = EXPORT_BATCH_ROWS
        cur.execute(select)
        while batch := cur.fetchmany(EXPORT_BATCH_ROWS):
            names = [d.name for d in cur.description]
            out.write(_typed(pa.Table.from_pandas(pd.DataFrame.from_records(batch, columns=names),
                                                  preserve_index=False), table))
    out.close()
    return out.rows


class ParquetAppender:
    """Tables appended to one Parquet file, which the first opens with its schema (the later
    ones are cast to it: a batch whose column is all NULL reads as another type)."""

    def __init__(self, path: str):
        self.path, self.rows, self._writer = path, 0, None

    def write(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        self._writer = self._writer or pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema))
        self.rows += table.num_rows

    def close(self) -> bool:
        """Whether anything was written."""
        if self._writer is not None:
            self._writer.close()
        return self._writer is not None


def _typed(result: pa.Table, table) -> pa.Table:
    """The warehouse's column types on a fetched table. PostgreSQL rows come through pandas,
    which types an empty or all-NULL column as `null`: an empty previous state must read the
    same as none (fill_null on a null-typed column fails)."""
    schema = arrow_schema(table)
    for i, field in enumerate(result.schema):
        want = schema.field(field.name).type if field.name in schema.names else None
        if want is None or field.type == want:
            continue
        try:
            column = result.column(i).cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue   # kept as read (e.g. text the schema calls JSON); callers convert
        result = result.set_column(i, pa.field(field.name, want), column)
    return result


__all__ = ["ParquetAppender", "export_parquet", "read_arrow_table", "read_state", "read_table", "write_state"]
