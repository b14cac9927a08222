"""Expectation suites generated from the standards (never hand-written per element).

Every element of a kind yields its checks from its Element fields: not-null when
`required`, regex when it has a `pattern`, value-set when it has a `code_table`, a range
for dates and integers (bounds from expectations/quality.yaml). Severity comes from
`Element.critical`. With a source, the suite covers the elements that source maps (plus
value checks on derived columns present in its frame) and adds a row-count check; the
quarantine rate is checked by `build_quarantine_suite` on a one-row summary frame
(quarantined rows are not in the standardised frame).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import yaml
from govdata.standards.model import KINDS, Element, SourceConfig, Standards

QUALITY_FILE = Path(__file__).with_name("quality.yaml")
RANGE_TYPES = ("date", "integer", "timestamp")


@lru_cache(maxsize=4)
def load_quality_config(path: Path = QUALITY_FILE) -> dict[str, Any]:
    """The stewards' thresholds (quality.yaml)."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read data-quality config {path}: {exc}") from exc
    for key in ("max_quarantine_rate", "severity", "ranges"):
        if key not in config:
            raise ValueError(f"data-quality config {path} lacks key {key!r}")
    return config


def severity_of(element: Element) -> str:
    return "critical" if element.critical else "warning"


def suite_name(kind: str, source: SourceConfig | None) -> str:
    return f"std.{kind}.{source.name}" if source else f"std.{kind}"


def quarantine_suite_name(source: SourceConfig) -> str:
    return f"quarantine.{source.name}"


def _resolve_bound(value: Any, today: dt.date) -> Any:
    """Date bounds as datetimes: GX parses a date-like string into a datetime.date, which
    pandas refuses to compare with a datetime64 column. 'today' is the end of today."""
    if value == "today":
        return dt.datetime.combine(today, dt.time.max)
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time.min)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"data-quality range bound {value!r} is not an ISO date or 'today'") from None
    return value


def range_for(element: Element, config: dict[str, Any], today: dt.date) -> dict[str, Any] | None:
    """min/max for an element of a range type, or None when no bound applies."""
    if element.type not in RANGE_TYPES:
        return None
    bounds = config["ranges"].get(element.name)
    if bounds is None and element.type == "date":
        bounds = config.get("date_default")
    if not bounds:
        return None
    return {
        "min_value": _resolve_bound(bounds.get("min"), today),
        "max_value": _resolve_bound(bounds.get("max"), today),
    }


def element_expectations(
    element: Element, standards: Standards, config: dict[str, Any], today: dt.date,
    completeness: bool = True,
) -> list[gxe.Expectation]:
    """The checks one element's definition asks for, in a fixed order. `completeness=False`
    leaves out not-null (for elements a source does not map but normalise derives)."""
    meta = {"element": element.name, "kind": element.kind}
    common = {"column": element.name, "severity": severity_of(element), "meta": meta}
    out: list[gxe.Expectation] = []
    if element.required and completeness:
        out.append(gxe.ExpectColumnValuesToNotBeNull(**common))
    if element.pattern:
        out.append(gxe.ExpectColumnValuesToMatchRegex(regex=element.pattern, **common))
    if element.code_table:
        out.append(code_table_expectation(element, standards, config, common))
    bounds = range_for(element, config, today)
    if bounds:
        out.append(gxe.ExpectColumnValuesToBeBetween(**bounds, **common))
    return out


def code_table_expectation(element: Element, standards: Standards, config: dict[str, Any],
                           common: dict[str, Any]) -> gxe.Expectation:
    """Value-set check against the element's code table. A large table (regions: ~6,000
    codes) becomes an equivalent prefix-tree regex: GX re-serialises every expectation's
    kwargs hundreds of times per run, which with the list inline costs seconds per suite."""
    values = code_values(standards, element)
    if len(values) <= config.get("inline_code_table_max", 200):
        return gxe.ExpectColumnValuesToBeInSet(value_set=values, **common)
    meta = {**common["meta"], "check": "code_table", "code_table": element.code_table}
    return gxe.ExpectColumnValuesToMatchRegex(regex=cached_membership_regex(tuple(values)), **{**common, "meta": meta})


@lru_cache(maxsize=16)
def cached_membership_regex(values: tuple[str, ...]) -> str:
    """membership_regex once per code table and run (every source checks region_code)."""
    return membership_regex(values)


def membership_regex(values: Iterable[str]) -> str:
    """An anchored regex matching exactly `values`, factored as a prefix tree so matching
    costs one step per character rather than one try per value."""
    root: dict = {}
    for value in values:
        node = root
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}
    return "^" + _trie_pattern(root) + "$"


def _trie_pattern(node: dict) -> str:
    ends_here = "" in node
    finals = sorted(c for c, child in node.items() if c and list(child) == [""])
    inner = sorted(c for c, child in node.items() if c and list(child) != [""])
    parts = [re.escape(c) + _trie_pattern(node[c]) for c in inner]
    if finals:
        parts.append(re.escape(finals[0]) if len(finals) == 1 else "[" + "".join(re.escape(c) for c in finals) + "]")
    if not parts:
        return ""
    body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    return f"(?:{body})?" if ends_here else body


def code_values(standards: Standards, element: Element) -> list[str]:
    table = standards.code_tables.get(element.code_table)
    if table is None:
        raise ValueError(
            f"element {element.kind}.{element.name} names code table {element.code_table!r}, "
            f"which is not in standards (known: {sorted(standards.code_tables)})"
        )
    if "code" not in table.columns:
        raise ValueError(f"code table {element.code_table!r} has no 'code' column")
    return sorted(table["code"].dropna().astype(str).unique().tolist())


def source_max_quarantine_rate(source: SourceConfig, config: dict[str, Any]) -> float:
    """Per-source override (source YAML `quality: {max_quarantine_rate: …}`) or the default."""
    quality = source.extra.get("quality") or {}
    rate = quality.get("max_quarantine_rate", config["max_quarantine_rate"])
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(
            f"source {source.name}: quality.max_quarantine_rate must be a number in [0, 1], got {rate!r}"
        )
    return float(rate)


def _elements_for(kind: str, standards: Standards, source: SourceConfig | None,
                  present: Iterable[str] | None) -> list[tuple[Element, bool]]:
    """(element, mapped) pairs in standards order, so suites are stable whatever order the
    source YAML lists its columns in. Without a source every element counts as mapped."""
    if kind not in KINDS or kind not in standards.elements:
        raise ValueError(f"unknown kind {kind!r}; standards define {sorted(standards.elements)}")
    elements = standards.elements[kind]
    if source is None:
        return [(e, True) for e in elements.values()]
    if source.kind != kind:
        raise ValueError(f"source {source.name} is of kind {source.kind!r}, not {kind!r}")
    unknown = [e for e in source.elements if e not in elements]
    if unknown:
        raise ValueError(f"source {source.name} maps columns to unknown {kind} elements: {unknown}")
    mapped = set(source.elements)
    derived = set(() if present is None else present) - mapped
    return [(e, name in mapped) for name, e in elements.items() if name in mapped or name in derived]


def build_suite(
    kind: str,
    standards: Standards,
    source: SourceConfig | None = None,
    today: dt.date | None = None,
    config: dict[str, Any] | None = None,
    present: Iterable[str] | None = None,
) -> gx.ExpectationSuite:
    """Suite for a kind's standardised frame: element checks (+ row count > 0 with a source).

    With a source, the elements it maps get every check; elements in `present` (the frame's
    columns) that it does not map — derived ones like region_code — get value checks only."""
    config = config or load_quality_config()
    today = today or dt.date.today()
    expectations = [
        expectation
        for element, mapped in _elements_for(kind, standards, source, present)
        for expectation in element_expectations(element, standards, config, today, completeness=mapped)
    ]
    if source is not None:
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=1,
                severity=config["severity"]["row_count"],
                meta={"element": None, "check": "row_count"},
            )
        )
    # Passed to the constructor: add_expectation() would need an active GX context.
    return gx.ExpectationSuite(name=suite_name(kind, source), expectations=expectations)


def build_quarantine_suite(
    source: SourceConfig, config: dict[str, Any] | None = None
) -> gx.ExpectationSuite:
    """Suite for the one-row summary frame (raw_rows, rejected_rows, quarantine_rate)."""
    config = config or load_quality_config()
    check = gxe.ExpectColumnValuesToBeBetween(
        column="quarantine_rate",
        min_value=0,
        max_value=source_max_quarantine_rate(source, config),
        severity=config["severity"]["quarantine_rate"],
        meta={"element": None, "check": "quarantine_rate"},
    )
    return gx.ExpectationSuite(name=quarantine_suite_name(source), expectations=[check])


def describe_suite(suite: gx.ExpectationSuite) -> list[tuple[str, str | None]]:
    """(expectation type, column) per expectation: a plain view for tests and logs."""
    return [(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations]
