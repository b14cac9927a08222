"""The service's request log (share_log), chained by hashes like X-Road's message log.

Every call — answered or refused — is one row; row_hash = SHA-256 over the previous row's hash
and the row's own fields (canonical JSON), so changing, deleting or inserting a row breaks the
chain from that row on: `govdata share audit` (verify_chain) reports the first broken row.
Rows hold tokens, never raw identifiers. The service appends in memory (the chain is computed
at once, under a lock) and a writer thread flushes batches to the warehouse.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from govdata.sharing.store import WAREHOUSE_LOCK, ensure_tables, now, share_connect
from govdata.warehouse.load import connect
from govdata.warehouse.schema import arrow_schema, table_for

log = logging.getLogger(__name__)
GENESIS = "0" * 64
FIELDS = ("seq", "logged_at", "client_id", "department", "endpoint", "purpose", "application_no", "subject_token",
          "resources", "elements", "outcome", "status_code", "reason")
COLUMNS = FIELDS + ("prev_hash", "row_hash")


def _canonical(value):
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return value


def row_hash(prev_hash: str, row: dict) -> str:
    values = [row.get(f) for f in FIELDS]
    values[1] = _canonical(values[1])        # logged_at
    body = json.dumps(values, ensure_ascii=False, separators=(",", ":"), default=_canonical)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


class RequestLog:
    """Append-only, hash-chained; flushed to share_log by a background thread every `interval` s."""

    def __init__(self, url: str, interval: float = 1.0):
        self.url = url
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._stop = threading.Event()
        self._flushed = threading.Condition()
        with WAREHOUSE_LOCK, share_connect(url) as db:
            ensure_tables(db)
            last = db.fetchall("SELECT seq, row_hash FROM share_log ORDER BY seq DESC LIMIT 1")
        self.seq, self.last_hash = (int(last[0][0]), last[0][1]) if last else (0, GENESIS)
        self.written = self.seq
        self._db = None   # PostgreSQL: one connection kept by the writer; DuckDB: one per flush (file lock)
        self._thread = threading.Thread(target=self._run, name="share-log-writer", daemon=True)
        self._thread.start()

    def append(self, **fields) -> int:
        """Chain and queue one row; returns its seq."""
        with self._lock:
            self.seq += 1
            row = {f: fields.get(f) for f in FIELDS}
            row["seq"] = self.seq
            row["logged_at"] = now()
            row["prev_hash"] = self.last_hash
            row["row_hash"] = self.last_hash = row_hash(self.last_hash, row)
            self._pending.append(row)
            return self.seq

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Write the queued rows (in seq order) in one transaction; rows stay queued if the
        warehouse is busy (DuckDB: another process holds the file) and go with the next flush."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return 0
        try:
            if self._db is None and not self.url.startswith("duckdb"):
                self._cm = connect(self.url)      # kept: the context manager owns the connection
                self._db = self._cm.__enter__()
            _insert(self.url, rows, self._db)
        except Exception as exc:  # noqa: BLE001 - kept and retried: the chain must not lose a row
            self._close_db()
            log.warning("request log flush deferred (%d rows): %s", len(rows), str(exc).splitlines()[0][:200])
            with self._lock:
                self._pending = rows + self._pending
            return 0
        with self._flushed:
            self.written = rows[-1]["seq"]
            self._flushed.notify_all()
        return len(rows)

    def wait_written(self, seq: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._flushed:
            while self.written < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flushed.wait(left)
        return True

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._cm.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - a broken connection is dropped either way
                pass
            self._db = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._close_db()


def _insert(url: str, rows: list[dict], db=None) -> None:
    cols = ", ".join(COLUMNS)
    if db is not None:                       # PostgreSQL, the writer's own connection
        with db.con.transaction():
            with db.con.cursor() as cur:
                with cur.copy(f"COPY share_log ({cols}) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row([r.get(c) for c in COLUMNS])
        return
    schema = arrow_schema(table_for("share_log"))
    table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=schema)
    with WAREHOUSE_LOCK, share_connect(url) as db:
        if db.backend != "duckdb":
            return _insert(url, rows, db)
        db.con.register("_share_log_batch", table)
        with db.transaction():
            db.execute(f"INSERT INTO share_log ({cols}) SELECT {cols} FROM _share_log_batch")


@dataclass(frozen=True)
class ChainReport:
    rows: int
    first_broken: int | None      # seq of the first row whose hash or link does not hold
    reason: str | None

    @property
    def intact(self) -> bool:
        return self.first_broken is None


def verify_chain(url: str) -> ChainReport:
    """Recompute the chain over share_log in seq order; the first row that does not hold
    (changed fields, a broken link, a missing or inserted seq) is reported."""
    with share_connect(url) as db:
        ensure_tables(db)
        rows = db.fetchall(f"SELECT {', '.join(COLUMNS)} FROM share_log ORDER BY seq")
    prev, expected_seq = GENESIS, 1
    for values in rows:
        row = dict(zip(COLUMNS, values))
        seq = int(row["seq"])
        if seq != expected_seq:
            return ChainReport(len(rows), expected_seq if seq > expected_seq else seq,
                               f"row {expected_seq} is missing" if seq > expected_seq else f"row {seq} appears twice")
        if row["prev_hash"] != prev:
            return ChainReport(len(rows), seq, "its prev_hash is not the previous row's hash")
        if row_hash(prev, row) != row["row_hash"]:
            return ChainReport(len(rows), seq, "its fields do not match its row_hash (changed after logging)")
        prev, expected_seq = row["row_hash"], seq + 1
    return ChainReport(len(rows), None, None)
