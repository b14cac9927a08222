"""Load standards/ (elements.yaml, codes/*.csv, survivorship.yaml, row_rules.yaml) into typed objects.

Loading is strict about structure (a malformed file raises StandardsError naming file and key);
cross-references (code tables, successors, duplicates) are reported by standards.check.
"""
from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from govdata.standards.model import KINDS, Element, Standards

STANDARDS_ROOT = Path(__file__).resolve().parent
ELEMENT_TYPES = ("string", "name", "id_number", "uscc", "org_code", "reg_no", "tax_no", "code",
                 "date", "timestamp", "integer", "phone", "address")
PII_CLASSES = ("none", "identifier", "contact", "quasi")
ELEMENT_REQUIRED_KEYS = ("type", "zh", "en", "standard", "rule")
ELEMENT_OPTIONAL_KEYS = ("pii", "code_table", "pattern", "required", "critical", "max_length", "minimum", "maximum")
SURVIVORSHIP_RULES = ("trust_order", "most_recent", "most_frequent")


class StandardsError(ValueError):
    """A standards file is malformed; the message names the file and the key."""

    def __init__(self, file: Path | str, key: str, expected: str):
        self.file, self.key, self.expected = str(file), key, expected
        super().__init__(f"{file}: {key}: expected {expected}")


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise StandardsError(path, "(file)", "an existing YAML file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise StandardsError(path, where, f"valid YAML ({getattr(exc, 'problem', exc)})") from exc


def parse_element(kind: str, name: str, spec: Any, file: Path) -> Element:
    """One elements.yaml entry -> Element; raises StandardsError on a wrong key or value."""
    where = f"{kind}.{name}"
    if not isinstance(spec, dict):
        raise StandardsError(file, where, "a mapping of element properties")
    for key in ELEMENT_REQUIRED_KEYS:
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise StandardsError(file, f"{where}.{key}", "a non-empty string")
    unknown = set(spec) - set(ELEMENT_REQUIRED_KEYS) - set(ELEMENT_OPTIONAL_KEYS)
    if unknown:
        raise StandardsError(file, f"{where}.{sorted(unknown)[0]}",
                             f"one of {', '.join(ELEMENT_REQUIRED_KEYS + ELEMENT_OPTIONAL_KEYS)}")
    if spec["type"] not in ELEMENT_TYPES:
        raise StandardsError(file, f"{where}.type", f"one of {', '.join(ELEMENT_TYPES)}")
    pii = spec.get("pii", "none")
    if pii not in PII_CLASSES:
        raise StandardsError(file, f"{where}.pii", f"one of {', '.join(PII_CLASSES)}")
    for flag in ("required", "critical"):
        if not isinstance(spec.get(flag, False), bool):
            raise StandardsError(file, f"{where}.{flag}", "true or false")
    for text in ("code_table", "pattern"):
        if spec.get(text) is not None and not isinstance(spec[text], str):
            raise StandardsError(file, f"{where}.{text}", "a string")
    # bool is an int in Python: `max_length: true` must not pass as 1
    if spec.get("max_length") is not None and (type(spec["max_length"]) is not int or spec["max_length"] < 1):
        raise StandardsError(file, f"{where}.max_length", "a positive integer (characters)")
    for bound in ("minimum", "maximum"):
        if spec.get(bound) is not None:
            if spec["type"] != "integer":
                raise StandardsError(file, f"{where}.{bound}", "only on elements of type integer")
            if type(spec[bound]) is not int:
                raise StandardsError(file, f"{where}.{bound}", "an integer")
    if spec.get("minimum") is not None and spec.get("maximum") is not None and spec["minimum"] > spec["maximum"]:
        raise StandardsError(file, f"{where}.minimum", f"at most maximum ({spec['maximum']})")
    return Element(name=name, kind=kind, type=spec["type"], zh=spec["zh"], en=spec["en"],
                   standard=spec["standard"], rule=spec["rule"], pii=pii,
                   code_table=spec.get("code_table"), pattern=spec.get("pattern"),
                   required=spec.get("required", False), critical=spec.get("critical", False),
                   max_length=spec.get("max_length"), minimum=spec.get("minimum"), maximum=spec.get("maximum"))


def parse_elements(raw: Any, file: Path) -> dict[str, dict[str, Element]]:
    if not isinstance(raw, dict):
        raise StandardsError(file, "(top level)", f"a mapping of kinds ({', '.join(KINDS)})")
    unknown = set(raw) - set(KINDS)
    if unknown:
        raise StandardsError(file, str(sorted(unknown)[0]), f"a kind: one of {', '.join(KINDS)}")
    elements: dict[str, dict[str, Element]] = {}
    for kind in KINDS:
        specs = raw.get(kind)
        if not isinstance(specs, dict) or not specs:
            raise StandardsError(file, kind, "a non-empty mapping of element name -> properties")
        elements[kind] = {str(name): parse_element(kind, str(name), spec, file)
                          for name, spec in specs.items()}
    return elements


def read_code_table(path: Path) -> pd.DataFrame:
    """Every column as string, empty cells as '' (never NaN), so codes like '01' survive."""
    try:
        # utf-8-sig: spreadsheet tools often save a BOM, which would otherwise rename the first column
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise StandardsError(path, "(file)", f"a UTF-8 CSV with a header row ({exc})") from exc


def read_code_tables(codes_dir: Path) -> dict[str, pd.DataFrame]:
    if not codes_dir.is_dir():
        raise StandardsError(codes_dir, "(folder)", "a folder of code-table CSV files")
    return {path.stem: read_code_table(path) for path in sorted(codes_dir.glob("*.csv"))}


def read_standards(root: Path) -> Standards:
    """Elements and code tables read from disk now (no cache)."""
    file = root / "elements.yaml"
    elements = parse_elements(read_yaml(file), file)
    return Standards(elements=elements, code_tables=read_code_tables(root / "codes"), root=root)


@functools.lru_cache(maxsize=8)
def _load_standards_cached(root: Path) -> Standards:
    return read_standards(root)


def load_standards(root: Path | None = None) -> Standards:
    """Elements and code tables of a standards folder (default: this package's folder).

    Cached per resolved folder: callers share one object and must not modify it.
    """
    return _load_standards_cached(Path(root or STANDARDS_ROOT).resolve())


def load_code_catalogue(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """codes/codes.yaml: table name -> {title, source, version, licence, key, references}."""
    file = Path(root or STANDARDS_ROOT).resolve() / "codes" / "codes.yaml"
    raw = read_yaml(file)
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise StandardsError(file, "(top level)", "a mapping of table name -> {title, source, version, licence}")
    return raw


def parse_survivorship(raw: Any, file: Path, elements: Mapping[str, Collection[str]]) -> dict[str, dict[str, Any]]:
    """Validate survivorship.yaml's shape; returns it unchanged."""
    if not isinstance(raw, dict):
        raise StandardsError(file, "(top level)", "a mapping of kind -> survivorship rules")
    for kind, spec in raw.items():
        if kind not in elements:
            raise StandardsError(file, str(kind), f"a kind: one of {', '.join(KINDS)}")
        if not isinstance(spec, dict):
            raise StandardsError(file, kind, "a mapping with trust_order, default, tiebreak, elements")
        order = spec.get("trust_order")
        if not isinstance(order, list) or not order or not all(isinstance(s, str) for s in order):
            raise StandardsError(file, f"{kind}.trust_order", "a non-empty list of source names")
        for key in ("default", "tiebreak"):
            if spec.get(key) not in SURVIVORSHIP_RULES:
                raise StandardsError(file, f"{kind}.{key}", f"one of {', '.join(SURVIVORSHIP_RULES)}")
        rules = spec.get("elements", {})
        if not isinstance(rules, dict):
            raise StandardsError(file, f"{kind}.elements", "a mapping of element -> rule")
        for element, rule in rules.items():
            if element not in elements[kind]:
                raise StandardsError(file, f"{kind}.elements.{element}", f"an element of kind {kind}")
            if rule not in SURVIVORSHIP_RULES:
                raise StandardsError(file, f"{kind}.elements.{element}", f"one of {', '.join(SURVIVORSHIP_RULES)}")
    return raw


def load_survivorship(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """survivorship.yaml: kind -> {trust_order, default, tiebreak, elements: {element: rule}}."""
    folder = Path(root or STANDARDS_ROOT).resolve()
    file = folder / "survivorship.yaml"
    return parse_survivorship(read_yaml(file), file, load_standards(folder).elements)


def survivorship_rule(survivorship: dict[str, dict[str, Any]], kind: str, element: str) -> str:
    """The rule for one element: its own entry, else the kind's default."""
    spec = survivorship[kind]
    return spec.get("elements", {}).get(element, spec["default"])


def load_row_rules(root: Path | None = None) -> dict[str, list[list[str]]]:
    """row_rules.yaml: kind -> required_one_of groups (each group needs one non-null element)."""
    folder = Path(root or STANDARDS_ROOT).resolve()
    file = folder / "row_rules.yaml"
    return parse_row_rules(read_yaml(file), file, load_standards(folder).elements)


def parse_row_rules(raw: Any, file: Path, elements: Mapping[str, Collection[str]]) -> dict[str, list[list[str]]]:
    if not isinstance(raw, dict):
        raise StandardsError(file, "(top level)", "a mapping of kind -> {required_one_of}")
    rules: dict[str, list[list[str]]] = {kind: [] for kind in KINDS}
    for kind, spec in raw.items():
        if kind not in elements:
            raise StandardsError(file, str(kind), f"a kind: one of {', '.join(KINDS)}")
        groups = (spec or {}).get("required_one_of", [])
        if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
            raise StandardsError(file, f"{kind}.required_one_of", "a list of non-empty lists of element names")
        for group in groups:
            for name in group:
                if name not in elements[kind]:
                    raise StandardsError(file, f"{kind}.required_one_of", f"elements of kind {kind}, not {name!r}")
        rules[kind] = groups
    return rules
