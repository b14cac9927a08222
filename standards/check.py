"""Consistency checks over a standards folder (and optionally a sources folder).

Unlike the loaders, which stop at the first malformed file, check_standards collects every
problem so a steward sees the whole list at once. Run: python -m govdata.standards.check [ROOT] [--sources DIR]
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from govdata.standards.model import KINDS, Element
from govdata.standards.registry import (STANDARDS_ROOT, StandardsError, parse_element,
                                parse_row_rules, parse_survivorship, read_code_table, read_standards,
                                read_yaml)
from govdata.standards.sources import SourceConfigError, load_source, source_files

CATALOGUE_REQUIRED = ("title", "source", "version", "licence")
KIND_TIMESTAMP = "updated_at"
CSV_FIRST_DATA_LINE = 2  # header is line 1: row index i is line i + 2
LINKAGE_KINDS = ("person", "enterprise")   # the kinds linkage.yaml configures (govdata.stages.common.LINKERS)
# LinkConfig field type -> (accepted Python types, what a steward should write)
SETTING_TYPES: dict[type, tuple[tuple[type, ...], str]] = {
    float: ((int, float), "a number"),
    int: ((int,), "a whole number"),
    bool: ((bool,), "true or false"),
    dict: ((dict,), "a mapping"),
}


@dataclass(frozen=True)
class Problem:
    file: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.location}: {self.message}"


def csv_lines(index: pd.Index) -> str:
    """Row positions as CSV line numbers, at most five, for messages."""
    lines = [str(i + CSV_FIRST_DATA_LINE) for i in list(index)[:5]]
    more = f" (+{len(index) - 5} more)" if len(index) > 5 else ""
    return ", ".join(lines) + more


def read_mapping(file: Path, expected: str) -> tuple[Any, list[Problem]]:
    """A YAML file whose top level must be a mapping: (its content, []) or (None, the problem)."""
    try:
        raw = read_yaml(file)
    except StandardsError as exc:
        return None, [Problem(str(file), exc.key, f"expected {exc.expected}")]
    if not isinstance(raw, dict):
        return None, [Problem(str(file), "(top level)", f"expected {expected}")]
    return raw, []


def check_elements(root: Path, table_names: set[str]) -> tuple[list[Problem], dict[str, dict[str, Any]]]:
    """Problems in elements.yaml, and every declared element name per kind (parsed or not, so a
    malformed element is reported once, not again by files that refer to it)."""
    file = root / "elements.yaml"
    raw, unreadable = read_mapping(file, f"a mapping of kinds ({', '.join(KINDS)})")
    if unreadable:
        return unreadable, {}
    problems: list[Problem] = []
    elements: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(raw) - set(KINDS)):
        problems.append(Problem(str(file), str(kind), f"unknown kind; expected one of {', '.join(KINDS)}"))
    for kind in KINDS:
        specs = raw.get(kind)
        if not isinstance(specs, dict) or not specs:
            problems.append(Problem(str(file), kind, "missing kind: expected a mapping of element -> properties"))
            continue
        elements[kind] = {}
        for name, spec in specs.items():
            elements[kind][str(name)] = spec
            try:
                element = parse_element(kind, str(name), spec, file)
            except StandardsError as exc:
                problems.append(Problem(str(file), exc.key, f"expected {exc.expected}"))
                continue
            problems += check_element_references(element, file, table_names)
        if KIND_TIMESTAMP not in specs:
            # most_recent survivorship and incremental loads rely on it in every kind
            problems.append(Problem(str(file), f"{kind}.{KIND_TIMESTAMP}", "missing element: every kind has an optional timestamp updated_at"))
    return problems, elements


def check_element_references(element: Element, file: Path, table_names: set[str]) -> list[Problem]:
    where = f"{element.kind}.{element.name}"
    problems = []
    if element.type == "code" and not element.code_table:
        problems.append(Problem(str(file), f"{where}.code_table", "expected a code table for an element of type code"))
    if element.code_table and element.code_table not in table_names:
        problems.append(Problem(str(file), f"{where}.code_table",
                                f"unknown code table {element.code_table!r}; expected one of codes/*.csv"))
    if element.pattern:
        try:
            re.compile(element.pattern)
        except re.error as exc:
            problems.append(Problem(str(file), f"{where}.pattern", f"invalid regular expression: {exc}"))
    return problems


def read_tables(codes_dir: Path) -> tuple[list[Problem], dict[str, pd.DataFrame]]:
    problems: list[Problem] = []
    tables: dict[str, pd.DataFrame] = {}
    if not codes_dir.is_dir():
        return [Problem(str(codes_dir), "(folder)", "missing code-table folder")], tables
    for path in sorted(codes_dir.glob("*.csv")):
        try:
            tables[path.stem] = read_code_table(path)
        except StandardsError as exc:
            problems.append(Problem(str(path), exc.key, f"expected {exc.expected}"))
    return problems, tables


def check_catalogue(codes_dir: Path, tables: dict[str, pd.DataFrame]) -> tuple[list[Problem], dict[str, Any]]:
    file = codes_dir / "codes.yaml"
    catalogue, unreadable = read_mapping(file, "a mapping of table name -> properties")
    if unreadable:
        return unreadable, {}
    problems = [Problem(str(codes_dir / f"{name}.csv"), "(file)", "code table not listed in codes/codes.yaml")
                for name in sorted(set(tables) - set(catalogue))]
    for name, spec in catalogue.items():
        if name not in tables:
            problems.append(Problem(str(file), str(name), f"listed table has no file codes/{name}.csv"))
        if not isinstance(spec, dict):
            problems.append(Problem(str(file), str(name), "expected a mapping with title, source, version, licence"))
            continue
        problems += [Problem(str(file), f"{name}.{key}", "expected a non-empty value (cite the source)")
                     for key in CATALOGUE_REQUIRED if not str(spec.get(key) or "").strip()]
    return problems, {k: v for k, v in catalogue.items() if isinstance(v, dict)}


def check_table(name: str, table: pd.DataFrame, spec: dict[str, Any], tables: dict[str, pd.DataFrame],
                catalogue: dict[str, Any], file: str) -> list[Problem]:
    """Shape and values of one code table against its catalogue entry."""
    expected = spec.get("columns")
    if expected and list(table.columns) != list(expected):
        missing = [c for c in expected if c not in table.columns]
        what = f"missing columns {missing}" if missing else f"columns {list(table.columns)}"
        return [Problem(file, "(header)", f"{what}; expected columns {list(expected)}")]
    key = spec.get("key", "code")
    if key not in table.columns:
        return [Problem(file, "(header)", f"missing key column {key!r}")]
    problems: list[Problem] = []
    empty = table.index[table[key].str.strip() == ""]
    if len(empty):
        problems.append(Problem(file, f"line {csv_lines(empty)}", f"empty {key}"))
    unique = spec.get("unique", [key])
    missing = [c for c in unique if c not in table.columns]
    if missing:
        return [Problem(file, "(header)", f"missing key columns {missing}")]
    duplicated = table[(table[key].str.strip() != "") & table.duplicated(unique, keep=False)]
    for value, rows in duplicated.groupby(unique, sort=True):
        label = "/".join(value) if isinstance(value, tuple) else value
        problems.append(Problem(file, f"line {csv_lines(rows.index)}", f"duplicate {'+'.join(unique)} {label!r}"))
    if spec.get("one_current_per_code") and "status" in table.columns:
        current = table[table["status"] == "current"]
        for value, rows in current[current.duplicated(key, keep=False)].groupby(key):
            problems.append(Problem(file, f"line {csv_lines(rows.index)}", f"more than one current row for {key} {value!r}"))
    problems += check_column_values(table[table[key].str.strip() != ""], spec, file)
    problems += check_references(table, spec, tables, catalogue, file)
    return problems


def check_column_values(table: pd.DataFrame, spec: dict[str, Any], file: str) -> list[Problem]:
    problems: list[Problem] = []
    for column, pattern in (spec.get("pattern") or {}).items():
        if column in table.columns:
            bad = table.index[~table[column].str.fullmatch(pattern)]
            if len(bad):
                problems.append(Problem(file, f"line {csv_lines(bad)}", f"column {column} does not match {pattern}"))
    for column, allowed in (spec.get("allowed") or {}).items():
        if column in table.columns:
            bad = table.index[~table[column].isin([str(a) for a in allowed])]
            if len(bad):
                problems.append(Problem(file, f"line {csv_lines(bad)}", f"column {column}: expected one of {allowed}"))
    for column in spec.get("lower_case") or []:
        if column in table.columns:
            bad = table.index[table[column] != table[column].str.strip().str.lower()]
            if len(bad):
                problems.append(Problem(file, f"line {csv_lines(bad)}", f"column {column}: expected lower-case without surrounding spaces"))
    return problems


def referenced_keys(target: str, tables: dict[str, pd.DataFrame], catalogue: dict[str, Any]) -> set[str] | None:
    key = (catalogue.get(target) or {}).get("key", "code")
    table = tables.get(target)
    return None if table is None or key not in table.columns else set(table[key])


def check_references(table: pd.DataFrame, spec: dict[str, Any], tables: dict[str, pd.DataFrame],
                     catalogue: dict[str, Any], file: str) -> list[Problem]:
    problems: list[Problem] = []
    plain = {c: (t, False) for c, t in (spec.get("references") or {}).items()}
    lists = {c: (t, True) for c, t in (spec.get("list_references") or {}).items()}
    for column, (target, is_list) in {**plain, **lists}.items():
        if column not in table.columns:
            continue
        keys = referenced_keys(target, tables, catalogue)
        if keys is None:
            problems.append(Problem(file, f"column {column}", f"references unknown code table {target!r}"))
            continue
        values = table[column].str.split(";").explode() if is_list else table[column]
        values = values[values != ""]
        unknown = values[~values.isin(keys)]
        if len(unknown):
            missing = ", ".join(sorted(set(unknown))[:5])
            what = "successor" if column == "successors" else "value"
            problems.append(Problem(file, f"line {csv_lines(unknown.index.unique())}",
                                    f"column {column}: {what} not in {target}: {missing}"))
    return problems


def check_code_tables(root: Path) -> tuple[list[Problem], dict[str, pd.DataFrame], dict[str, Any]]:
    codes_dir = root / "codes"
    problems, tables = read_tables(codes_dir)
    catalogue_problems, catalogue = check_catalogue(codes_dir, tables)
    problems += catalogue_problems
    for name, table in tables.items():
        if name in catalogue:
            file = str(codes_dir / f"{name}.csv")
            try:
                problems += check_table(name, table, catalogue[name], tables, catalogue, file)
            except (TypeError, KeyError, AttributeError, re.error) as exc:
                problems.append(Problem(str(codes_dir / "codes.yaml"), str(name),
                                        f"malformed shape rules for this table ({type(exc).__name__}: {exc})"))
    return problems, tables, catalogue


def check_parsed_yaml(file: Path, parse, elements: dict[str, dict[str, Any]]) -> list[Problem]:
    """A steward YAML that its registry parser accepts, or the parser's complaint as a Problem."""
    try:
        parse(read_yaml(file), file, elements)
    except StandardsError as exc:
        return [Problem(str(file), exc.key, f"expected {exc.expected}")]
    return []


def check_survivorship(root: Path, elements: dict[str, dict[str, Any]]) -> list[Problem]:
    return check_parsed_yaml(root / "survivorship.yaml", parse_survivorship, elements)


def check_row_rules(root: Path, elements: dict[str, dict[str, Any]]) -> list[Problem]:
    return check_parsed_yaml(root / "row_rules.yaml", parse_row_rules, elements)


def check_sources(folder: Path, root: Path) -> list[Problem]:
    if not folder.is_dir():
        return [Problem(str(folder), "(folder)", "expected an existing folder of source YAML files")]
    try:
        standards = read_standards(root)  # uncached: the folder may have just been edited
    except StandardsError as exc:
        return [Problem(exc.file, exc.key, f"sources not checked: standards do not load ({exc.expected})")]
    problems: list[Problem] = []
    names: dict[str, Path] = {}
    for path in source_files(folder):
        try:
            config = load_source(path, standards)
        except SourceConfigError as exc:
            problems += [Problem(exc.file, issue.key, f"expected {issue.expected}") for issue in exc.issues]
            continue
        if config.name in names:
            problems.append(Problem(str(path), "name", f"duplicate source name {config.name!r} (also {names[config.name]})"))
        names[config.name] = path
    return problems


def check_linkage(root: Path) -> list[Problem]:
    """linkage.yaml: per linked kind, only transforms.linkage.LinkConfig settings, each of its
    field's type (the link stage refuses unknown settings at run time; a wrong type fails later),
    and the declaration (transforms/linkage/settings.py): review below match threshold, blocking
    rules on known columns, comparisons with a known comparator, known columns and m, u in (0, 1),
    the enterprise rule order."""
    import dataclasses
    import typing

    from govdata.transforms.linkage.config import LinkConfig
    from govdata.transforms.linkage.settings import validate

    file = root / "linkage.yaml"
    try:
        raw = read_yaml(file)
    except StandardsError as exc:
        return [Problem(str(file), exc.key, f"expected {exc.expected}")]
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [Problem(str(file), "(top level)", "expected a mapping of kind -> settings")]
    hints = typing.get_type_hints(LinkConfig)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(LinkConfig)}
    problems: list[Problem] = []
    for kind, settings in raw.items():
        if kind not in LINKAGE_KINDS:
            problems.append(Problem(str(file), str(kind), f"unknown kind; expected one of {', '.join(LINKAGE_KINDS)}"))
            continue
        if settings is None:
            continue
        if not isinstance(settings, dict):
            problems.append(Problem(str(file), kind, "expected a mapping of setting -> value"))
            continue
        for key, value in settings.items():
            where = f"{kind}.{key}"
            if key not in fields:
                problems.append(Problem(str(file), where, f"unknown setting; expected one of {', '.join(sorted(fields))}"))
                continue
            if fields[key] not in SETTING_TYPES:   # the declaration: checked by validate below
                continue
            accepted, wanted = SETTING_TYPES[fields[key]]
            if isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted):
                problems.append(Problem(str(file), where, f"expected {wanted}, not {value!r}"))
    return problems + [Problem(str(file), where, message) for where, message in validate(raw)]


def check_code_patterns(root: Path, elements: dict[str, dict[str, Any]], tables: dict[str, pd.DataFrame],
                        catalogue: dict[str, Any]) -> list[Problem]:
    """Every code of an element's code table must match the element's pattern, else values that
    normalise correctly would fail the element's expectation."""
    file = str(root / "elements.yaml")
    problems: list[Problem] = []
    for kind, specs in elements.items():
        for name, spec in specs.items():
            if not isinstance(spec, dict) or not spec.get("pattern") or spec.get("code_table") not in tables:
                continue
            keys = referenced_keys(spec["code_table"], tables, catalogue) or set()
            try:
                bad = sorted(k for k in keys if k and not re.fullmatch(spec["pattern"], k))
            except re.error:
                continue  # reported by check_element_references
            if bad:
                problems.append(Problem(file, f"{kind}.{name}.pattern",
                                        f"codes of table {spec['code_table']} do not match it: {', '.join(bad[:5])}"))
    return problems


def check_standards(root: Path | None = None, sources: Path | None = None) -> list[Problem]:
    """Every problem in a standards folder (and a sources folder, if given); [] when consistent."""
    root = Path(root or STANDARDS_ROOT).resolve()
    problems, tables, catalogue = check_code_tables(root)
    element_problems, elements = check_elements(root, set(tables))
    problems += element_problems
    problems += check_code_patterns(root, elements, tables, catalogue)
    if set(elements) == set(KINDS):
        problems += check_survivorship(root, elements)
        problems += check_row_rules(root, elements)
    problems += check_linkage(root)
    if sources is not None:
        problems += check_sources(Path(sources).resolve(), root)
    from govdata.standards.catalogue import check_resource_catalogue

    problems += check_resource_catalogue(root)   # catalogue.yaml + service_needs.yaml vs the warehouse schema
    return problems


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    sources = None
    if "--sources" in args:
        at = args.index("--sources")
        sources = Path(args[at + 1])
        del args[at:at + 2]
    problems = check_standards(Path(args[0]) if args else None, sources)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
