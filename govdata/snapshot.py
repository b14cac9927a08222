"""The current standardised state of each source, carried from run to run.

Linking and loading need every live record of a source, while an incremental extract brings
only the changed rows. Each run writes the source's merged state (`{run}/current/{source}`);
its path is kept in etl_state, which only advances with a successful load, so a failed run
never becomes the base of the next one.

Out of core (issue 14): the previous state, this run's standardised rows and the extracted ids
are read in batches (`Rows`); what is compared across them — record ids, one hash per row, row
positions — goes into DuckDB, which spills to a private temporary folder beyond its memory
limit, so no task holds a source's rows whole. The current state is then written batch by batch
(`current_tables`), or copied as a file when this run's rows are the whole state.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

KEY = "source_record_id"
EXTRACTED_KEY = "_source_record_id"   # the raw extract's record id (govdata.extract.RECORD_ID)
# What DuckDB may hold of keys and row hashes before it spills to disk (GOVDATA_SNAPSHOT_MEMORY):
# a 5M-row source against a 5M-row previous state fits (the snapshot task peaks at 1.5 GB).
SNAPSHOT_MEMORY = "1GB"


@dataclass
class Rows:
    """A table read in batches: a lake file (`file_rows`, never read whole) or an Arrow table."""

    schema: pa.Schema
    num_rows: int
    read: Callable[[list[str] | None], Iterator[pa.Table]]   # the rows in order, in tables of a batch


def file_rows(path: str, batch_rows: int) -> Rows:
    from govdata.lake import iter_tables, parquet_rows, parquet_schema

    return Rows(parquet_schema(path), parquet_rows(path), lambda columns=None: iter_tables(path, batch_rows, columns))


def table_rows(table: pa.Table | pd.DataFrame, batch_rows: int | None = None) -> Rows:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    step = batch_rows or max(table.num_rows, 1)

    def read(columns: list[str] | None = None) -> Iterator[pa.Table]:
        selected = table.select(columns) if columns is not None else table
        for start in range(0, selected.num_rows, step):
            yield selected.slice(start, step)

    return Rows(table.schema, table.num_rows, read)


@dataclass
class Plan:
    """How this run's state of a source follows from the previous one.

    kept: positions of the previous rows that stay (incremental: not extracted again), followed
    by this run's rows; None when this run's rows are the whole state (a full snapshot, or no
    previous state). deleted: ids of the previous state missing from a full snapshot (deleted at
    the source; incremental extracts cannot see deletions), in the previous state's order.
    changed: ids of this run's rows that are new or whose standardised values differ from the
    previous state (what incremental linking looks at again), in this run's order; a full
    snapshot brings every row, only the ones that really changed count."""

    kept: np.ndarray | None
    deleted: pa.Array
    changed: pa.Array


def plan_snapshot(previous: Rows | None, std: Rows, extracted: Rows, incremental: bool) -> Plan:
    """Plan of the current state from the previous state, this run's standardised rows and the
    extracted ids (every row extracted, standardised or now rejected: `_source_record_id`)."""
    none = pa.array([], pa.string())
    if previous is None or previous.num_rows == 0:
        return Plan(None, none, _ids(std))
    columns = sorted(set(previous.schema.names) & set(std.schema.names))   # values compared as text
    with _duckdb() as con:
        _keyed(con, "prev", previous, columns)
        _keyed(con, "cur", std, columns)
        changed = _column(con.sql("SELECT c.id FROM cur c LEFT JOIN prev p ON p.id = c.id "
                                  "WHERE p.id IS NULL OR p.h <> c.h ORDER BY c.pos").to_arrow_table())
        _register(con, "extracted_in", extracted, [EXTRACTED_KEY])
        con.execute(f'CREATE TABLE ext AS SELECT DISTINCT CAST("{EXTRACTED_KEY}" AS VARCHAR) AS id '
                    f'FROM extracted_in WHERE "{EXTRACTED_KEY}" IS NOT NULL')
        gone = "FROM prev p WHERE NOT EXISTS (SELECT 1 FROM ext e WHERE e.id = p.id) ORDER BY p.pos"
        if incremental:   # previous rows minus every extracted id (changed or now rejected)
            kept = con.sql(f"SELECT p.pos {gone}").to_arrow_table()
            return Plan(_column(kept).to_numpy(zero_copy_only=False).astype(np.int64), none, changed)
        return Plan(None, _column(con.sql(f"SELECT p.id {gone}").to_arrow_table()), changed)


def current_tables(plan: Plan, previous: Rows | None, std: Rows) -> tuple[pa.Schema, Iterator[pa.Table]]:
    """The current state's schema and rows (the kept previous rows, then this run's). Columns:
    those of the parts that have rows (previous first; all-NULL columns take the other part's
    type), as pandas' concatenation of the two gave them."""
    if plan.kept is None:
        return std.schema, std.read(None)
    parts = [p for p, n in ((previous, len(plan.kept)), (std, std.num_rows)) if n]
    if not parts:
        return std.schema, iter(())
    schema = _union_schema([p.schema for p in parts], metadata=(std if std.num_rows else previous).schema.metadata)

    def tables() -> Iterator[pa.Table]:
        if len(plan.kept):
            start = 0
            for table in previous.read(None):
                stop = start + table.num_rows
                lo, hi = np.searchsorted(plan.kept, [start, stop])
                if hi > lo:
                    yield _conform(table.take(pa.array(plan.kept[lo:hi] - start)), schema)
                start = stop
        for table in std.read(None):
            yield _conform(table, schema)

    return schema, tables()


def advance_snapshot(previous_path: str | None, std_path: str, raw_path: str, incremental: bool,
                     current_path: str, deleted_path: str, changed_path: str, batch_rows: int) -> dict:
    """This run's current/, deleted/ and changed/ files of a source, streamed: {rows, deleted,
    changed} counts. When this run's rows are the whole state the standardised file is copied."""
    from govdata.lake import TableWriter, copy_file

    previous = file_rows(previous_path, batch_rows) if previous_path else None
    std = file_rows(std_path, batch_rows)
    plan = plan_snapshot(previous, std, file_rows(raw_path, batch_rows), incremental)
    if plan.kept is None:
        copy_file(std_path, current_path)
        rows = std.num_rows
    else:
        schema, tables = current_tables(plan, previous, std)
        with TableWriter(current_path, schema) as writer:
            for table in tables:
                writer.write(table)
        rows = writer.rows
    _write_ids(plan.deleted, deleted_path, batch_rows)
    _write_ids(plan.changed, changed_path, batch_rows)
    return {"rows": rows, "deleted": len(plan.deleted), "changed": len(plan.changed)}


# In memory (tests, small frames): the same plan on frames ------------------------------------
def merge_snapshot(previous: pd.DataFrame | None, changed: pd.DataFrame, extracted_ids: pd.Series,
                   incremental: bool) -> tuple[pd.DataFrame, pd.Series]:
    """(current state, ids deleted at the source) of frames: plan_snapshot and current_tables.

    Incremental: previous rows minus every extracted id (changed or now rejected) plus the
    changed rows; deletions cannot be seen. Full snapshot: the changed rows are the whole
    state, and ids of the previous state missing from the extract were deleted at the source.
    """
    prev = table_rows(previous) if previous is not None else None
    std = table_rows(changed)
    ids = pa.table({EXTRACTED_KEY: pa.array(extracted_ids.astype("string").to_numpy(dtype=object, na_value=None),
                                            pa.string())})
    plan = plan_snapshot(prev, std, table_rows(ids), incremental)
    if plan.kept is None:
        current = changed.reset_index(drop=True)
    else:
        schema, tables = current_tables(plan, prev, std)
        current = pa.Table.from_batches([b for t in tables for b in t.to_batches()], schema=schema).to_pandas()
    return current, _id_series(plan.deleted)


def changed_ids(previous: pd.DataFrame | None, changed: pd.DataFrame) -> pd.Series:
    """Ids of extracted rows that are new or whose standardised values differ from the
    previous state: what incremental linking has to look at again. A full-snapshot extract
    brings every row; only the ones that really changed count."""
    ids = pa.table({EXTRACTED_KEY: pa.array(changed[KEY].astype("string").to_numpy(dtype=object, na_value=None),
                                            pa.string())})
    prev = table_rows(previous) if previous is not None else None
    return _id_series(plan_snapshot(prev, table_rows(changed), table_rows(ids), False).changed)


def deleted_xref_rows(previous_xref: pd.DataFrame | None, source_system: str, deleted: pd.Series,
                      run_id: str) -> pd.DataFrame:
    """The warehouse's xref rows of records deleted at the source, marked (never dropped)."""
    if previous_xref is None or previous_xref.empty or deleted.empty:
        return pd.DataFrame()
    rows = previous_xref[(previous_xref["source_system"] == source_system)
                         & previous_xref[KEY].astype("string").isin(deleted)].copy()
    rows["is_deleted"] = True
    rows["run_id"] = run_id
    return rows


# --- helpers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _duckdb():
    """An in-memory DuckDB that spills to a private temporary folder (0700, removed after)."""
    import shutil
    import tempfile

    import duckdb

    spill = tempfile.mkdtemp(prefix="govdata-snapshot-")
    con = duckdb.connect(config={"memory_limit": os.environ.get("GOVDATA_SNAPSHOT_MEMORY", SNAPSHOT_MEMORY),
                                 "temp_directory": spill, "preserve_insertion_order": False})
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _register(con, name: str, rows: Rows, columns: list[str], positions: bool = False) -> None:
    """rows (those columns, plus `_pos`: each row's position) as a view DuckDB scans once."""
    fields = [rows.schema.field(c).remove_metadata() for c in columns]
    schema = pa.schema(fields + ([pa.field("_pos", pa.int64())] if positions else []))

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        for table in rows.read(columns):
            arrays = [table.column(c) for c in columns]
            if positions:
                arrays.append(pa.array(np.arange(start, start + table.num_rows, dtype=np.int64)))
            start += table.num_rows
            yield from pa.Table.from_arrays(arrays, schema=schema).to_batches()

    con.register(name, pa.RecordBatchReader.from_batches(schema, batches()))


def _keyed(con, name: str, rows: Rows, columns: list[str]) -> None:
    """Table `name` (pos, id, h): each row's position, record id and one hash of its values in
    `columns`, each as text (NULL apart), so that a type that changed between runs compares by value."""
    _register(con, f"{name}_in", rows, columns if KEY in columns else [KEY, *columns], positions=True)
    text = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in columns)
    con.execute(f'CREATE TABLE {name} AS SELECT _pos AS pos, CAST("{KEY}" AS VARCHAR) AS id, hash({text}) AS h '
                f"FROM {name}_in")
    con.unregister(f"{name}_in")


def _ids(rows: Rows) -> pa.Array:
    chunks = [t.column(KEY).cast(pa.string()) for t in rows.read([KEY])]
    return pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())


def _column(table: pa.Table | pa.RecordBatchReader) -> pa.Array:
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    return table.column(0).combine_chunks()


def _write_ids(ids: pa.Array, path: str, batch_rows: int) -> str:
    """An id file (deleted/, changed/) written from Arrow in batches, in the schema a pandas
    string Series gives it (read back as string dtype)."""
    from govdata.lake import TableWriter

    schema = pa.Table.from_pandas(pd.Series([], dtype="string", name=KEY).to_frame(), preserve_index=False).schema
    with TableWriter(path, schema) as writer:
        for start in range(0, len(ids), batch_rows):
            writer.write(pa.table({KEY: ids.slice(start, batch_rows).cast(pa.string())}))
    return path


def _id_series(ids: pa.Array) -> pd.Series:
    return pd.Series(ids.cast(pa.string()).to_pandas(), dtype="string", name=KEY)


def _union_schema(schemas: list[pa.Schema], metadata) -> pa.Schema:
    """The parts' columns in order of appearance; a column of type null in one part takes the
    other's type, other types are promoted (int32 → int64, string → large_string)."""
    try:
        unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"the previous snapshot's columns do not fit this run's ({exc}); run with full_refresh") \
            from None
    return unified.with_metadata(metadata) if metadata else unified


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """table in schema's columns and types (a column it lacks: NULL)."""
    arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
