"""Warehouse connections: the backend chosen by the SQLAlchemy URL (DuckDB file + vault file, or
PostgreSQL through psycopg 3), one parameter style (`?`) and a transaction context manager."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from govdata.warehouse.commit import recover_pending_vault, vault_lock
from govdata.warehouse.schema import VAULT_SCHEMA


def sql_text(value: str) -> str:
    """A SQL string literal of value (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


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


DUCKDB_MEMORY_ENV = "GOVDATA_DUCKDB_MEMORY"


def duckdb_memory_limit() -> str:
    """DuckDB's memory limit for a warehouse connection: GOVDATA_DUCKDB_MEMORY (DuckDB's own
    notation, e.g. 2GB or 512MB), by default 2GB."""
    import re

    from govdata.errors import ConfigError

    value = os.environ.get(DUCKDB_MEMORY_ENV, "").strip() or "2GB"
    if not re.fullmatch(r"\d+(\.\d+)?\s*(K|M|G|T)?i?B", value, re.IGNORECASE):
        raise ConfigError(f"{DUCKDB_MEMORY_ENV}={value!r} is not a memory size: give one such as 2GB or 512MB")
    return value


def duckdb_config() -> dict[str, str]:
    """The settings of every DuckDB connection to the warehouse: the loader's, the checks' and
    the analysts'. One memory limit for all (DuckDB refuses a second connection to a file open
    with other settings, and a check left at DuckDB's default takes 80% of the machine)."""
    return {"memory_limit": duckdb_memory_limit()}


def read_only_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine for checks that only read the warehouse: DuckDB opened read-only with
    the warehouse's memory limit (duckdb_config); PostgreSQL as the URL says."""
    if sa.engine.make_url(url).get_backend_name() == "duckdb":
        return sa.create_engine(url, connect_args={"read_only": True, "config": duckdb_config()})
    return sa.create_engine(url)


# A DuckDB file takes one writing process, or reading processes only. A run's marts tasks (and the
# sharing service) open the warehouse for a moment each: a task meeting another's lock waits for
# it instead of failing into a retry delay.
LOCK_WAIT_SECONDS = 30.0


def open_duckdb(path: str, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS):
    """duckdb.connect with the warehouse's settings (duckdb_config), waiting up to `wait_seconds`
    while another process holds the file's lock."""
    import time

    import duckdb

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(path, read_only=read_only, config=duckdb_config())
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _DuckDB(_DB):
    backend = "duckdb"

    def __init__(self, url: str, vault: bool, read_only: bool = False, lock_wait: float = LOCK_WAIT_SECONDS):
        path, vault_path = duckdb_paths(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A bounded share of memory, beyond which DuckDB spills to `<warehouse>.tmp`: a load's merges
        # otherwise take up to 80% of the machine, whatever else runs beside them.
        self.con = open_duckdb(path, read_only, lock_wait)
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

    def sibling(self) -> _DuckDB:
        """A second connection to the same open database: its own transaction, the same attached
        files and settings (closed with this one)."""
        other = object.__new__(_DuckDB)
        other.con = self.con.cursor()
        return other

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


def pg_conninfo(url: str) -> dict[str, Any]:
    u = sa.engine.make_url(url)
    info = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    info.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return {k: v for k, v in info.items() if v is not None}


@contextmanager
def connect(url: str, vault: bool = False, read_only: bool = False,
            lock_wait: float = LOCK_WAIT_SECONDS) -> Iterator[_DB]:
    """Loader/steward connection (`vault=True` attaches the DuckDB vault file). `lock_wait`:
    seconds a DuckDB open waits while another process holds the file (open_duckdb)."""
    db: _DB = _DuckDB(url, vault, read_only, lock_wait) if backend_of(url) == "duckdb" else _Postgres(url)
    try:
        yield db
    finally:
        db.close()


def analyst_connect(url: str):
    """A read-only DuckDB connection for analysts: the vault file is never attached."""
    path, _ = duckdb_paths(url)
    return open_duckdb(path, read_only=True)


__all__ = ["analyst_connect", "backend_of", "connect", "duckdb_config", "duckdb_paths", "pg_conninfo",
           "read_only_engine"]
