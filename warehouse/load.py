"""Idempotent, all-or-nothing loads into the warehouse; one code path for DuckDB and PostgreSQL.

The backend is chosen by the SQLAlchemy URL (GOVDATA_WAREHOUSE_URL, default a DuckDB file):
- DuckDB: Arrow tables are registered and merged with DELETE … USING + INSERT … SELECT in one
  transaction. The vault is a separate DuckDB file (mode 0600) attached only by the loader and
  steward connections. A DuckDB transaction writes one database file only, so a load that
  changes the vault writes a copy of it (`<vault>.pending`), commits the warehouse transaction
  (which records the load in vault_commit), then renames the copy over the vault; a pending copy
  left by a crash is promoted if its load is in vault_commit, else deleted, by the next
  connection that attaches the vault (see "one commit" in docs/CONTRACTS.md).
- PostgreSQL (psycopg 3): COPY into temporary staging tables, then INSERT … ON CONFLICT DO UPDATE
  (or scope DELETE + INSERT), all tables — vault schema included — in one transaction.

The modules: connections.py (connect, backends), ddl.py (tables, roles, grants), staging.py
(frames → Arrow), merge_duckdb.py / merge_postgres.py (one table's merge per backend), commit.py
(the DuckDB vault's one-commit protocol), state.py (reads), mart_views.py (marts refresh).
"""
from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
from govdata.warehouse.commit import (
    PENDING_SUFFIX,
    _discard,
    _promote,
    recover_pending_vault,
    vault_lock,
)
from govdata.warehouse.connections import (
    _DB,
    analyst_connect,
    backend_of,
    connect,
    duckdb_paths,
    pg_conninfo,
)
from govdata.warehouse.ddl import ROLES, _missing_tables, init_warehouse
from govdata.warehouse.mart_views import MARTS_DIR, mart_sql, refresh_marts
from govdata.warehouse.merge_duckdb import _merge_duckdb
from govdata.warehouse.merge_postgres import _merge_postgres, _tune_postgres
from govdata.warehouse.schema import (
    VAULT_SCHEMA,
    analyst_table_names,
    metadata,
    table_for,
)
from govdata.warehouse.staging import StagedTable, record_scope, to_arrow
from govdata.warehouse.state import read_arrow_table, read_table

log = logging.getLogger(__name__)


class LoadError(RuntimeError):
    """A load was rolled back; the message names the table."""


def _merge(db: _DB, name: str, arrow: pa.Table, scope: pa.Table | None = None) -> None:
    try:
        (_merge_duckdb if db.backend == "duckdb" else _merge_postgres)(db, name, arrow, scope)
    except Exception as exc:
        raise LoadError(f"loading table {name} failed, nothing was loaded: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:300]}") from exc


def load_tables(url: str, tables: dict[str, pd.DataFrame | pa.Table | StagedTable], run_id: str, *,
                scopes: dict[str, pd.DataFrame | pa.Table] | None = None) -> dict[str, int]:
    """Merge every frame into its warehouse table in one commit (warehouse and vault together);
    returns rows per table. Loading the same tables twice leaves the warehouse identical; a
    failure loads nothing. `scopes` gives the record scope of `record` tables (quarantine, see
    record_scope). A table may be a DataFrame, an Arrow table with the warehouse types
    (staging.to_arrow) or a StagedTable (lake Parquet, streamed into the warehouse)."""
    arrows = {name: frame if isinstance(frame, (pa.Table, StagedTable)) else to_arrow(name, frame)
              for name, frame in tables.items() if frame is not None}
    scoped = {name: record_scope((scopes or {}).get(name), arrow) for name, arrow in arrows.items()
              if table_for(name).info["merge"][0] == "record"}
    vault_names = [n for n in arrows if table_for(n).schema == VAULT_SCHEMA]
    main_names = [t.name for t in metadata.sorted_tables if t.name in arrows and t.name not in vault_names]
    started = time.perf_counter()

    def merge_main(db: _DB) -> None:
        for name in main_names:
            _merge(db, name, arrows[name], scoped.get(name))
        _drop_orphaned_masters(db, main_names)
        _count_quarantine(db, main_names)

    if backend_of(url) == "duckdb":
        _load_duckdb(url, arrows, vault_names, merge_main, run_id)
    else:
        with connect(url) as db:
            if _missing_tables(db):
                db.close()
                init_warehouse(url)
                return load_tables(url, tables, run_id, scopes=scopes)
            with db.transaction():   # the vault schema is in the same database: one transaction
                _tune_postgres(db)
                for name in vault_names:
                    _merge(db, name, arrows[name])
                merge_main(db)
    log.info("run %s: loaded %d tables, %d rows in %.2f s", run_id, len(arrows),
             sum(a.num_rows for a in arrows.values()), time.perf_counter() - started)
    return {name: arrows[name].num_rows for name in vault_names + main_names}


def _load_duckdb(url: str, arrows: dict[str, pa.Table | StagedTable], vault_names: list[str], merge_main, run_id: str) -> None:
    """One commit on DuckDB. Without vault changes: one transaction. With them: the vault's
    changes go into a copy of the vault file (`<vault>.pending`, 0600, recording its load id in
    vault.vault_load), the warehouse transaction records the load id in vault_commit, and only
    then is the copy renamed over the vault. A crash before the warehouse commit leaves a copy
    that the next connection discards; after it, one that it promotes."""
    import uuid

    from govdata.failpoints import failpoint

    _, vault_path = duckdb_paths(url)
    pending = vault_path + PENDING_SUFFIX
    with vault_lock(vault_path):
        with connect(url, vault=True) as db:   # recovers a pending copy left by a crash
            missing = _missing_tables(db)
            if vault_names and not missing:
                db.execute(f"CHECKPOINT {VAULT_SCHEMA}")   # the file alone holds the vault (no WAL)
        if missing:
            init_warehouse(url)
        with connect(url) as db:
            # No reader may rely on a table's row order (PostgreSQL keeps none either), and
            # keeping it makes DuckDB's parallel inserts leave row groups that the checkpoint
            # rewrites: at 1M persons, the commit's checkpoint took 6-7 s, now under 1 s.
            db.execute("SET preserve_insertion_order = false")
            if not vault_names:
                with db.transaction():
                    merge_main(db)
                return
            load_id = uuid.uuid4().hex
            _copy_private(vault_path, pending)
            try:
                db._attach_vault(pending)
                with db.transaction():
                    for name in vault_names:
                        _merge(db, name, arrows[name])
                    db.execute(f"DELETE FROM {VAULT_SCHEMA}.vault_load")
                    db.execute(f"INSERT INTO {VAULT_SCHEMA}.vault_load VALUES (?, ?)", (load_id, run_id))
                db.execute(f"CHECKPOINT {VAULT_SCHEMA}")
                db.execute(f"DETACH {VAULT_SCHEMA}")
                failpoint("load_vault_written")
                with db.transaction():
                    merge_main(db)
                    db.execute("INSERT INTO vault_commit VALUES (?, ?, ?)",
                               (load_id, run_id, datetime.now(UTC).replace(tzinfo=None)))
            except BaseException:
                if VAULT_SCHEMA in {r[0] for r in db.fetchall("SELECT database_name FROM duckdb_databases()")}:
                    db.execute(f"DETACH {VAULT_SCHEMA}")
                _discard(pending)
                raise
        failpoint("load_warehouse_committed")
        _promote(pending, vault_path)


def _copy_private(source: str, target: str) -> None:
    """Copy a file to a new file created with mode 0600."""
    import shutil

    _discard(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 22)


def _count_quarantine(db: _DB, loaded: list[str]) -> None:
    """dim_source's quarantine figures from the quarantine table as it stands after the load
    (it holds every live record's rows, not only those this run normalised)."""
    if "dim_source" not in loaded and "quarantine" not in loaded:
        return
    db.execute("UPDATE dim_source SET "
               "rejected_rows = (SELECT count(DISTINCT q.source_record_id) FROM quarantine q "
               "WHERE q.source_system = dim_source.source_system AND q.row_rejected), "
               "quarantined_values = (SELECT count(*) FROM quarantine q "
               "WHERE q.source_system = dim_source.source_system AND q.row_rejected IS NOT TRUE)")


def _drop_orphaned_masters(db: _DB, loaded: list[str]) -> None:
    """A golden record no source record points to any more (its records were re-linked to
    another master id, see master_id_history) leaves dim_person / dim_enterprise."""
    for dim, xref, id_col in (("dim_person", "xref_person", "person_id"),
                              ("dim_enterprise", "xref_enterprise", "enterprise_id")):
        if dim in loaded and xref in loaded:
            db.execute(f"DELETE FROM {dim} WHERE NOT EXISTS "
                       f"(SELECT 1 FROM {xref} x WHERE x.{id_col} = {dim}.{id_col})")


__all__ = [
    "MARTS_DIR",
    "PENDING_SUFFIX",
    "ROLES",
    "LoadError",
    "analyst_connect",
    "analyst_table_names",
    "backend_of",
    "connect",
    "duckdb_paths",
    "init_warehouse",
    "load_tables",
    "mart_sql",
    "pg_conninfo",
    "read_arrow_table",
    "read_table",
    "record_scope",
    "recover_pending_vault",
    "refresh_marts",
    "to_arrow",
    "vault_lock",
]
