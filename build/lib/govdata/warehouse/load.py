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
"""
from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from govdata.warehouse.schema import (VAULT_SCHEMA, analyst_table_names, arrow_schema, create_ddl, metadata, qualified,
                              table_for)

log = logging.getLogger(__name__)
MARTS_DIR = Path(__file__).parent / "marts"
ROLES = ("govdata_loader", "govdata_steward", "govdata_analyst")
COPY_BATCH_ROWS = 200_000


class LoadError(RuntimeError):
    """A load was rolled back; the message names the table."""


# --- connections ----------------------------------------------------------------------------
def backend_of(url: str) -> str:
    name = sa.engine.make_url(url).get_backend_name()
    if name in ("duckdb", "postgresql"):
        return name
    raise ValueError(f"warehouse URL backend {name!r} is not supported (use duckdb:/// or postgresql+psycopg://)")


def duckdb_paths(url: str) -> tuple[str, str]:
    """(warehouse file, vault file). The vault sits beside the warehouse unless ?vault=PATH is given."""
    u = sa.engine.make_url(url)
    path = u.database or ""
    if not path or path == ":memory:":
        raise ValueError("the DuckDB warehouse must be a file (duckdb:///path/warehouse.duckdb): "
                         "its vault is a second file beside it")
    vault = u.query.get("vault") or str(Path(path).with_suffix("")) + ".vault.duckdb"
    return path, str(vault)


class _DB:
    """A connection with one parameter style (`?`) and a transaction context manager."""

    backend: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...
    def transaction(self): ...
    def close(self) -> None: ...


class _DuckDB(_DB):
    backend = "duckdb"

    def __init__(self, url: str, vault: bool, read_only: bool = False):
        import duckdb

        path, vault_path = duckdb_paths(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(path, read_only=read_only)
        if vault:
            with vault_lock(vault_path):
                recover_pending_vault(self.con, vault_path)
        if vault and read_only:
            if Path(vault_path).exists():
                self.con.execute(f"ATTACH '{vault_path}' AS {VAULT_SCHEMA} (READ_ONLY)")
        elif vault:
            self._attach_vault(vault_path)

    def _attach_vault(self, vault_path: str) -> None:
        # umask makes DuckDB create the file (and its WAL) as 0600 from the first byte on.
        old = os.umask(0o077)
        try:
            self.con.execute(f"ATTACH '{vault_path}' AS {VAULT_SCHEMA}")
        finally:
            os.umask(old)
        os.chmod(vault_path, 0o600)

    def execute(self, sql, params=()):
        self.con.execute(sql, list(params))

    def fetchall(self, sql, params=()):
        return self.con.execute(sql, list(params)).fetchall()

    def fetch_arrow(self, sql: str) -> pa.Table:
        rel = self.con.sql(sql)
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def close(self):
        self.con.close()


class _Postgres(_DB):
    backend = "postgresql"

    def __init__(self, url: str):
        import psycopg

        self.con = psycopg.connect(**pg_conninfo(url), autocommit=True)

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql, params=()):
        self.con.execute(self._sql(sql) if params else sql, list(params) or None)

    def fetchall(self, sql, params=()):
        return self.con.execute(self._sql(sql) if params else sql, list(params) or None).fetchall()

    def fetch_arrow(self, sql: str) -> pa.Table:
        cur = self.con.execute(sql)
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
        return pa.Table.from_pandas(pd.DataFrame.from_records(rows, columns=names), preserve_index=False)

    @contextmanager
    def transaction(self):
        with self.con.transaction():
            yield self

    def close(self):
        self.con.close()


# --- one commit across the DuckDB warehouse and its vault file -------------------------------
PENDING_SUFFIX = ".pending"
_held_locks: dict[str, list] = {}   # vault path -> [open lock file, depth]: re-entrant per process


@contextmanager
def vault_lock(vault_path: str) -> Iterator[None]:
    """An exclusive lock (flock on `<vault>.lock`) held while a pending vault copy is written,
    promoted or discarded, so that no other connection acts on a half-written copy."""
    import fcntl

    held = _held_locks.get(vault_path)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    Path(vault_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(vault_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held_locks[vault_path] = [fd, 1]
        try:
            yield
        finally:
            del _held_locks[vault_path]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _discard(path: str) -> None:
    for p in (path, path + ".wal"):
        if os.path.exists(p):
            os.unlink(p)


def _fsync_dir(path: str) -> None:
    fd = os.open(str(Path(path).parent), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _promote(pending: str, vault_path: str) -> None:
    """The pending copy becomes the vault in one rename (a WAL of the old file cannot be left:
    the copy was taken after a checkpoint and nothing else writes the vault)."""
    with open(pending, "rb") as fh:
        os.fsync(fh.fileno())
    if os.path.exists(vault_path + ".wal"):
        os.unlink(vault_path + ".wal")
    os.replace(pending, vault_path)
    _fsync_dir(vault_path)


def _pending_load_id(pending: str) -> str | None:
    import duckdb

    try:
        with duckdb.connect(pending, read_only=True) as con:
            rows = con.execute("SELECT load_id FROM vault_load").fetchall()
    except duckdb.Error:   # torn or never committed: not a finished copy
        return None
    return rows[0][0] if len(rows) == 1 else None


def recover_pending_vault(con, vault_path: str) -> str | None:
    """A pending vault copy left by a crashed load: promoted when the warehouse committed its
    load (vault_commit), else deleted. Returns 'promoted', 'discarded' or None. Call under
    vault_lock with a connection to the warehouse file (the vault not attached)."""
    pending = vault_path + PENDING_SUFFIX
    if not os.path.exists(pending):
        return None
    load_id = _pending_load_id(pending)
    committed = False
    if load_id is not None:
        has_table = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                                "AND table_name = 'vault_commit'").fetchone()[0]
        committed = bool(has_table) and bool(
            con.execute("SELECT count(*) FROM vault_commit WHERE load_id = ?", [load_id]).fetchone()[0])
    if committed:
        _promote(pending, vault_path)
        log.warning("vault: the pending copy of committed load %s was promoted", load_id)
        return "promoted"
    _discard(pending)
    log.warning("vault: a pending copy of a load that never committed was discarded")
    return "discarded"


def pg_conninfo(url: str) -> dict[str, Any]:
    u = sa.engine.make_url(url)
    info = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    info.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return {k: v for k, v in info.items() if v is not None}


@contextmanager
def connect(url: str, vault: bool = False, read_only: bool = False) -> Iterator[_DB]:
    """Loader/steward connection (`vault=True` attaches the DuckDB vault file)."""
    db: _DB = _DuckDB(url, vault, read_only) if backend_of(url) == "duckdb" else _Postgres(url)
    try:
        yield db
    finally:
        db.close()


def analyst_connect(url: str):
    """A read-only DuckDB connection for analysts: the vault file is never attached."""
    import duckdb

    path, _ = duckdb_paths(url)
    return duckdb.connect(path, read_only=True)


# --- schema ---------------------------------------------------------------------------------
def init_warehouse(url: str) -> None:
    """Create every table (and on PostgreSQL the vault schema, roles and grants), then the marts."""
    with connect(url, vault=True) as db:
        if db.backend == "duckdb":
            # One DuckDB transaction writes one file; CREATE … IF NOT EXISTS makes a retry safe.
            for table in metadata.sorted_tables:
                db.execute(create_ddl(table, "duckdb"))
        else:
            with db.transaction():
                db.execute(f"CREATE SCHEMA IF NOT EXISTS {VAULT_SCHEMA}")
                for table in metadata.sorted_tables:
                    db.execute(create_ddl(table))
                _grant_roles(db)
                from govdata.warehouse.vault import install_identify

                install_identify(db)   # vault.identify: audited resolution for stewards only
    refresh_marts(url)


def _missing_tables(db: _DB) -> list[str]:
    if db.backend == "duckdb":
        rows = db.fetchall("SELECT CASE WHEN database_name = 'vault' THEN 'vault.' ELSE '' END || table_name "
                           "FROM duckdb_tables()")
    else:
        rows = db.fetchall("SELECT CASE WHEN table_schema = 'vault' THEN 'vault.' ELSE '' END || table_name "
                           "FROM information_schema.tables WHERE table_schema IN ('public', 'vault')")
    present = {r[0] for r in rows}
    return [qualified(t) for t in metadata.sorted_tables if qualified(t) not in present]


def _grant_roles(db: _DB) -> None:
    """Least privilege: loader writes, steward reads everything incl. the vault, analyst reads
    analyst tables and marts only. Roles are cluster-wide and created once (NOLOGIN groups)."""
    for role in ROLES:
        db.execute(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
                   f"EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    public = [t for t in metadata.sorted_tables if t.schema is None]
    vault = [t for t in metadata.sorted_tables if t.schema == VAULT_SCHEMA]
    db.execute(f"REVOKE ALL ON SCHEMA {VAULT_SCHEMA} FROM PUBLIC")
    db.execute("GRANT USAGE ON SCHEMA public TO " + ", ".join(ROLES))
    db.execute(f"GRANT USAGE ON SCHEMA {VAULT_SCHEMA} TO govdata_loader, govdata_steward")
    for t in public:
        db.execute(f"REVOKE ALL ON {t.name} FROM PUBLIC")
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t.name} TO govdata_loader")
        db.execute(f"GRANT SELECT ON {t.name} TO govdata_steward")
        if t.info["analyst"]:
            db.execute(f"GRANT SELECT ON {t.name} TO govdata_analyst")
    db.execute("GRANT INSERT ON identify_audit TO govdata_steward")
    db.execute("GRANT INSERT, UPDATE ON review_queue, review_decision TO govdata_steward")
    for t in vault:
        # The loader writes the vault but may read only its keys (needed by ON CONFLICT).
        keys = ", ".join(t.info["merge"][1])
        db.execute(f"REVOKE ALL ON {qualified(t)} FROM PUBLIC")
        db.execute(f"GRANT INSERT, UPDATE, DELETE ON {qualified(t)} TO govdata_loader")
        db.execute(f"GRANT SELECT ({keys}) ON {qualified(t)} TO govdata_loader")
        db.execute(f"GRANT SELECT ON {qualified(t)} TO govdata_steward")


# --- frames -> Arrow ------------------------------------------------------------------------
def _string_array(series: pd.Series, is_json: bool) -> pa.Array:
    if is_json and series.dtype == object and series.map(lambda v: isinstance(v, (dict, list))).any():
        series = series.map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
    if isinstance(series.dtype, pd.ArrowDtype) or getattr(series.dtype, "storage", None) in ("pyarrow", "pyarrow_numpy"):
        return pa.array(series, from_pandas=True).cast(pa.string())
    values = series.to_numpy(dtype=object)
    try:  # fast path: str objects and NULLs, converted in C
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # numbers, timestamps…: their text form
        return pa.array(series.astype("string"), type=pa.string(), from_pandas=True)


def _column_array(series: pd.Series, typ: pa.DataType, is_json: bool = False) -> pa.Array:
    if pa.types.is_string(typ):
        return _string_array(series, is_json)
    if pa.types.is_timestamp(typ):
        s = pd.to_datetime(series)
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return pa.array(s, from_pandas=True).cast(typ)
    if pa.types.is_date(typ):
        if pd.api.types.is_datetime64_any_dtype(series):
            return pc.cast(pa.array(series.dt.normalize(), from_pandas=True), typ)
        return pa.array(series, type=typ, from_pandas=True)
    if pa.types.is_boolean(typ) and series.dtype == object:
        series = series.astype("boolean")
    return pa.array(series, type=typ, from_pandas=True)


def to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """Frame → Arrow table with the warehouse column types; clear errors on unknown/missing
    columns, unconvertible values and duplicate keys."""
    table = table_for(name)
    schema = arrow_schema(table)
    unknown = [c for c in frame.columns if c not in schema.names]
    if unknown:
        raise ValueError(f"table {name}: unknown column(s) {', '.join(map(str, unknown))}")
    required = [c.name for c in table.columns if not c.nullable and c.name not in frame.columns]
    if required:
        raise ValueError(f"table {name}: missing required column(s) {', '.join(required)}")
    frame = frame.reset_index(drop=True)
    arrays = []
    for field in schema:
        if field.name not in frame.columns:
            arrays.append(pa.nulls(len(frame), type=field.type))
            continue
        try:
            arrays.append(_column_array(frame[field.name], field.type,
                                        isinstance(table.columns[field.name].type, sa.Text)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as exc:
            raise ValueError(f"table {name}: column {field.name} cannot be read as {field.type}: "
                             f"{type(exc).__name__}") from None
    return pa.Table.from_arrays(arrays, schema=pa.schema([pa.field(f.name, f.type) for f in schema]))


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


# --- merging --------------------------------------------------------------------------------
def _delete_record_scope(db: _DB, target: str, scope: str) -> None:
    """Remove the rows of the scope's source records; a scope row without a record id stands
    for every record of its source."""
    db.con.execute(f"DELETE FROM {target} WHERE source_system IN "
                   f"(SELECT source_system FROM {scope} WHERE source_record_id IS NULL)")
    db.con.execute(f"DELETE FROM {target} USING (SELECT DISTINCT source_system, source_record_id FROM {scope} "
                   f"WHERE source_record_id IS NOT NULL) s WHERE {target}.source_system = s.source_system "
                   f"AND {target}.source_record_id = s.source_record_id")


def record_scope(frame: pd.DataFrame | pa.Table | None, rows: pa.Table) -> pa.Table:
    """The scope of a `record` merge: (source_system, source_record_id) rows, NULL record id =
    the whole source. Without one, every source in the rows is replaced whole."""
    schema = pa.schema([("source_system", pa.string()), ("source_record_id", pa.string())])
    if frame is None:
        sources = pc.unique(rows["source_system"]).drop_null() if rows.num_rows else pa.array([], pa.string())
        return pa.table([sources.cast(pa.string()), pa.nulls(len(sources), pa.string())], schema=schema)
    if isinstance(frame, pa.Table):
        return frame.select(schema.names).cast(schema)
    return pa.Table.from_pandas(frame[schema.names].astype("string"), schema=schema, preserve_index=False)


def _merge_duckdb(db: _DuckDB, name: str, arrow: pa.Table, scope: pa.Table | None = None) -> None:
    table = table_for(name)
    target, (mode, keys), keep = qualified(table), table.info["merge"], table.info["keep"]
    cols = [c.name for c in table.columns]
    col_list = ", ".join(cols)
    db.con.register("_stg_arrow", arrow)
    try:
        src = "_stg_arrow"
        if keep:
            # Columns an upsert must not overwrite come from the existing row.
            on = " AND ".join(f"o.{k} = s.{k}" for k in keys)
            sel = ", ".join(f"COALESCE(o.{c}, s.{c}) AS {c}" if c in keep else f"s.{c}" for c in cols)
            db.con.execute(f"CREATE OR REPLACE TEMP TABLE _stg_keep AS SELECT {sel} FROM _stg_arrow s "
                           f"LEFT JOIN {target} o ON {on}")
            src = "_stg_keep"
        target_rows = db.fetchall(f"SELECT count(*) FROM {target}")[0][0]
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


def _csv_batches(arrow: pa.Table, order: pa.Array | None = None) -> Iterator[bytes]:
    """CSV for COPY: strings always quoted (so '' stays ''), NULL unquoted empty; bytea as \\x hex.
    Rows go in `order` (row indices) when given. The next batch is gathered and encoded in a
    helper thread (pyarrow releases the GIL) while the caller sends the current one, so that
    work overlaps the server's COPY."""
    from concurrent.futures import ThreadPoolExecutor

    for i, col in enumerate(arrow.columns):
        if pa.types.is_binary(col.type):
            hexed = pa.array([None if v is None else "\\x" + v.hex() for v in col.to_pylist()], type=pa.string())
            arrow = arrow.set_column(i, arrow.field(i).name, hexed)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")

    def encode(batch: pa.RecordBatch | pa.Array) -> bytes:
        if isinstance(batch, pa.Array):  # row indices
            batch = arrow.take(batch)
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, options)
        return buf.getvalue()

    if order is None:
        batches = arrow.to_batches(max_chunksize=COPY_BATCH_ROWS)
    else:
        batches = [order.slice(i, COPY_BATCH_ROWS) for i in range(0, len(order), COPY_BATCH_ROWS)]
    if len(batches) < 2:
        yield from map(encode, batches)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(encode, batches[0])
        for batch in batches[1:]:
            chunk, pending = pending.result(), pool.submit(encode, batch)
            yield chunk
        yield pending.result()


def _pg_col_defs(table) -> str:
    from sqlalchemy.dialects import postgresql

    return ", ".join(f"{c.name} {c.type.compile(dialect=postgresql.dialect())}" for c in table.columns)


def _copy_into(db: _Postgres, target: str, col_list: str, arrow: pa.Table, order: pa.Array | None = None) -> None:
    with db.con.cursor().copy(f"COPY {target} ({col_list}) FROM STDIN (FORMAT csv)") as copy:
        for chunk in _csv_batches(arrow, order):
            copy.write(chunk)


def _merge_postgres(db: _Postgres, name: str, arrow: pa.Table, scope: pa.Table | None = None) -> None:
    table = table_for(name)
    target, (mode, keys), keep = qualified(table), table.info["merge"], table.info["keep"]
    cols = [c.name for c in table.columns]
    col_list = ", ".join(cols)
    if mode in ("all", "record"):
        if mode == "all":
            db.con.execute(f"DELETE FROM {target}")
        else:
            db.con.execute("CREATE TEMP TABLE _stg_scope (source_system text, source_record_id text) ON COMMIT DROP")
            _copy_into(db, "_stg_scope", "source_system, source_record_id", scope)
            db.con.execute("ANALYZE _stg_scope")
            _delete_record_scope(db, target, "_stg_scope")
            db.con.execute("DROP TABLE _stg_scope")
        _copy_into(db, target, col_list, arrow)
        return
    bulk = (mode == "key" and not keep and table.schema != VAULT_SCHEMA
            and _bulk_worthwhile(db, table, arrow.num_rows))
    order = None
    if bulk and _pg_orders_keys_bytewise(db, table):
        # Rows sent in key order make the primary-key build that follows a presorted check
        # instead of a full sort (3-4x faster): only when the server orders the keys as Arrow does.
        order = _key_order(arrow, keys)
    if bulk and _pg_is_empty(db, target):
        # First load of a big table: COPY straight into it with the primary key dropped, then
        # build the key once (duplicate keys fail there; the transaction restores the key).
        _without_primary_key(db, table, lambda: _copy_into(db, target, col_list, arrow, order))
        return
    stg = f"_stg_{table.name}"
    # Column list from the schema, not LIKE: LIKE needs SELECT, which the loader lacks on the vault.
    db.con.execute(f"CREATE TEMP TABLE {stg} ({_pg_col_defs(table)}) ON COMMIT DROP")
    _copy_into(db, stg, col_list, arrow, order)
    if arrow.num_rows >= BULK_MIN_ROWS:
        db.con.execute(f"ANALYZE {stg}")  # temp tables have no statistics: hash joins need them
    # Duplicate keys within a load fail here without a pre-check: ON CONFLICT refuses to update
    # a row twice, and the vault's primary key refuses the second insert.
    if mode == "key" and table.schema == VAULT_SCHEMA:
        # ON CONFLICT … EXCLUDED needs SELECT on the ciphertext columns; the loader may read keys only.
        on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
        db.con.execute(f"DELETE FROM {target} USING {stg} s WHERE {on}")
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg}")
    elif bulk:
        _bulk_replace_postgres(db, table, stg, keys, col_list, arrow.num_rows)
    elif mode == "key":
        updates = [c for c in cols if c not in keys and c not in keep]
        action = ("DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)) if updates else "DO NOTHING"
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg} "
                       f"ON CONFLICT ({', '.join(keys)}) {action}")
    else:
        on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
        db.con.execute(f"DELETE FROM {target} USING (SELECT DISTINCT {', '.join(keys)} FROM {stg}) s WHERE {on}")
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg}")
    db.con.execute(f"DROP TABLE {stg}")


BULK_MIN_ROWS = 50_000
# Per load transaction (SET LOCAL): the commit need not wait for the WAL flush (a crash may lose
# the last load, never corrupt it: re-running the idempotent load repairs that), and joins /
# key builds sort in memory instead of spilling to disk.
PG_LOAD_SETTINGS = {"synchronous_commit": "off", "work_mem": "256MB", "maintenance_work_mem": "512MB"}


def _tune_postgres(db: _Postgres) -> None:
    for name, value in PG_LOAD_SETTINGS.items():
        db.con.execute(f"SET LOCAL {name} = '{value}'")


def _pg_is_empty(db: _Postgres, target: str) -> bool:
    return not db.con.execute(f"SELECT EXISTS (SELECT 1 FROM {target})").fetchone()[0]


def _bulk_worthwhile(db: _Postgres, table, n_rows: int) -> bool:
    """Big loads into a table we own (ALTER needs ownership) that is small by comparison: building
    the primary-key index once beats maintaining it row by row (3-4x faster)."""
    if n_rows < BULK_MIN_ROWS:
        return False
    row = db.con.execute("SELECT pg_has_role(current_user, c.relowner, 'USAGE'), c.reltuples "
                         "FROM pg_class c WHERE c.oid = %s::regclass", (qualified(table),)).fetchone()
    return bool(row and row[0] and row[1] < 2 * n_rows)


def _key_order(arrow: pa.Table, keys: Sequence[str]) -> pa.Array:
    """Row indices in key order (text in byte order). A leading text key (source_system: a few
    values) is sorted by its rank in its dictionary: integers first sort 2x faster than strings."""
    cols = []
    for i, key in enumerate(keys):
        col = arrow[key]
        if i < len(keys) - 1 and pa.types.is_string(col.type):
            encoded = pc.dictionary_encode(col).combine_chunks()
            col = pc.take(pc.rank(encoded.dictionary, sort_keys="ascending"), encoded.indices)
        cols.append(col)
    names = [f"k{i}" for i in range(len(cols))]
    return pc.sort_indices(pa.table(cols, names=names), sort_keys=[(n, "ascending") for n in names])


_BYTEWISE_COLLATIONS = ("C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic")


def _pg_orders_keys_bytewise(db: _Postgres, table) -> bool:
    """Whether the server sorts the key columns as Arrow does: numbers and dates, or text in a
    byte-order collation (C, POSIX, C.UTF-8 — code point order, which is UTF-8 byte order)."""
    keys = list(table.info["merge"][1])
    types = [arrow_schema(table).field(k).type for k in keys]
    if not all(pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_temporal(t) for t in types):
        return False
    rows = db.con.execute(
        "SELECT a.attcollation = 0 OR CASE WHEN a.attcollation = (SELECT oid FROM pg_collation "
        "WHERE collname = 'default' AND collnamespace = 'pg_catalog'::regnamespace) "
        "THEN coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' AND d.datcollate = ANY(%s) "
        "ELSE c.collname = ANY(%s) OR (c.collprovider = 'c' AND c.collcollate = ANY(%s)) END "
        "FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation "
        "JOIN pg_database d ON d.datname = current_database() "
        "WHERE a.attrelid = %s::regclass AND a.attname = ANY(%s)",
        (list(_BYTEWISE_COLLATIONS),) * 3 + (qualified(table), keys)).fetchall()
    return len(rows) == len(keys) and all(r[0] for r in rows)


def _without_primary_key(db: _Postgres, table, work) -> None:
    """Drop the primary key, run `work`, re-create the key — in the load's transaction, so a
    failure (duplicate keys included) restores everything."""
    target, pk = qualified(table), f"{table.name}_pkey"
    db.con.execute(f"ALTER TABLE {target} DROP CONSTRAINT {pk}")
    work()
    db.con.execute(f"ALTER TABLE {target} ADD CONSTRAINT {pk} PRIMARY KEY ({', '.join(table.info['merge'][1])})")


def _bulk_replace_postgres(db: _Postgres, table, stg: str, keys: tuple[str, ...], col_list: str,
                           n_rows: int) -> None:
    """Remove the rows being replaced (all of them by TRUNCATE when the load covers the whole
    table, else DELETE of the incoming keys), then INSERT with the primary key dropped."""
    target = qualified(table)
    # Staging keys are unique (the key build refuses duplicates), so a table no bigger than the
    # load whose every key is in it is replaced entirely.
    target_rows = db.con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
    # count(*), not EXISTS(…): a first-row plan would be a nested-loop anti join, O(n²).
    if target_rows <= n_rows and not db.con.execute(
            f"SELECT count(*) FROM {target} WHERE NOT EXISTS (SELECT 1 FROM {stg} s WHERE {on})").fetchone()[0]:
        db.con.execute(f"TRUNCATE {target}")
    else:
        db.con.execute(f"DELETE FROM {target} USING {stg} s WHERE {on}")
    _without_primary_key(db, table, lambda: db.con.execute(
        f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg}"))


def _merge(db: _DB, name: str, arrow: pa.Table, scope: pa.Table | None = None) -> None:
    try:
        (_merge_duckdb if db.backend == "duckdb" else _merge_postgres)(db, name, arrow, scope)
    except Exception as exc:
        raise LoadError(f"loading table {name} failed, nothing was loaded: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:300]}") from exc


def load_tables(url: str, tables: dict[str, pd.DataFrame], run_id: str, *,
                scopes: dict[str, pd.DataFrame | pa.Table] | None = None) -> dict[str, int]:
    """Merge every frame into its warehouse table in one commit (warehouse and vault together);
    returns rows per table. Loading the same tables twice leaves the warehouse identical; a
    failure loads nothing. `scopes` gives the record scope of `record` tables (quarantine, see
    record_scope)."""
    arrows = {name: to_arrow(name, frame) for name, frame in tables.items() if frame is not None}
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


def _load_duckdb(url: str, arrows: dict[str, pa.Table], vault_names: list[str], merge_main, run_id: str) -> None:
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
                               (load_id, run_id, datetime.now(timezone.utc).replace(tzinfo=None)))
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


def read_table(url: str, name: str) -> pd.DataFrame | None:
    """A whole warehouse table as a DataFrame; None when the warehouse or the table does not exist."""
    arrow = read_arrow_table(url, name)
    return None if arrow is None else arrow.to_pandas()


def read_arrow_table(url: str, name: str, columns: list[str] | None = None) -> pa.Table | None:
    """A warehouse table (or some of its columns) as an Arrow table; None when the warehouse
    or the table does not exist."""
    table = table_for(name)
    if backend_of(url) == "duckdb" and not Path(duckdb_paths(url)[0]).exists():
        return None
    with connect(url, vault=table.schema == VAULT_SCHEMA, read_only=True) as db:
        if qualified(table) in _missing_tables(db):
            return None
        return _typed(db.fetch_arrow(f"SELECT {', '.join(columns) if columns else '*'} FROM {qualified(table)}"),
                      table)


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


# --- marts ----------------------------------------------------------------------------------
def mart_sql() -> dict[str, str]:
    """mart name → SELECT statement, one file each in warehouse/marts/."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(MARTS_DIR.glob("mart_*.sql"))}


def refresh_marts(url: str) -> list[str]:
    """(Re)create every mart as a view; analysts get SELECT on PostgreSQL."""
    marts = mart_sql()
    with connect(url) as db:
        with db.transaction():
            for name, sql in marts.items():
                body = sql.strip().rstrip(";")
                db.execute(f"DROP VIEW IF EXISTS {name}")
                db.execute(f"CREATE VIEW {name} AS\n{body}")
                if db.backend == "postgresql" and _role_exists(db, "govdata_analyst"):
                    db.execute(f"GRANT SELECT ON {name} TO govdata_analyst, govdata_steward")
    return list(marts)


def _role_exists(db: _DB, role: str) -> bool:
    return bool(db.fetchall("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,)))


__all__ = ["init_warehouse", "load_tables", "read_table", "read_arrow_table", "refresh_marts", "connect", "analyst_connect",
           "LoadError", "to_arrow", "analyst_table_names"]
