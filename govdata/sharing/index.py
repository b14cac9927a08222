"""The service's in-memory index: person token -> golden record fields and valid certificates,
loaded from the warehouse at start and again whenever etl_run shows a new run, so that a
request costs dictionary look-ups, not queries.

Matching never returns stored values: `compare` answers agrees / disagrees / unknown.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa

from govdata.sharing.store import WAREHOUSE_LOCK, share_connect
from govdata.warehouse.load import read_arrow_table

AGREES, DISAGREES, UNKNOWN = "agrees", "disagrees", "unknown"
GOLDEN_COLUMNS = ("person_id", "person_token", "name", "sex", "birth_date", "ethnicity", "region_code", "address",
                  "lineage")
CERT_COLUMNS = ("source_system", "certificate_no", "certificate_type", "holder_person_id", "holder_token", "issuer",
                "expiry_date", "status")
_SPACES = re.compile(r"[\s\u3000\u200b\ufeff]+")
_DOTS = re.compile(r"[\u2022\uff0e.\u30fb\u2027\u2219\uff65\u22c5\u0387]+")
_SEX = {"男": "1", "女": "2", "m": "1", "f": "2", "male": "1", "female": "2", "未知": "0", "未说明": "9"}
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")


@dataclass(frozen=True)
class Certificate:
    number: str
    type: str
    issuer: str | None
    source_system: str | None
    expiry: date | None
    status: str | None

    def valid(self, today: date) -> bool:
        return self.status == "valid" and (self.expiry is None or self.expiry >= today)


@dataclass
class Person:
    person_id: str
    values: dict[str, object]            # golden column -> value (normalised as stored)
    lineage: dict[str, str]              # element -> source_system
    certificates: list[Certificate] = field(default_factory=list)


@dataclass
class Index:
    version: tuple
    persons: dict[str, Person]           # token -> person
    loaded_at: datetime

    def person(self, token: str) -> Person | None:
        return self.persons.get(token)


def _rows(table: pa.Table | None, columns) -> list[dict]:
    if table is None:
        return []
    present = [c for c in columns if c in table.column_names]
    return table.select(present).to_pylist()


def warehouse_version(url: str) -> tuple:
    """What identifies the loaded state: the number of runs and the last one finished."""
    try:
        with WAREHOUSE_LOCK, share_connect(url, read_only=True) as db:
            return tuple(db.fetchall("SELECT count(*), max(finished_at), max(run_id) FROM etl_run")[0])
    except Exception:  # noqa: BLE001 - no warehouse yet / busy: the caller keeps what it has
        return ()


def load_index(url: str) -> Index:
    with WAREHOUSE_LOCK:
        return _load_index(url)


def _load_index(url: str) -> Index:
    version = warehouse_version(url)
    golden = _rows(read_arrow_table(url, "dim_person", list(GOLDEN_COLUMNS)), GOLDEN_COLUMNS)
    owners = _rows(read_arrow_table(url, "identifier_owner"), ("entity", "identifier_token", "master_id"))
    certs = _rows(read_arrow_table(url, "fact_certificate", list(CERT_COLUMNS)), CERT_COLUMNS)
    by_id: dict[str, Person] = {}
    persons: dict[str, Person] = {}
    for g in golden:
        try:
            lineage = json.loads(g.get("lineage") or "{}")
        except (TypeError, ValueError):
            lineage = {}
        p = Person(g["person_id"], {k: v for k, v in g.items() if k not in ("lineage", "person_id", "person_token")},
                   {str(k): str(v) for k, v in lineage.items()} if isinstance(lineage, dict) else {})
        by_id[p.person_id] = p
        if g.get("person_token"):
            persons[g["person_token"]] = p
    for o in owners:   # the identifier's resolved owner wins over a golden record carrying it
        if o.get("entity") == "person" and o["master_id"] in by_id:
            persons[o["identifier_token"]] = by_id[o["master_id"]]
    for c in certs:
        if not c.get("certificate_no"):
            continue
        holder = by_id.get(c.get("holder_person_id") or "") or persons.get(c.get("holder_token") or "")
        if holder is not None:
            holder.certificates.append(Certificate(c["certificate_no"], c.get("certificate_type") or "", c.get("issuer"),
                                                   c.get("source_system"), c.get("expiry_date"), c.get("status")))
    return Index(version, persons, datetime.now())


# --- comparing a claim with the stored value --------------------------------------------------
def normalise_text(value: str) -> str:
    from govdata.transforms.names import to_simplified

    text = _SPACES.sub("", unicodedata.normalize("NFKC", str(value)))
    return _DOTS.sub("\u00b7", to_simplified(text))


def parse_date(value) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)        # the usual form first: no strptime
    except (TypeError, ValueError):
        pass
    text = normalise_text(value)
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def compare_golden(column: str, claimed, stored) -> str:
    if stored is None or claimed is None or (isinstance(claimed, str) and not claimed.strip()):
        return UNKNOWN
    if column == "birth_date":
        d = parse_date(claimed)
        return UNKNOWN if d is None else (AGREES if d == stored else DISAGREES)
    text = normalise_text(claimed)
    if column == "sex":
        text = _SEX.get(text.lower(), text)
    return AGREES if text == normalise_text(stored) else DISAGREES


def compare_certificate(person: Person, claimed, cert_type: str, today: date) -> str:
    """agrees: the person holds a valid certificate (of the type) with this number; disagrees:
    the library holds certificates of the type for the person, none valid with this number;
    unknown: it holds none of the type for the person."""
    if claimed is None or not str(claimed).strip():
        return UNKNOWN
    mine = [c for c in person.certificates if not cert_type or c.type == cert_type]
    if not mine:
        return UNKNOWN
    number = normalise_text(claimed).upper()
    return AGREES if any(c.number.upper() == number and c.valid(today) for c in mine) else DISAGREES


def valid_certificate(person: Person, cert_type: str, today: date) -> Certificate | None:
    """The person's valid certificate of the type that runs longest (None: no such certificate)."""
    valid = [c for c in person.certificates if c.type == cert_type and c.valid(today)]
    return max(valid, key=lambda c: (c.expiry or date.max, c.number)) if valid else None
