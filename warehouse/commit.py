"""One commit across the DuckDB warehouse and its vault file (docs/CONTRACTS.md, "one commit").

A DuckDB transaction writes one database file only, so a load that changes the vault writes a
copy of it (`<vault>.pending`), commits the warehouse transaction (which records the load in
vault_commit), then renames the copy over the vault; a pending copy left by a crash is promoted
if its load is in vault_commit, else deleted, by the next connection that attaches the vault.
This module holds the lock, the promotion and the recovery; warehouse.load runs the protocol."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("govdata.warehouse.load")

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


__all__ = ["PENDING_SUFFIX", "recover_pending_vault", "vault_lock"]
