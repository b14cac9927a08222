"""Verification and prefill service for the service hall (校验核对 / 免填报): `govdata serve`.

    POST /verify   {"id_number" | "token", "claims": {element: value}, "service_item"?, "purpose"?,
                    "application_no"?}
                   -> {"request": seq, "subject": "found" | "unknown", "results": {element: agrees|disagrees|unknown}}
    POST /prefill  {"id_number" | "token", "service_item", "application_no"?}
                   -> {"request": seq, "service_item", "subject", "elements": {element: {value,
                       source_department, source_system[, issuer]}}, "missing": [element…]}
    GET  /health   -> {"status": "ok", "index_version": …}

Clients are departments holding an API key (header X-Api-Key; only its SHA-256 is stored, see
`govdata share client add`). Each call is checked against the catalogue (standards/catalogue.yaml:
无条件 resources for every client, 有条件 ones with a live approved request of the client's
department, 不予 never), rate-limited per client, and written to the hash-chained request log
(share_log) with the subject's token — never the raw ID number. Verification never returns a
stored value. Handlers parse JSON themselves (no per-request model validation): /verify is the
hot path of the service hall.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import unicodedata
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date

from fastapi import FastAPI, Request
from fastapi.responses import Response

from govdata.sharing.index import (UNKNOWN, compare_certificate, compare_golden, load_index, valid_certificate,
                                   warehouse_version)
from govdata.sharing.log import RequestLog
from govdata.sharing.store import WAREHOUSE_LOCK, ensure_tables, key_hash, live_grants, share_connect
from govdata.standards.catalogue import Catalogue, ServiceNeeds, load_catalogue, load_service_needs
from govdata.transforms.privacy import token_one

log = logging.getLogger(__name__)
ID_NUMBER = re.compile(r"^[0-9]{17}[0-9X]$")
TOKEN = re.compile(r"^[0-9a-f]{64}$")
MAX_BODY = 16_384
MAX_CLAIMS = 32


@dataclass(frozen=True)
class Client:
    client_id: str
    department: str
    rate: float


class Refused(Exception):
    def __init__(self, status: int, outcome: str, reason: str, **log_fields):
        super().__init__(reason)
        self.status, self.outcome, self.reason, self.log_fields = status, outcome, reason, log_fields


class _Bucket:
    """Token bucket: `rate` requests per second, bursts up to one second's worth."""
    __slots__ = ("rate", "tokens", "at")

    def __init__(self, rate: float):
        self.rate, self.tokens, self.at = rate, max(1.0, rate), time.monotonic()

    def take(self) -> bool:
        t = time.monotonic()
        self.tokens = min(max(1.0, self.rate), self.tokens + (t - self.at) * self.rate)
        self.at = t
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Service:
    """Catalogue, access rights, index and log of one running service."""

    def __init__(self, url: str, key: bytes, catalogue: Catalogue | None = None, needs: ServiceNeeds | None = None,
                 refresh_seconds: float = 10.0, log_interval: float = 1.0):
        self.url, self.key = url, key
        self.cat = catalogue or load_catalogue()
        self.needs = needs or load_service_needs()
        self.dept_of_source = {s: d.name for s, d in self.cat.department_of_source().items()}
        with WAREHOUSE_LOCK, share_connect(url) as db:
            ensure_tables(db)
        self.clients: dict[str, Client] = {}
        self.grants: frozenset[tuple[str, str]] = frozenset()
        self.buckets: dict[str, _Bucket] = {}
        self.reload_rights()
        self.index = load_index(url)
        _freeze()
        self.log = RequestLog(url, log_interval)
        self.refresh_seconds = refresh_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="share-refresh", daemon=True)
        self._thread.start()

    # --- state kept fresh in the background --------------------------------------------------
    def reload_rights(self) -> None:
        with WAREHOUSE_LOCK, share_connect(self.url, read_only=True) as db:
            rows = db.fetchall("SELECT client_id, department, key_hash, rate_per_second FROM share_client "
                               "WHERE active")
            grants = live_grants(db, date.today())
        self.clients = {h: Client(cid, dept, float(rate or 50.0)) for cid, dept, h, rate in rows}
        self.grants = frozenset(grants)

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.reload_rights()
                version = warehouse_version(self.url)
                if version and version != self.index.version:
                    self.index = load_index(self.url)   # swapped whole: requests see old or new
                    _freeze()
                    log.info("index reloaded for %s", version)
            except Exception as exc:  # noqa: BLE001 - the warehouse may be busy: keep serving
                log.warning("refresh deferred: %s", str(exc).splitlines()[0][:200])

    def close(self) -> None:
        self._stop.set()
        self.log.close()

    # --- checks ----------------------------------------------------------------------------------
    def client(self, api_key: str | None) -> Client:
        client = self.clients.get(key_hash(api_key)) if api_key else None
        if client is None:
            raise Refused(401, "unauthorised", "unknown or missing API key (header X-Api-Key)")
        return client

    def admit(self, client: Client) -> None:
        """The client's rate limit (token bucket per client)."""
        bucket = self.buckets.get(client.client_id)
        if bucket is None:
            bucket = self.buckets[client.client_id] = _Bucket(client.rate)
        if not bucket.take():
            raise Refused(429, "rate_limited", f"more than {client.rate:g} requests/s")

    def check_scope(self, client: Client, resources: list[str]) -> None:
        missing = []
        for code in resources:
            r = self.cat.resources[code]
            if r.sharing_class == "不予":
                missing.append(f"{code} (不予共享)")
            elif r.sharing_class == "有条件" and (code, client.department) not in self.grants:
                missing.append(f"{code} (有条件: no approved request of {client.department})")
        if missing:
            raise Refused(403, "refused", "out of scope: " + ", ".join(missing))

    def subject(self, body: dict) -> str:
        """The subject's token: HMAC of the given ID number, or the token itself."""
        raw = body.get("id_number")
        if raw is not None:
            if not isinstance(raw, str):
                raise Refused(422, "invalid", "id_number: expected a string")
            number = unicodedata.normalize("NFKC", raw).strip().upper()
            if not ID_NUMBER.match(number):
                raise Refused(422, "invalid", "id_number: expected 18 characters, 17 digits and a digit or X")
            return token_one(number, self.key)
        tok = body.get("token")
        if isinstance(tok, str) and TOKEN.match(tok):
            return tok
        raise Refused(422, "invalid", "give id_number or token (64 hex characters)")

    def handle(self, endpoint: str, api_key: str | None, raw: bytes | None) -> tuple[int, dict]:
        """One call: authenticate, rate-limit, parse, check scope, answer; logged either way.
        `raw` None: the body was over MAX_BODY."""
        ctx = {"endpoint": endpoint, "client_id": None, "department": None, "subject_token": None,
               "purpose": None, "application_no": None, "resources": None, "elements": None}
        try:
            client = self.client(api_key)
            ctx["client_id"], ctx["department"] = client.client_id, client.department
            self.admit(client)
            if raw is None:
                raise Refused(413, "invalid", f"request body over {MAX_BODY} bytes")
            try:
                body = json.loads(raw)
            except ValueError:
                raise Refused(422, "invalid", "the body is not JSON") from None
            if not isinstance(body, dict):
                raise Refused(422, "invalid", "the body is not a JSON object")
            for f in ("service_item", "purpose", "application_no"):
                if body.get(f) is not None and not isinstance(body[f], str):
                    raise Refused(422, "invalid", f"{f}: expected a string")
            ctx["purpose"] = (body.get("service_item") or body.get("purpose") or endpoint)[:200]
            ctx["application_no"] = (body.get("application_no") or None) and body["application_no"][:100]
            ctx["subject_token"] = self.subject(body)
            payload = (self.verify if endpoint == "verify" else self.prefill)(client, body, ctx)
        except Refused as exc:
            seq = self.log.append(**ctx, outcome=exc.outcome, status_code=exc.status, reason=exc.reason)
            return exc.status, {"request": seq, "error": exc.reason}
        seq = self.log.append(**ctx, outcome="ok", status_code=200, reason=None)
        return 200, {"request": seq, **payload}

    # --- the two services ----------------------------------------------------------------------
    def verify(self, client: Client, body: dict, ctx: dict) -> dict:
        claims = body.get("claims")
        if not isinstance(claims, dict) or not claims or len(claims) > MAX_CLAIMS:
            raise Refused(422, "invalid", f"claims: expected an object of 1..{MAX_CLAIMS} element -> value")
        unknown = [str(e) for e in claims if e not in self.needs.elements]
        if unknown:
            raise Refused(422, "invalid", f"claims: unknown element(s) {', '.join(sorted(unknown))[:200]}; "
                                           f"known: {', '.join(self.needs.elements)}")
        ctx["elements"] = ",".join(claims)
        ctx["resources"] = ",".join(sorted({self.needs.elements[e].resource for e in claims}))
        self.check_scope(client, ctx["resources"].split(","))
        person = self.index.person(ctx["subject_token"])
        today = date.today()
        results = {}
        for name, claimed in claims.items():
            spec = self.needs.elements[name]
            if person is None:
                results[name] = UNKNOWN
            elif spec.source == "golden":
                results[name] = compare_golden(spec.column, claimed, person.values.get(spec.column))
            else:
                results[name] = compare_certificate(person, claimed, spec.certificate_type, today)
        return {"subject": "found" if person is not None else "unknown", "results": results}

    def prefill(self, client: Client, body: dict, ctx: dict) -> dict:
        item = body.get("service_item")
        if not isinstance(item, str) or item not in self.needs.items:
            raise Refused(422, "invalid", "service_item: expected a service item with defined needs "
                                          f"({', '.join(sorted(self.needs.items))})")
        wanted = self.needs.items[item]
        ctx["elements"] = ",".join(wanted)
        ctx["resources"] = ",".join(sorted({self.needs.elements[e].resource for e in wanted}))
        self.check_scope(client, ctx["resources"].split(","))
        person = self.index.person(ctx["subject_token"])
        today = date.today()
        out, missing = {}, []
        for name in wanted:
            spec = self.needs.elements[name]
            entry = None
            if person is not None and spec.source == "golden":
                value = person.values.get(spec.column)
                if value is not None:
                    source = person.lineage.get(spec.column)
                    entry = {"value": value.isoformat() if isinstance(value, date) else value,
                             "source_department": self.dept_of_source.get(source), "source_system": source}
            elif person is not None:
                cert = valid_certificate(person, spec.certificate_type, today)
                if cert is not None:
                    entry = {"value": cert.number, "source_department": self.dept_of_source.get(cert.source_system),
                             "source_system": cert.source_system, "issuer": cert.issuer,
                             "valid_until": cert.expiry.isoformat() if cert.expiry else None}
            if entry is None:
                missing.append(name)
            else:
                out[name] = entry
        return {"service_item": item, "subject": "found" if person is not None else "unknown",
                "elements": out, "missing": missing}


def _freeze() -> None:
    """Move the index's objects out of the garbage collector's generations: a full collection
    would otherwise walk every person on some request and stall it (the p99)."""
    import gc

    gc.collect()
    gc.freeze()


def _json(status: int, payload: dict) -> Response:  # noqa: D103
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(), status_code=status,
                    media_type="application/json")


def create_app(url: str | None = None, key: bytes | None = None, refresh_seconds: float | None = None):
    """The ASGI app; uvicorn calls it as a factory (`govdata serve`). The index is loaded here,
    before the server listens. POST /verify and /prefill are answered by a plain ASGI handler in
    front of FastAPI (the hot path: no routing, no request objects); everything else — /health,
    the OpenAPI schema with the same two operations, lifespan — is FastAPI's."""
    from govdata.settings import get_settings

    settings = get_settings()
    url = url or settings.warehouse_url
    key = key or settings.token_key()
    refresh = refresh_seconds if refresh_seconds is not None else float(
        os.environ.get("GOVDATA_SHARE_REFRESH_SECONDS", "10"))
    service = Service(url, key, refresh_seconds=refresh,
                      log_interval=float(os.environ.get("GOVDATA_SHARE_LOG_INTERVAL", "1.0")))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    api = FastAPI(title="govdata verification and prefill service", lifespan=lifespan,
                  description=__doc__, docs_url=None, redoc_url=None)
    api.state.service = service

    @api.post("/verify", summary="Does each claimed element agree with the shared data?")
    async def verify(request: Request) -> Response:
        return _json(*service.handle("verify", request.headers.get("x-api-key"), await request.body()))

    @api.post("/prefill", summary="The elements a service item needs, with their source departments")
    async def prefill(request: Request) -> Response:
        return _json(*service.handle("prefill", request.headers.get("x-api-key"), await request.body()))

    @api.get("/health")
    async def health() -> Response:
        return _json(200, {"status": "ok", "index_version": [str(v) for v in service.index.version],
                           "log_written": service.log.written})

    fast = {"/verify": "verify", "/prefill": "prefill"}

    async def app(scope, receive, send):
        endpoint = fast.get(scope.get("path")) if scope["type"] == "http" and scope["method"] == "POST" else None
        if endpoint is None:
            return await api(scope, receive, send)
        api_key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= MAX_BODY:
                chunks.append(chunk)
            more = message.get("more_body", False)
        status, payload = service.handle(endpoint, api_key, b"".join(chunks) if size <= MAX_BODY else None)
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    app.state = api.state   # type: ignore[attr-defined]
    return app
