"""The resource catalogue (standards/catalogue.yaml, GB/T 21063 core metadata) and what the
verification/prefill service needs (standards/service_needs.yaml): loaders and checks.

`check_resource_catalogue(root)` is called by `govdata standards check`: every resource exists
in the warehouse schema (a table of warehouse.schema or a mart in warehouse/marts/), its columns
exist, and every analyst-visible table and every mart is catalogued.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govdata.standards.registry import STANDARDS_ROOT, StandardsError, read_yaml

SHARING_CLASSES = ("无条件", "有条件", "不予")
OPEN_CLASSES = ("开放", "有条件开放", "不予开放")
RESOURCE_KINDS = ("table", "mart", "element_group")
REQUIRED = ("code", "name", "provider", "summary", "sharing_class", "sharing_conditions", "open_class",
            "update_cycle", "elements", "warehouse")
CODE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
ELEMENT_SOURCES = ("golden", "certificate")
# A row limit is a plain predicate: column comparisons joined by AND/OR, no statements or comments.
_ROWS_FORBIDDEN = re.compile(r";|--|/\*|\b(select|insert|update|delete|drop|alter|grant|create)\b", re.I)


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    source_systems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resource:
    code: str
    name: str
    provider: str
    summary: str
    sharing_class: str
    sharing_conditions: str
    open_class: str
    update_cycle: str
    elements: tuple[str, ...]
    object: str
    kind: str
    columns: tuple[str, ...] = ()     # empty: every column
    rows: str = ""                    # empty: every row

    @property
    def shareable(self) -> bool:
        return self.sharing_class != "不予"

    @property
    def conditional(self) -> bool:
        return self.sharing_class == "有条件"

    @property
    def view(self) -> str | None:
        """The view a consumer reads when the resource has a row limit (PostgreSQL: schema share)."""
        return f"share.{self.code}" if self.rows else None


@dataclass(frozen=True)
class Catalogue:
    version: str
    departments: dict[str, Department]
    resources: dict[str, Resource]

    def resource(self, code: str) -> Resource:
        try:
            return self.resources[code]
        except KeyError:
            raise KeyError(f"unknown resource {code!r}; catalogued: {', '.join(sorted(self.resources))}") from None

    def department(self, code: str) -> Department:
        try:
            return self.departments[code]
        except KeyError:
            raise KeyError(f"unknown department {code!r}; catalogued: {', '.join(sorted(self.departments))}") from None

    def department_of_source(self) -> dict[str, Department]:
        """source_system -> the department that runs it."""
        return {s: d for d in self.departments.values() for s in d.source_systems}


@dataclass(frozen=True)
class ServiceElement:
    name: str
    resource: str
    source: str                      # golden | certificate
    column: str = ""
    certificate_type: str = ""       # certificate elements: the type; empty = any certificate


@dataclass(frozen=True)
class ServiceNeeds:
    elements: dict[str, ServiceElement]
    items: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _str_list(value: Any, file: Path, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise StandardsError(file, key, "a list of strings")
    return tuple(value)


def parse_catalogue(raw: Any, file: Path) -> Catalogue:
    """A Catalogue from the parsed YAML; StandardsError names the first malformed key."""
    if not isinstance(raw, dict):
        raise StandardsError(file, "(top level)", "a mapping with departments and resources")
    depts: dict[str, Department] = {}
    for i, d in enumerate(raw.get("departments") or []):
        if not isinstance(d, dict) or not isinstance(d.get("code"), str) or not isinstance(d.get("name"), str):
            raise StandardsError(file, f"departments[{i}]", "a mapping with code and name")
        if d["code"] in depts:
            raise StandardsError(file, f"departments[{i}].code", f"a unique code ({d['code']} twice)")
        depts[d["code"]] = Department(d["code"], d["name"], _str_list(d.get("source_systems"), file,
                                                                          f"departments[{i}].source_systems"))
    resources: dict[str, Resource] = {}
    items = raw.get("resources")
    if not isinstance(items, list) or not items:
        raise StandardsError(file, "resources", "a non-empty list of resources")
    for i, r in enumerate(items):
        where = f"resources[{i}]"
        if not isinstance(r, dict):
            raise StandardsError(file, where, "a mapping")
        where = f"resources[{i}] ({r.get('code', '?')})"
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise StandardsError(file, where, f"the key(s) {', '.join(missing)}")
        wh = r["warehouse"]
        if not isinstance(wh, dict) or not isinstance(wh.get("object"), str) or wh.get("kind") not in RESOURCE_KINDS:
            raise StandardsError(file, f"{where}.warehouse",
                                 f"a mapping with object and kind ({' | '.join(RESOURCE_KINDS)})")
        text = {k: r[k] if r[k] is not None else "" for k in REQUIRED if k not in ("elements", "warehouse")}
        for k, v in text.items():
            if not isinstance(v, str):
                raise StandardsError(file, f"{where}.{k}", "a string")
        rows = wh.get("rows") or ""
        if not isinstance(rows, str):
            raise StandardsError(file, f"{where}.warehouse.rows", "a SQL predicate as a string")
        res = Resource(**text, elements=_str_list(r["elements"], file, f"{where}.elements"), object=wh["object"],
                       kind=wh["kind"], columns=_str_list(wh.get("columns"), file, f"{where}.warehouse.columns"),
                       rows=rows)
        if res.code in resources:
            raise StandardsError(file, f"{where}.code", f"a unique code ({res.code} twice)")
        resources[res.code] = res
    return Catalogue(str(raw.get("version", "")), depts, resources)


def load_catalogue(root: Path | None = None) -> Catalogue:
    file = Path(root or STANDARDS_ROOT).resolve() / "catalogue.yaml"
    return parse_catalogue(read_yaml(file), file)


def parse_service_needs(raw: Any, file: Path) -> ServiceNeeds:
    if not isinstance(raw, dict) or not isinstance(raw.get("elements"), dict):
        raise StandardsError(file, "(top level)", "a mapping with elements and service_items")
    elements = {}
    for name, spec in raw["elements"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("resource"), str) \
                or spec.get("from") not in ELEMENT_SOURCES:
            raise StandardsError(file, f"elements.{name}", f"a mapping with resource and from ({' | '.join(ELEMENT_SOURCES)})")
        if spec["from"] == "golden" and not isinstance(spec.get("column"), str):
            raise StandardsError(file, f"elements.{name}.column", "the golden-record column")
        elements[str(name)] = ServiceElement(str(name), spec["resource"], spec["from"], spec.get("column") or "",
                                             spec.get("certificate_type") or "")
    items = {}
    for code, spec in (raw.get("service_items") or {}).items():
        if not isinstance(spec, dict):
            raise StandardsError(file, f"service_items.{code}", "a mapping with needs")
        items[str(code)] = _str_list(spec.get("needs"), file, f"service_items.{code}.needs")
    return ServiceNeeds(elements, items)


def load_service_needs(root: Path | None = None) -> ServiceNeeds:
    file = Path(root or STANDARDS_ROOT).resolve() / "service_needs.yaml"
    return parse_service_needs(read_yaml(file), file)


# --- checks ---------------------------------------------------------------------------------
def warehouse_objects() -> dict[str, tuple[str, set[str] | None]]:
    """Every analyst-visible warehouse object: name -> (kind, its columns or None for marts)."""
    from govdata.warehouse.load import mart_sql
    from govdata.warehouse.schema import metadata

    objects: dict[str, tuple[str, set[str] | None]] = {
        t.name: ("table", {c.name for c in t.columns}) for t in metadata.sorted_tables
        if t.schema is None and t.info["analyst"]}
    objects.update({name: ("mart", None) for name in mart_sql()})
    return objects


def check_resource_catalogue(root: Path | None = None) -> list:
    """Problems (standards.check.Problem) of catalogue.yaml and service_needs.yaml against the
    warehouse schema, the catalogue's departments and the service items."""
    from govdata.standards.check import Problem

    root = Path(root or STANDARDS_ROOT).resolve()
    file = root / "catalogue.yaml"
    try:
        cat = load_catalogue(root)
    except StandardsError as exc:
        return [Problem(str(file), exc.key, f"expected {exc.expected}")]
    problems: list = []
    objects = warehouse_objects()
    catalogued: set[str] = set()
    for r in cat.resources.values():
        where = f"resources.{r.code}"
        if not CODE.match(r.code):
            problems.append(Problem(str(file), where, "code: lower-case letters, digits and _ (it names roles and views)"))
        if r.sharing_class not in SHARING_CLASSES:
            problems.append(Problem(str(file), f"{where}.sharing_class",
                                    f"{r.sharing_class!r}: expected one of {' / '.join(SHARING_CLASSES)}"))
        if r.open_class not in OPEN_CLASSES:
            problems.append(Problem(str(file), f"{where}.open_class",
                                    f"{r.open_class!r}: expected one of {' / '.join(OPEN_CLASSES)}"))
        if r.provider not in cat.departments:
            problems.append(Problem(str(file), f"{where}.provider", f"unknown department {r.provider!r}"))
        if r.sharing_class == "有条件" and not r.sharing_conditions.strip():
            problems.append(Problem(str(file), f"{where}.sharing_conditions", "a conditional resource states its conditions"))
        if r.object not in objects:
            problems.append(Problem(str(file), f"{where}.warehouse.object",
                                    f"{r.object!r} is not an analyst-visible warehouse table or mart"))
            continue
        kind, columns = objects[r.object]
        catalogued.add(r.object)
        if (kind == "mart") != (r.kind == "mart"):
            problems.append(Problem(str(file), f"{where}.warehouse.kind", f"{r.object} is a {kind}, not a {r.kind}"))
        if r.kind == "element_group" and not r.columns:
            problems.append(Problem(str(file), f"{where}.warehouse.columns", "an element group lists its columns"))
        if columns is not None:
            unknown = [c for c in r.columns if c not in columns]
            if unknown:
                problems.append(Problem(str(file), f"{where}.warehouse.columns",
                                        f"not columns of {r.object}: {', '.join(unknown)}"))
        if r.rows:
            if kind == "mart":
                problems.append(Problem(str(file), f"{where}.warehouse.rows",
                                        "row limits apply to tables only (a mart is re-created by every run)"))
            elif _ROWS_FORBIDDEN.search(r.rows):
                problems.append(Problem(str(file), f"{where}.warehouse.rows", "a plain predicate: no statements or comments"))
    for name in sorted(set(objects) - catalogued):
        problems.append(Problem(str(file), "resources", f"{objects[name][0]} {name} is not catalogued"))
    problems += _check_service_needs(root, cat)
    return problems


def _check_service_needs(root: Path, cat: Catalogue) -> list:
    from govdata.standards.check import Problem
    from govdata.standards.registry import read_code_table

    file = root / "service_needs.yaml"
    try:
        needs = load_service_needs(root)
    except StandardsError as exc:
        return [Problem(str(file), exc.key, f"expected {exc.expected}")]
    problems = []
    golden = {c for c in (warehouse_objects().get("dim_person", ("", set()))[1] or set())}
    try:
        cert_types = set(read_code_table(root / "codes" / "certificate_type.csv")["code"])
        items = set(read_code_table(root / "codes" / "service_item.csv")["code"])
    except (StandardsError, OSError, KeyError):
        cert_types, items = None, None
    for e in needs.elements.values():
        where = f"elements.{e.name}"
        if e.resource not in cat.resources:
            problems.append(Problem(str(file), f"{where}.resource", f"unknown resource {e.resource!r}"))
        elif e.source == "golden" and e.column not in cat.resources[e.resource].columns \
                and cat.resources[e.resource].columns:
            problems.append(Problem(str(file), f"{where}.column", f"{e.column!r} is not a column of {e.resource}"))
        if e.source == "golden" and e.column not in golden:
            problems.append(Problem(str(file), f"{where}.column", f"{e.column!r} is not a column of dim_person"))
        if e.certificate_type and cert_types is not None and e.certificate_type not in cert_types:
            problems.append(Problem(str(file), f"{where}.certificate_type", f"unknown certificate type {e.certificate_type!r}"))
    for code, wanted in needs.items.items():
        if items is not None and code not in items:
            problems.append(Problem(str(file), f"service_items.{code}", "not a code of codes/service_item.csv"))
        unknown = [w for w in wanted if w not in needs.elements]
        if unknown:
            problems.append(Problem(str(file), f"service_items.{code}.needs", f"unknown element(s): {', '.join(unknown)}"))
    return problems


__all__ = ["Catalogue", "Resource", "Department", "ServiceNeeds", "ServiceElement", "load_catalogue",
           "load_service_needs", "check_resource_catalogue", "SHARING_CLASSES"]
