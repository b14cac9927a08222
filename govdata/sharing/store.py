"""Sharing bookkeeping in the warehouse: clients, requests, decisions, grants and their audit,
and on PostgreSQL the consumer roles and privileges that enforce the sharing classes.

Every state change and its share_audit row are written in one transaction. On PostgreSQL the
privileges are then reconciled with the catalogue and the live grants (sync_grants), in the same
transaction: unconditional resources to every consumer role, conditional ones to the roles of
departments holding a live grant, not-shareable ones to none. On DuckDB (no roles) the same
bookkeeping is kept and the service enforces it (application level).
"""
from __future__ import annotations

import getpass
import hashlib
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from govdata.standards.catalogue import Catalogue, Resource, load_catalogue
from govdata.warehouse.load import connect
from govdata.warehouse.schema import create_ddl, table_for

SHARE_TABLES = ("share_client", "share_request", "share_grant", "share_audit", "share_log")
SHARE_SCHEMA = "share"
ROLE_PREFIX = "govdata_consumer_"
# One warehouse connection at a time per service process: DuckDB refuses a read-only and a
# read-write connection to the same file open together in one process.
WAREHOUSE_LOCK = threading.RLock()


class ShareError(ValueError):
    """A sharing request or decision that the catalogue or the request's state does not allow."""


@contextmanager
def share_connect(url: str, read_only: bool = False, wait_seconds: float = 10.0) -> Iterator:
    """warehouse.load.connect, waiting up to `wait_seconds` while another process holds a DuckDB
    file's lock (the service flushes its log and reloads its index with short connections)."""
    with connect(url, read_only=read_only, lock_wait=wait_seconds) as db:
        yield db


def now() -> datetime:
    """UTC, naive (the warehouse's DateTime columns carry no zone), to the microsecond."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def consumer_role(department: str) -> str:
    return f"{ROLE_PREFIX}{department}"


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def ensure_tables(db) -> None:
    """The sharing tables, on a warehouse initialised before they existed (idempotent)."""
    for name in SHARE_TABLES:
        db.execute(create_ddl(table_for(name), db.backend))


def _audit(db, actor: str, action: str, *, request_id=None, grant_id=None, resource=None, department=None,
           detail: str = "") -> None:
    db.execute("INSERT INTO share_audit (audit_id, audited_at, actor, action, request_id, grant_id, resource, department, "
               "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (uuid.uuid4().hex, now(), actor, action, request_id, grant_id, resource, department, detail))


# --- clients --------------------------------------------------------------------------------
def add_client(url: str, department: str, rate_per_second: float = 50.0, who: str | None = None,
               catalogue: Catalogue | None = None) -> tuple[str, str]:
    """(client_id, api key). Only the key's SHA-256 is stored: the key is shown once."""
    cat = catalogue or load_catalogue()
    cat.department(department)
    client_id = f"{department}-{secrets.token_hex(4)}"
    api_key = secrets.token_urlsafe(32)
    with share_connect(url) as db:
        ensure_tables(db)
        with db.transaction():
            db.execute("INSERT INTO share_client (client_id, department, key_hash, rate_per_second, created_at, active) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (client_id, department, key_hash(api_key), rate_per_second, now(), True))
            _audit(db, who or getpass.getuser(), "client_added", department=department,
                   detail=f"client {client_id}, {rate_per_second:g} requests/s")
    return client_id, api_key


# --- requests and decisions -----------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    request_id: str
    resource: str
    department: str
    purpose: str
    valid_until: date
    status: str
    decision_reason: str | None = None


def request_access(url: str, resource: str, department: str, purpose: str, until: date,
                   who: str | None = None, catalogue: Catalogue | None = None, today: date | None = None) -> Request:
    """Record a department's request for a resource. A not-shareable resource's request is
    recorded and refused at once (不予共享); an unconditional one needs no request."""
    cat = catalogue or load_catalogue()
    res = cat.resource(resource)
    cat.department(department)
    if not purpose.strip():
        raise ShareError("a request states its purpose")
    if until < (today or date.today()):
        raise ShareError(f"--until {until} is in the past")
    if res.sharing_class == "无条件":
        raise ShareError(f"{resource} is shared without conditions (无条件): every consumer department reads it")
    who = who or getpass.getuser()
    request_id = f"SR{uuid.uuid4().hex[:10]}"
    refused = not res.shareable
    status, reason = ("refused", "不予共享: the catalogue classes the resource as not shareable") if refused else ("pending", None)
    with share_connect(url) as db:
        ensure_tables(db)
        with db.transaction():
            at = now()
            db.execute("INSERT INTO share_request (request_id, resource, department, purpose, valid_until, requested_by, "
                       "requested_at, status, decided_by, decided_at, decision_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (request_id, resource, department, purpose, until, who, at, status,
                        "catalogue" if refused else None, at if refused else None, reason))
            _audit(db, who, "requested", request_id=request_id, resource=resource, department=department,
                   detail=f"until {until}: {purpose}")
            if refused:
                _audit(db, "catalogue", "refused", request_id=request_id, resource=resource, department=department,
                       detail=reason)
    return Request(request_id, resource, department, purpose, until, status, reason)


def _load_request(db, request_id: str) -> Request:
    rows = db.fetchall("SELECT request_id, resource, department, purpose, valid_until, status, decision_reason "
                       "FROM share_request WHERE request_id = ?", (request_id,))
    if not rows:
        raise ShareError(f"no sharing request {request_id}")
    r = rows[0]
    return Request(r[0], r[1], r[2], r[3], r[4] if isinstance(r[4], date) else date.fromisoformat(str(r[4])), r[5], r[6])


def approve(url: str, request_id: str, reason: str, who: str | None = None,
            catalogue: Catalogue | None = None, today: date | None = None) -> str:
    """Approve a pending request: a grant to the department's consumer role until the request's
    date (on PostgreSQL: the GRANT itself). Returns the grant id."""
    cat = catalogue or load_catalogue()
    with _decision(url, request_id, reason, who) as (db, req, who):
        res = cat.resource(req.resource)
        if not res.shareable:
            raise ShareError(f"{res.code} is not shareable (不予共享): no grant is ever issued")
        if req.valid_until < (today or date.today()):
            raise ShareError(f"request {request_id} ran out on {req.valid_until}")
        at = now()
        grant_id = f"SG{uuid.uuid4().hex[:10]}"
        db.execute("UPDATE share_request SET status = 'approved', decided_by = ?, decided_at = ?, decision_reason = ? "
                   "WHERE request_id = ?", (who, at, reason, request_id))
        db.execute("INSERT INTO share_grant (grant_id, request_id, resource, department, role_name, privilege, "
                   "granted_at, valid_until, revoked_at, revoke_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                   (grant_id, request_id, res.code, req.department, consumer_role(req.department),
                    privilege_sql(res, consumer_role(req.department)), at, req.valid_until))
        _audit(db, who, "approved", request_id=request_id, resource=res.code, department=req.department,
               detail=reason)
        _audit(db, who, "granted", request_id=request_id, grant_id=grant_id, resource=res.code,
               department=req.department, detail=f"until {req.valid_until}")
        if db.backend == "postgresql":
            sync_grants(db, cat, today)
    return grant_id


@contextmanager
def _decision(url: str, request_id: str, reason: str, who: str | None):
    """A steward's decision on a pending request, in one transaction: (db, request, who)."""
    who = who or getpass.getuser()
    if not reason.strip():
        raise ShareError("a decision states its reason")
    with share_connect(url) as db:
        ensure_tables(db)
        with db.transaction():
            req = _load_request(db, request_id)
            if req.status != "pending":
                raise ShareError(f"request {request_id} is {req.status}, not pending")
            yield db, req, who


def refuse(url: str, request_id: str, reason: str, who: str | None = None) -> None:
    with _decision(url, request_id, reason, who) as (db, req, who):
        db.execute("UPDATE share_request SET status = 'refused', decided_by = ?, decided_at = ?, decision_reason = ? "
                   "WHERE request_id = ?", (who, now(), reason, request_id))
        _audit(db, who, "refused", request_id=request_id, resource=req.resource, department=req.department,
               detail=reason)


def expire_grants(url: str, today: date | None = None, catalogue: Catalogue | None = None) -> list[str]:
    """Revoke every grant whose date has passed (its request becomes `expired`) and, on
    PostgreSQL, reconcile the privileges (which also restores grants on re-created marts).
    Returns the expired grant ids. Run by the govdata_marts DAG after every load."""
    cat = catalogue or load_catalogue()
    today = today or date.today()
    with share_connect(url) as db:
        ensure_tables(db)
        with db.transaction():
            rows = db.fetchall("SELECT grant_id, request_id, resource, department, valid_until FROM share_grant "
                               "WHERE revoked_at IS NULL AND valid_until < ? ORDER BY grant_id", (today,))
            at = now()
            for grant_id, request_id, resource, department, until in rows:
                db.execute("UPDATE share_grant SET revoked_at = ?, revoke_reason = 'expired' WHERE grant_id = ?",
                           (at, grant_id))
                db.execute("UPDATE share_request SET status = 'expired' WHERE request_id = ?", (request_id,))
                _audit(db, "expire_grants", "revoked", request_id=request_id, grant_id=grant_id, resource=resource,
                       department=department, detail=f"expired: valid until {until}")
            if db.backend == "postgresql":
                sync_grants(db, cat, today)
    return [r[0] for r in rows]


def live_grants(db, today: date | None = None) -> list[tuple[str, str]]:
    """(resource, department) of every grant not revoked and not past its date."""
    return [(r[0], r[1]) for r in db.fetchall(
        "SELECT DISTINCT resource, department FROM share_grant WHERE revoked_at IS NULL AND valid_until >= ?",
        (today or date.today(),))]


# --- PostgreSQL enforcement -----------------------------------------------------------------
def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ShareError(f"{name!r} cannot name a database object")
    return name


def privilege_sql(res: Resource, role: str) -> str:
    """The GRANT that gives `role` the resource: its row-limited view, its columns, or the object."""
    if res.rows:
        return f"GRANT SELECT ON {SHARE_SCHEMA}.{_ident(res.code)} TO {role}"
    if res.columns:
        return f"GRANT SELECT ({', '.join(_ident(c) for c in res.columns)}) ON {_ident(res.object)} TO {role}"
    return f"GRANT SELECT ON {_ident(res.object)} TO {role}"


def sync_grants(db, cat: Catalogue, today: date | None = None) -> dict[str, list[str]]:
    """Make the consumer roles' privileges exactly what the catalogue and the live grants say
    (inside the caller's transaction). Returns role -> resources it may read."""
    roles = {d: consumer_role(_ident(d)) for d in cat.departments}
    for role in roles.values():
        db.execute(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    db.execute(f"CREATE SCHEMA IF NOT EXISTS {SHARE_SCHEMA}")
    db.execute(f"REVOKE ALL ON SCHEMA {SHARE_SCHEMA} FROM PUBLIC")
    everyone = ", ".join(roles.values())
    db.execute(f"GRANT USAGE ON SCHEMA public, {SHARE_SCHEMA} TO {everyone}")
    present = {r[0] for r in db.fetchall("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    # Row-limited resources are read through share.<code>; every other view there goes.
    wanted_views = {r.code for r in cat.resources.values() if r.rows and r.shareable and r.object in present}
    for (view,) in db.fetchall("SELECT table_name FROM information_schema.views WHERE table_schema = ?", (SHARE_SCHEMA,)):
        db.execute(f"DROP VIEW {SHARE_SCHEMA}.{_ident(view)}")
    for code in sorted(wanted_views):
        r = cat.resources[code]
        cols = ", ".join(_ident(c) for c in r.columns) if r.columns else "*"
        db.execute(f"CREATE VIEW {SHARE_SCHEMA}.{_ident(code)} AS SELECT {cols} FROM public.{_ident(r.object)} "
                   f"WHERE {r.rows}")
        db.execute(f"REVOKE ALL ON {SHARE_SCHEMA}.{code} FROM PUBLIC")
    for obj in sorted({r.object for r in cat.resources.values() if r.object in present}):
        db.execute(f"REVOKE ALL ON {_ident(obj)} FROM {everyone}")
    granted = live_grants(db, today)
    readable: dict[str, list[str]] = {role: [] for role in roles.values()}
    for r in sorted(cat.resources.values(), key=lambda r: r.code):
        if r.object not in present or not r.shareable:
            continue
        if r.sharing_class == "无条件":
            who = list(roles.values())
        else:
            who = [roles[d] for (code, d) in granted if code == r.code and d in roles]
        for role in who:
            db.execute(privilege_sql(r, role))
            readable[role].append(r.code)
    return readable


def sync(url: str, catalogue: Catalogue | None = None) -> dict[str, list[str]]:
    """sync_grants in its own transaction (PostgreSQL); {} on DuckDB."""
    cat = catalogue or load_catalogue()
    with share_connect(url) as db:
        if db.backend != "postgresql":
            return {}
        ensure_tables(db)
        with db.transaction():
            return sync_grants(db, cat)


def list_requests(url: str) -> list[tuple]:
    with share_connect(url) as db:
        ensure_tables(db)
        return db.fetchall("SELECT request_id, resource, department, purpose, valid_until, status, decided_by, "
                           "decision_reason FROM share_request ORDER BY requested_at, request_id")


__all__ = ["ShareError", "add_client", "request_access", "approve", "refuse", "expire_grants", "sync", "sync_grants",
           "consumer_role", "key_hash", "ensure_tables", "Path"]
