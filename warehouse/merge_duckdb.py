"""Merging staged Arrow rows into a DuckDB warehouse table (DELETE … USING + INSERT … SELECT)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from govdata.warehouse.connections import _DB, _DuckDB
from govdata.warehouse.schema import qualified, table_for
from govdata.warehouse.staging import StagedTable, _delete_record_scope


def _register_staged(db: _DuckDB, arrow: pa.Table | StagedTable, columns: list[str]) -> None:
    """The rows to load as the view _stg_arrow. A staged table is a scanner of `columns` only:
    each statement reading the view reads those columns of the files again, a row group at a
    time (StagedTable.scanner), so the key checks do not decode every column. Arrow is in memory."""
    db.con.register("_stg_arrow", arrow.scanner(columns) if isinstance(arrow, StagedTable) else arrow)


def _refuse_duplicate_keys(db: _DB, name: str, src: str, keys: tuple[str, ...]) -> None:
    """Keys must be unique within a load (PostgreSQL's ON CONFLICT refuses them too; DuckDB
    tables carry no PRIMARY KEY, so this check keeps them unique). The 64-bit key hashes are
    sorted in NumPy and neighbours compared (3x cheaper than DuckDB's count(DISTINCT …), which
    itself is 2-3x cheaper than grouping by the key strings); only when two hashes are equal (a
    duplicate, or a hash collision) is the exact GROUP BY run."""
    key_list = ", ".join(keys)
    hashes = db.con.execute(f"SELECT hash({key_list}) AS h FROM {src}").fetchnumpy()["h"]
    hashes = np.sort(np.asarray(hashes, dtype=np.uint64))
    if not (hashes[1:] == hashes[:-1]).any():
        return
    dup = db.fetchall(f"SELECT count(*) FROM (SELECT {key_list} FROM {src} GROUP BY {key_list} "
                      f"HAVING count(*) > 1) d")[0][0]
    if dup:
        raise ValueError(f"table {name}: {dup} duplicate key(s) on ({key_list}) in the rows to load")


def _merge_duckdb(db: _DuckDB, name: str, arrow: pa.Table | StagedTable, scope: pa.Table | None = None) -> None:
    """Rows in memory (Arrow) or staged in the lake (StagedTable: DuckDB scans the decrypted
    files row group by row group, never the whole table in Python): the key checks and deletes
    read the key columns, the insert every column."""
    table = table_for(name)
    target, (mode, keys), keep = qualified(table), table.info["merge"], table.info["keep"]
    cols = [c.name for c in table.columns]
    col_list = ", ".join(cols)
    _register_staged(db, arrow, list(dict.fromkeys([*keys, *(c.name for c in table.primary_key.columns)])))
    try:
        src = "_stg_arrow"
        target_rows = db.fetchall(f"SELECT count(*) FROM {target}")[0][0]
        keep = keep if target_rows else ()   # an empty target has no row to keep columns from
        if keep:
            _register_staged(db, arrow, cols)
            # Columns an upsert must not overwrite come from the existing row.
            on = " AND ".join(f"o.{k} = s.{k}" for k in keys)
            sel = ", ".join(f"COALESCE(o.{c}, s.{c}) AS {c}" if c in keep else f"s.{c}" for c in cols)
            db.con.execute(f"CREATE OR REPLACE TEMP TABLE _stg_keep AS SELECT {sel} FROM _stg_arrow s "
                           f"LEFT JOIN {target} o ON {on}")
            src = "_stg_keep"
        if mode == "all":
            _refuse_duplicate_keys(db, name, "_stg_arrow", tuple(c.name for c in table.primary_key.columns))
            db.con.execute(f"DELETE FROM {target}")
        elif mode == "record":
            db.con.register("_stg_scope", scope)
            try:
                _delete_record_scope(db, target, "_stg_scope")
            finally:
                db.con.unregister("_stg_scope")
        elif mode == "key":
            _refuse_duplicate_keys(db, name, "_stg_arrow", keys)
            if target_rows and _covers_target(db, target, src, keys, target_rows, arrow.num_rows):
                # Every existing row is replaced: dropping all row groups beats a join-delete.
                db.con.execute(f"DELETE FROM {target}")
            elif target_rows:  # first loads skip the join
                on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
                db.con.execute(f"DELETE FROM {target} USING {src} s WHERE {on}")
        else:
            on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
            db.con.execute(f"DELETE FROM {target} USING (SELECT DISTINCT {', '.join(keys)} FROM {src}) s WHERE {on}")
        if src == "_stg_arrow":
            _register_staged(db, arrow, cols)
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {src}")
        if keep:
            db.con.execute("DROP TABLE _stg_keep")
    finally:
        db.con.unregister("_stg_arrow")


def _covers_target(db: _DB, target: str, src: str, keys: tuple[str, ...], target_rows: int, n_rows: int) -> bool:
    """Whether every row of the target has its key among the (unique) keys to load — then the
    merge is a full replace. Only asked when it can be true (the target is not bigger)."""
    if target_rows > n_rows or n_rows < FULL_REPLACE_MIN_ROWS:
        return False
    on = " AND ".join(f"s.{k} = t.{k}" for k in keys)
    return not db.fetchall(f"SELECT EXISTS (SELECT 1 FROM {target} t WHERE NOT EXISTS "
                           f"(SELECT 1 FROM {src} s WHERE {on}))")[0][0]


FULL_REPLACE_MIN_ROWS = 10_000


__all__ = ["FULL_REPLACE_MIN_ROWS"]
