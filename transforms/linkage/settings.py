"""The linkage declaration in standards/linkage.yaml, as Splink declares a model: per kind the
thresholds, the blocking rules (name + the comparison-view columns whose values a pair must
share) and the comparisons (name, comparator from compare.py, columns, m/u priors; `identifier`:
agreement proves one person, so a department's second record may join; `u_scaled_by`: u times
the number of persons using the value), and for enterprises the order of the identifier rules.

validate() lists every problem (one line each, for `govdata standards check`); parse() turns a
valid section into LinkConfig arguments and raises on the first problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .compare import COMPARATORS

# the comparison view link_persons builds (persons.view_columns): what comparisons may read
PERSON_VIEW = ("id_number", "document", "name", "pinyin", "latin_key", "latin_joined", "birth", "sex",
               "phone", "phone_persons", "address", "address_persons", "region")
# what blocking rules may combine: view columns plus the birth date's parts and name pieces
PERSON_BLOCKING = ("birth_day", "birth_year", "surname_initial", "last_char", "pinyin", "phone", "document",
                   "latin_key", "latin_joined", "address", "name", "sex", "region")
ENTERPRISE_RULES = ("uscc", "org_code", "tax_no", "reg_no", "name")
THRESHOLDS = ("match_threshold", "review_threshold")


@dataclass(frozen=True)
class BlockingRule:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    name: str
    comparator: str
    columns: tuple[str, ...]
    m: float
    u: float
    identifier: bool = False
    u_scaled_by: str | None = None


def _is_prob(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def _columns_problems(where: str, columns: Any, allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        return [(f"{where}.columns", "expected a non-empty list of column names")]
    return [(f"{where}.columns", f"unknown column {c!r}; expected one of {', '.join(allowed)}")
            for c in columns if c not in allowed]


def _blocking_problems(rules: Any) -> list[tuple[str, str]]:
    if not isinstance(rules, list) or not rules:
        return [("person.blocking", "expected a non-empty list of {name, columns}")]
    out, seen = [], set()
    for i, rule in enumerate(rules):
        where = f"person.blocking[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("name"), str):
            out.append((where, "expected a mapping with name and columns"))
            continue
        where = f"person.blocking.{rule['name']}"
        if rule["name"] in seen:
            out.append((where, "duplicate blocking rule name"))
        seen.add(rule["name"])
        out += [(f"{where}.{k}", "unknown key; expected name, columns") for k in rule if k not in ("name", "columns")]
        out += _columns_problems(where, rule.get("columns"), PERSON_BLOCKING)
    return out


def _comparison_problems(comparisons: Any) -> list[tuple[str, str]]:
    if not isinstance(comparisons, list) or not comparisons:
        return [("person.comparisons", "expected a non-empty list of {name, comparator, columns, m, u}")]
    out, seen = [], set()
    keys = ("name", "comparator", "columns", "m", "u", "identifier", "u_scaled_by")
    for i, comp in enumerate(comparisons):
        if not isinstance(comp, dict) or not isinstance(comp.get("name"), str):
            out.append((f"person.comparisons[{i}]", "expected a mapping with name, comparator, columns, m, u"))
            continue
        where = f"person.comparisons.{comp['name']}"
        if comp["name"] in seen:
            out.append((where, "duplicate comparison name"))
        seen.add(comp["name"])
        out += [(f"{where}.{k}", f"unknown key; expected {', '.join(keys)}") for k in comp if k not in keys]
        comparator = comp.get("comparator")
        if comparator not in COMPARATORS:
            known = ", ".join(sorted(COMPARATORS))
            out.append((f"{where}.comparator", f"unknown comparator {comparator!r}; expected one of {known}"))
        column_problems = _columns_problems(where, comp.get("columns"), PERSON_VIEW)
        out += column_problems
        if comparator in COMPARATORS and not column_problems and len(comp["columns"]) != COMPARATORS[comparator][1]:
            reads = COMPARATORS[comparator][1]
            out.append((f"{where}.columns", f"comparator {comparator} reads {reads} column(s), not {len(comp['columns'])}"))
        for p in ("m", "u"):
            if not _is_prob(comp.get(p)):
                out.append((f"{where}.{p}", f"expected a probability strictly between 0 and 1, not {comp.get(p)!r}"))
        if _is_prob(comp.get("m")) and _is_prob(comp.get("u")) and comp["m"] <= comp["u"]:
            out.append((where, f"m ({comp['m']}) must exceed u ({comp['u']}): agreement must be evidence for a match"))
        if "identifier" in comp and not isinstance(comp["identifier"], bool):
            out.append((f"{where}.identifier", f"expected true or false, not {comp['identifier']!r}"))
        scaled = comp.get("u_scaled_by")
        if scaled is not None and scaled not in ("phone_persons", "address_persons"):
            out.append((f"{where}.u_scaled_by", f"expected phone_persons or address_persons, not {scaled!r}"))
    return out


def validate(raw: Any) -> list[tuple[str, str]]:
    """(location, message) for every problem of linkage.yaml's declaration parts: thresholds
    (numbers, review below match), person blocking and comparisons, enterprise rules. Unknown
    kinds and plain settings' types are checked by standards/check.py against LinkConfig."""
    if not isinstance(raw, dict):
        return []
    out: list[tuple[str, str]] = []
    for kind in ("person", "enterprise"):
        section = raw.get(kind)
        if not isinstance(section, dict):
            continue
        match, review = section.get("match_threshold"), section.get("review_threshold")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (match, review))
        if numbers and review >= match:
            out.append((f"{kind}.review_threshold",
                        f"must be below match_threshold ({review} >= {match}): the review band would be empty"))
        if kind == "person":
            if "blocking" in section:
                out += _blocking_problems(section["blocking"])
            if "comparisons" in section:
                out += _comparison_problems(section["comparisons"])
        if kind == "enterprise" and "rules" in section:
            rules = section["rules"]
            if not isinstance(rules, list) or sorted(rules, key=str) != sorted(ENTERPRISE_RULES):
                wanted = ", ".join(ENTERPRISE_RULES)
                out.append(("enterprise.rules", f"expected each of {wanted} once, in the order to apply them, not {rules!r}"))
    return out


def parse(kind: str, section: dict) -> dict:
    """LinkConfig keyword arguments from one kind's section: blocking rules and comparisons as
    tuples of BlockingRule / Comparison, and m_prior / u_prior from the comparisons."""
    problems = validate({kind: section})
    if problems:
        where, message = problems[0]
        raise ValueError(f"standards/linkage.yaml: {where}: {message}")
    out = dict(section)
    if "blocking" in section:
        out["blocking"] = tuple(BlockingRule(r["name"], tuple(r["columns"])) for r in section["blocking"])
    if "comparisons" in section:
        comps = tuple(Comparison(c["name"], c["comparator"], tuple(c["columns"]), float(c["m"]), float(c["u"]),
                                 bool(c.get("identifier", False)), c.get("u_scaled_by"))
                      for c in section["comparisons"])
        out["comparisons"] = comps
        out.setdefault("m_prior", {c.name: c.m for c in comps})
        out.setdefault("u_prior", {c.name: c.u for c in comps})
    if "rules" in section:
        out["rules"] = tuple(section["rules"])
    return out



@lru_cache(maxsize=1)
def shipped() -> dict:
    """The declaration shipped in standards/linkage.yaml: LinkConfig's defaults."""
    import yaml

    from govdata.standards.registry import STANDARDS_ROOT

    raw = yaml.safe_load((Path(STANDARDS_ROOT) / "linkage.yaml").read_text(encoding="utf-8")) or {}
    person = parse("person", raw.get("person") or {})
    enterprise = parse("enterprise", raw.get("enterprise") or {})
    return {"blocking": person["blocking"], "comparisons": person["comparisons"], "m_prior": person["m_prior"],
            "u_prior": person["u_prior"], "rules": enterprise["rules"]}
