"""Source YAMLs (one department table each, DESIGN.md contract) -> SourceConfig.

Every error names the file, the key and what was expected (SourceConfigError). Connection
strings are never echoed in messages: they may hold passwords.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from govdata.standards.model import KINDS, SourceConfig, Standards
from govdata.standards.registry import load_standards

REQUIRED_KEYS = ("name", "department", "kind", "connection", "table", "primary_key", "columns")
OPTIONAL_KEYS = ("incremental", "overrides")
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
AIRFLOW_PREFIX = "airflow:"
# Options a normaliser understands per element; others are kept but their type is not checked.
OVERRIDE_OPTION_TYPES: dict[str, tuple[type, str]] = {
    "format": (str, "a strptime format string such as '%d/%m/%Y'"),
    "dayfirst": (bool, "true or false"),
    "timezone": (str, "a time-zone name such as 'Asia/Shanghai'"),
    "codes": (dict, "a mapping of source value -> standard code"),
}


@dataclass(frozen=True)
class SourceIssue:
    key: str
    expected: str


class SourceConfigError(ValueError):
    """A source YAML is invalid. `file`, `key`, `expected` describe the first issue; `issues` all."""

    def __init__(self, file: Path | str, issues: list[SourceIssue]):
        self.file = str(file)
        self.issues = issues
        self.key, self.expected = issues[0].key, issues[0].expected
        lines = [f"{file}: key '{i.key}': expected {i.expected}" for i in issues]
        super().__init__("\n".join(lines))


def is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def expand_env(connection: str) -> tuple[str, list[str]]:
    """Replace ${VAR} from the environment; returns the result and the names that were unset."""
    missing = [name for name in ENV_REFERENCE.findall(connection) if name not in os.environ]
    expanded = ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), connection)
    return expanded, missing


def resolve_sqlite_path(url: str, base: Path) -> str:
    """A relative sqlite database path is taken relative to the YAML's folder, made absolute."""
    parsed = make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:" \
            or database.startswith("file:") or Path(database).is_absolute():
        return url
    absolute = (base / database).resolve()
    return parsed.set(database=str(absolute)).render_as_string(hide_password=False)


def check_connection(value: Any, base: Path) -> tuple[str | None, list[SourceIssue]]:
    expected = "a SQLAlchemy URL, ${ENV_VAR} or airflow:<conn_id>"
    if not is_text(value):
        return None, [SourceIssue("connection", expected)]
    if value.startswith(AIRFLOW_PREFIX):
        if not value[len(AIRFLOW_PREFIX):].strip():
            return None, [SourceIssue("connection", "a connection id after 'airflow:'")]
        return value, []
    expanded, missing = expand_env(value)
    if missing:
        return None, [SourceIssue("connection", f"environment variable {name} to be set") for name in missing]
    try:
        make_url(expanded)
    except (ArgumentError, ValueError):
        return None, [SourceIssue("connection", expected)]
    return resolve_sqlite_path(expanded, base), []


def check_scalars(raw: dict[str, Any]) -> list[SourceIssue]:
    issues = [SourceIssue(key, "a non-empty string") for key in REQUIRED_KEYS
              if key not in ("kind", "connection", "columns") and key in raw and not is_text(raw[key])]
    if is_text(raw.get("name")) and not SOURCE_NAME.match(raw["name"]):
        issues.append(SourceIssue("name", "lower-case letters, digits and _ starting with a letter"))
    if "kind" in raw and raw["kind"] not in KINDS:
        issues.append(SourceIssue("kind", f"one of {', '.join(KINDS)}, got {raw['kind']!r}"))
    return issues


def check_columns(columns: Any, kind: str | None, standards: Standards) -> list[SourceIssue]:
    if not isinstance(columns, dict) or not columns:
        return [SourceIssue("columns", "a non-empty mapping of source column -> standard element")]
    issues: list[SourceIssue] = []
    seen: dict[str, str] = {}
    known = standards.elements.get(kind or "", {})
    for column, element in columns.items():
        where = f"columns.{column}"
        if not is_text(str(column) if column is not None else None):
            issues.append(SourceIssue("columns", "non-empty source column names"))
        elif not is_text(element):
            issues.append(SourceIssue(where, "a standard element name"))
        elif kind in KINDS and element not in known:
            issues.append(SourceIssue(where, f"an element of kind {kind} ({', '.join(known)}), got {element!r}"))
        elif element in seen:
            issues.append(SourceIssue(where, f"each element mapped once; {element} is already mapped from {seen[element]}"))
        else:
            seen[element] = str(column)
    return issues


def check_incremental(value: Any) -> list[SourceIssue]:
    if value is None:
        return []
    if not isinstance(value, dict) or not is_text(value.get("column")):
        return [SourceIssue("incremental", "a mapping {column: <watermark column>}")]
    return []


def check_overrides(value: Any, kind: str | None, standards: Standards) -> list[SourceIssue]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [SourceIssue("overrides", "a mapping of element -> options")]
    issues: list[SourceIssue] = []
    known = standards.elements.get(kind or "", {})
    for element, options in value.items():
        where = f"overrides.{element}"
        if kind in KINDS and element not in known:
            issues.append(SourceIssue(where, f"an element of kind {kind}, got {element!r}"))
        elif not isinstance(options, dict):
            issues.append(SourceIssue(where, "a mapping of options such as {format: '%d/%m/%Y'}"))
        else:
            for option, setting in options.items():
                wanted = OVERRIDE_OPTION_TYPES.get(option)
                if wanted and not isinstance(setting, wanted[0]):
                    issues.append(SourceIssue(f"{where}.{option}", wanted[1]))
    return issues


def validate_source(raw: Any, path: Path, standards: Standards) -> tuple[dict[str, Any], list[SourceIssue]]:
    """All issues of one parsed source YAML, plus the cleaned values (connection resolved)."""
    if not isinstance(raw, dict):
        return {}, [SourceIssue("(top level)", f"a mapping with keys {', '.join(REQUIRED_KEYS)}")]
    issues = [SourceIssue(key, "to be present") for key in REQUIRED_KEYS if key not in raw]
    issues += check_scalars(raw)
    kind = raw.get("kind") if raw.get("kind") in KINDS else None
    connection, connection_issues = (None, []) if "connection" not in raw \
        else check_connection(raw["connection"], path.parent)
    issues += connection_issues
    if "columns" in raw:
        issues += check_columns(raw["columns"], kind, standards)
    issues += check_incremental(raw.get("incremental"))
    issues += check_overrides(raw.get("overrides"), kind, standards)
    return {**raw, "connection": connection}, issues


def read_source_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SourceConfigError(path, [SourceIssue("(file)", "an existing source YAML file")])
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise SourceConfigError(path, [SourceIssue(where, "valid YAML")]) from exc
    except UnicodeDecodeError as exc:
        raise SourceConfigError(path, [SourceIssue("(file)", "UTF-8 text")]) from exc


def load_source(path: Path, standards: Standards | None = None) -> SourceConfig:
    """Read and validate one source YAML (elements checked against `standards`, default shipped)."""
    path = Path(path).resolve()
    raw = read_source_yaml(path)
    values, issues = validate_source(raw, path, standards or load_standards())
    if issues:
        raise SourceConfigError(path, issues)
    extra = {k: v for k, v in values.items() if k not in REQUIRED_KEYS + OPTIONAL_KEYS}
    return SourceConfig(
        name=values["name"], department=values["department"], kind=values["kind"],
        connection=values["connection"], table=values["table"], primary_key=values["primary_key"],
        columns={str(k): v for k, v in values["columns"].items()},
        incremental=values.get("incremental"), overrides=values.get("overrides") or {},
        path=path, extra=extra)


def source_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_sources(folder: Path, standards: Standards | None = None) -> list[SourceConfig]:
    """Every *.yaml/*.yml in `folder`, sorted by source name; names must be unique."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise SourceConfigError(folder, [SourceIssue("(folder)", "an existing folder of source YAML files")])
    configs = [load_source(path, standards) for path in source_files(folder)]
    by_name: dict[str, SourceConfig] = {}
    for config in configs:
        if config.name in by_name:
            raise SourceConfigError(config.path, [SourceIssue(
                "name", f"a unique source name; {config.name!r} is also used by {by_name[config.name].path}")])
        by_name[config.name] = config
    return sorted(configs, key=lambda c: c.name)
