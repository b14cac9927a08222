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
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
    with open_load(url, run_id, scopes=scopes) as load:
        for name, frame in tables.items():
            load.add(name, frame)
        return load.commit()


@contextmanager
def open_load(url: str, run_id: str, *, scopes: dict[str, pd.DataFrame | pa.Table] | None = None,
              yield_cpu: bool = False) -> Iterator[WarehouseLoad]:
    """A load whose tables are handed over one by one as each is complete (WarehouseLoad.add),
    then committed together (WarehouseLoad.commit). Leaving the block without commit, or with an
    exception, loads nothing. `yield_cpu` (DuckDB): the merges run at a lower CPU priority
    (nice), for a caller whose tables are still being built by other processes: those get the
    cores first and the merges take what is left; alone, the merges run at full speed."""
    load = WarehouseLoad(url, run_id, scopes, yield_cpu)
    try:
        yield load
    finally:
        load.close()


_COMMIT, _ABORT = object(), object()
MERGE_NICENESS = 10   # yield_cpu: the merges' niceness (0 normal, 19 lowest)


class WarehouseLoad:
    """One load in progress. DuckDB: each table is merged on a background thread as soon as it is
    added (DuckDB works without the GIL), inside the open warehouse and vault transactions, while
    the caller builds the next table; commit runs the one-commit protocol (_run_duckdb_load).
    PostgreSQL: the tables are merged in commit, in one transaction."""

    def __init__(self, url: str, run_id: str, scopes: dict | None, yield_cpu: bool = False):
        self.url, self.run_id, self.scopes, self.yield_cpu = url, run_id, scopes or {}, yield_cpu
        self.rows: dict[str, int] = {}
        self.started = time.perf_counter()
        if backend_of(url) == "duckdb":
            self._queue: queue.SimpleQueue = queue.SimpleQueue()
            self._failure: BaseException | None = None
            self._thread = threading.Thread(target=self._merge_duckdb_tables, name="govdata-load-merge", daemon=True)
            self._thread.start()
        else:
            self._thread, self._tables = None, {}

    def add(self, name: str, frame: pd.DataFrame | pa.Table | StagedTable | None) -> None:
        """Hand over a complete table (None: nothing to load). Raises a merge failure of an
        earlier table at once, so the caller stops building."""
        if frame is None:
            return
        if name in self.rows:
            raise ValueError(f"table {name} was added to this load twice: give each table once, whole")
        arrow = frame if isinstance(frame, (pa.Table, StagedTable)) else to_arrow(name, frame)
        self.rows[name] = arrow.num_rows
        if self._thread is None:
            self._tables[name] = arrow
            return
        self._raise_failure()
        self._queue.put((name, arrow))

    def commit(self) -> dict[str, int]:
        """Commit every added table together; returns rows per table (vault tables first)."""
        if self._thread is None:
            self._commit_postgres()
        else:
            self._queue.put(_COMMIT)
            self._thread.join()
            self._raise_failure()
        log.info("run %s: loaded %d tables, %d rows in %.2f s", self.run_id, len(self.rows),
                 sum(self.rows.values()), time.perf_counter() - self.started)
        order = [t.name for t in metadata.sorted_tables if t.name in self.rows]
        return {name: self.rows[name] for name in sorted(order, key=lambda n: table_for(n).schema != VAULT_SCHEMA)}

    def close(self) -> None:
        """Without a commit: roll back whatever was merged (the merges' thread ends)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_ABORT)
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _scope(self, name: str, arrow) -> pa.Table | None:
        if table_for(name).info["merge"][0] != "record":
            return None
        return record_scope(self.scopes.get(name), arrow)

    # --- PostgreSQL: one transaction, vault schema included -----------------------------------
    def _commit_postgres(self) -> None:
        tables = self._tables
        vault_names = [n for n in tables if table_for(n).schema == VAULT_SCHEMA]
        main_names = [t.name for t in metadata.sorted_tables if t.name in tables and t.name not in vault_names]
        with connect(self.url) as db:
            if _missing_tables(db):
                db.close()
                init_warehouse(self.url)
                return self._commit_postgres()
            with db.transaction():
                _tune_postgres(db)
                for name in vault_names:
                    _merge(db, name, tables[name])
                for name in main_names:
                    _merge(db, name, tables[name], self._scope(name, tables[name]))
                _drop_orphaned_masters(db, main_names)
                _count_quarantine(db, main_names)

    # --- DuckDB: merges on this thread while the caller builds --------------------------------
    def _merge_duckdb_tables(self) -> None:
        try:
            self._run_duckdb_load()
        except BaseException as exc:   # re-raised in the caller's thread, as it was raised here
            self._failure = exc

    def _next_table(self):
        item = self._queue.get()
        if item is _ABORT:
            raise _LoadAborted
        return item

    def _run_duckdb_load(self) -> None:
        """The one commit on DuckDB. The warehouse transaction is open from the first table on;
        the first vault table opens a second one, on a second connection to the same database,
        into a copy of the vault file (`<vault>.pending`, 0600, recording its load id in
        vault.vault_load). At commit the vault's transaction commits into the copy, the warehouse
        transaction records the load id in vault_commit and commits, and only then is the copy
        renamed over the vault. A crash before the warehouse commit leaves a copy that the next
        connection discards; after it, one that it promotes."""
        import uuid

        from govdata.failpoints import failpoint

        _, vault_path = duckdb_paths(self.url)
        pending = vault_path + PENDING_SUFFIX
        if self.yield_cpu and sys.platform.startswith("linux"):
            # Linux: nice applies to this thread only, and to the threads it starts (the database's
            # workers are started by its first connection, below); the caller keeps its priority
            os.nice(MERGE_NICENESS)
        with vault_lock(vault_path):
            with connect(self.url, vault=True) as db:   # recovers a pending copy left by a crash
                missing = _missing_tables(db)
                if not missing:
                    db.execute(f"CHECKPOINT {VAULT_SCHEMA}")   # the file alone holds the vault (no WAL)
            if missing:
                init_warehouse(self.url)
            with connect(self.url) as db:
                # No reader may rely on a table's row order (PostgreSQL keeps none either), and
                # keeping it makes DuckDB's parallel inserts leave row groups that the checkpoint
                # rewrites: at 1M persons, the commit's checkpoint took 6-7 s, now under 1 s.
                db.execute("SET preserve_insertion_order = false")
                vault_db, load_id, merged = None, uuid.uuid4().hex, []
                try:
                    db.execute("BEGIN TRANSACTION")
                    while (item := self._next_table()) is not _COMMIT:
                        name, arrow = item
                        if table_for(name).schema != VAULT_SCHEMA:
                            _merge(db, name, arrow, self._scope(name, arrow))
                            merged.append(name)
                            continue
                        if vault_db is None:
                            _copy_private(vault_path, pending)
                            vault_db = db.sibling()
                            vault_db._attach_vault(pending)
                            vault_db.execute("BEGIN TRANSACTION")
                        _merge(vault_db, name, arrow)
                    _drop_orphaned_masters(db, merged)
                    _count_quarantine(db, merged)
                    if vault_db is not None:
                        vault_db.execute(f"DELETE FROM {VAULT_SCHEMA}.vault_load")
                        vault_db.execute(f"INSERT INTO {VAULT_SCHEMA}.vault_load VALUES (?, ?)", (load_id, self.run_id))
                        vault_db.execute("COMMIT")
                        vault_db.execute(f"CHECKPOINT {VAULT_SCHEMA}")
                        vault_db.execute(f"DETACH {VAULT_SCHEMA}")
                        failpoint("load_vault_written")
                        db.execute("INSERT INTO vault_commit VALUES (?, ?, ?)",
                                   (load_id, self.run_id, datetime.now(UTC).replace(tzinfo=None)))
                    db.execute("COMMIT")
                except BaseException:
                    _roll_back(db, vault_db)
                    if vault_db is not None:
                        _discard(pending)
                    raise
        if vault_db is not None:
            failpoint("load_warehouse_committed")
            _promote(pending, vault_path)


class _LoadAborted(Exception):
    """The caller left the load without committing it."""


def _roll_back(db: _DB, vault_db: _DB | None) -> None:
    """Undo both open transactions and let go of the pending vault copy (its file is discarded)."""
    for con in (vault_db, db):
        if con is not None:
            with suppress(Exception):   # a transaction DuckDB already aborted, or one committed
                con.execute("ROLLBACK")
    if VAULT_SCHEMA in {r[0] for r in db.fetchall("SELECT database_name FROM duckdb_databases()")}:
        db.execute(f"DETACH {VAULT_SCHEMA}")


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
    "open_load",
    "pg_conninfo",
    "read_arrow_table",
    "read_table",
    "record_scope",
    "recover_pending_vault",
    "refresh_marts",
    "to_arrow",
    "vault_lock",
]
