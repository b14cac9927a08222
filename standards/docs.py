"""Data dictionary (Markdown) for stewards and analysts: elements, code tables, who supplies what,
the linkage declaration.

Run: python -m govdata.standards.docs [--sources DIR] > data_dictionary.md
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from govdata.standards.model import KINDS, SourceConfig, Standards
from govdata.standards.registry import StandardsError, load_code_catalogue, load_standards
from govdata.standards.sources import AIRFLOW_PREFIX, load_sources

ELEMENT_HEADER = ["element", "中文", "English", "type", "standard", "rule", "code table",
                  "pattern", "required", "critical", "PII"]


def cell(value: Any) -> str:
    """Markdown-safe table cell: pipes escaped, newlines flattened, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def connection_kind(connection: str) -> str:
    """Only the dialect is shown: URLs may carry hosts and passwords."""
    if connection.startswith(AIRFLOW_PREFIX):
        return "airflow connection"
    try:
        return make_url(connection).get_backend_name()
    except (ArgumentError, ValueError):  # unparsable strings are shown as unknown, never echoed
        return "unknown"


def element_section(standards: Standards, kind: str) -> list[str]:
    rows = [[f"`{e.name}`", e.zh, e.en, e.type, e.standard, e.rule, e.code_table,
             f"`{e.pattern}`" if e.pattern else None, e.required, e.critical,
             "" if e.pii == "none" else e.pii]
            for e in standards.elements.get(kind, {}).values()]
    return [f"### {kind}", "", *table(ELEMENT_HEADER, rows), ""]


def code_table_section(standards: Standards) -> list[str]:
    catalogue: dict[str, Any] = {}
    if standards.root is not None:
        try:
            catalogue = load_code_catalogue(standards.root)
        except StandardsError:
            catalogue = {}
    rows = []
    for name, frame in sorted(standards.code_tables.items()):
        spec = catalogue.get(name, {})
        rows.append([f"`{name}`", spec.get("title"), spec.get("source"), spec.get("version"),
                     spec.get("licence"), len(frame)])
    return ["## Code tables", "",
            *table(["table", "title", "source", "version", "licence", "rows"], rows), ""]


def sources_section(sources: list[SourceConfig]) -> list[str]:
    rows = [[f"`{s.name}`", s.department, s.kind, s.table, s.primary_key,
             connection_kind(s.connection), (s.incremental or {}).get("column", "full snapshot"),
             len(s.columns)] for s in sources]
    header = ["source", "department", "kind", "table", "primary key", "connection", "incremental", "mapped columns"]
    return ["## Sources", "", *table(header, rows), ""]


def supply_matrix(standards: Standards, sources: list[SourceConfig], kind: str) -> list[str]:
    """Rows: the kind's elements; columns: its sources; cell: the source column supplying it."""
    of_kind = [s for s in sources if s.kind == kind]
    if not of_kind:
        return [f"### {kind}", "", "No source supplies this kind.", ""]
    supplied_by = {s.name: {element: column for column, element in s.columns.items()} for s in of_kind}
    rows = []
    for name in standards.elements.get(kind, {}):
        columns = [supplied_by[s.name].get(name) for s in of_kind]
        rows.append([f"`{name}`", *[f"`{c}`" if c else "" for c in columns],
                     sum(c is not None for c in columns)])
    return [f"### {kind}", "", *table(["element", *[s.name for s in of_kind], "sources"], rows), ""]


def linkage_section(root: Path) -> list[str]:
    """standards/linkage.yaml as the link stage reads it: thresholds, blocking rules,
    comparisons with their priors, the enterprise rule order."""
    import yaml

    from govdata.transforms.linkage.settings import parse

    raw = yaml.safe_load((Path(root) / "linkage.yaml").read_text(encoding="utf-8")) or {}
    person = parse("person", raw.get("person") or {})
    enterprise = parse("enterprise", raw.get("enterprise") or {})
    match, review = person.get("match_threshold", "(default)"), person.get("review_threshold", "(default)")
    lines = ["## Linkage", "", "From standards/linkage.yaml (weights in bits, log2 likelihood ratios).", "",
             (f"Persons link automatically at a total weight of {match}; from {review} they go to the stewards' "
              "review queue."), "",
             "### Person blocking rules", "",
             *table(["rule", "columns (all present and equal)"],
                    [[f"`{r.name}`", ", ".join(r.columns)] for r in person.get("blocking", ())]),
             "", "### Person comparisons", "",
             *table(["comparison", "comparator", "columns", "m", "u", "agreement weight", "identifier",
                     "u scaled by"],
                    [[f"`{c.name}`", c.comparator, ", ".join(c.columns), c.m, c.u,
                      f"{math.log2(c.m / c.u):.2f}", "yes" if c.identifier else "",
                      c.u_scaled_by or ""] for c in person.get("comparisons", ())]),
             "", "### Enterprise rules", "",
             "Records without a usable USCC join its holder by: " + " → ".join(enterprise.get("rules", ())) + ".", ""]
    return lines


def render_data_dictionary(standards: Standards, sources: list[SourceConfig]) -> str:
    """Markdown: elements per kind, code tables (source, version, rows), sources, supply matrices."""
    lines = ["# govdata data dictionary", "",
             "Generated from standards/ (elements.yaml, codes/) and the source YAMLs; do not edit by hand.", "",
             "## Elements", ""]
    for kind in KINDS:
        lines += element_section(standards, kind)
    lines += code_table_section(standards)
    ordered = sorted(sources, key=lambda s: s.name)
    lines += sources_section(ordered)
    lines += ["## Which department supplies which element", "",
              "Cells name the source column mapped to the element.", ""]
    for kind in KINDS:
        lines += supply_matrix(standards, ordered, kind)
    lines += linkage_section(standards.root)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    sources = load_sources(Path(args[args.index("--sources") + 1])) if "--sources" in args else []
    sys.stdout.write(render_data_dictionary(load_standards(), sources))


if __name__ == "__main__":
    main()
