"""Typed views of what stewards keep in standards/ (elements, code tables, source mappings).

The loaders in standards/registry.py and standards/sources.py build these objects; every
other stage reads standards through them, never by opening the YAML/CSV files itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

KINDS = ("person", "enterprise", "application", "certificate")


@dataclass(frozen=True)
class Element:
    """One standard data element (standards/elements.yaml)."""

    name: str                 # snake_case English, e.g. id_number
    kind: str                 # person | enterprise | application | certificate
    type: str                 # string | date | timestamp | integer | code | id_number | uscc ...
    zh: str                   # Chinese description
    en: str                   # English description
    standard: str             # national standard followed, e.g. "GB 11643-1999"
    rule: str                 # validation rule in words
    pii: str = "none"         # personal-data class: none | identifier | contact | quasi
    code_table: str | None = None   # name of a code table in standards/codes/
    pattern: str | None = None      # regex the standard form matches
    required: bool = False          # a row without it is rejected (quarantined)
    critical: bool = False          # a failing expectation on it stops the run
    max_length: int | None = None   # longest raw value (characters, trimmed) normalise accepts
    minimum: int | None = None      # integer elements: smallest value accepted (inclusive)
    maximum: int | None = None      # integer elements: largest value accepted (inclusive)


@dataclass(frozen=True)
class SourceConfig:
    """One department table (a source YAML, DESIGN.md contract)."""

    name: str
    department: str
    kind: str
    connection: str
    table: str
    primary_key: str
    columns: dict[str, str]                 # source column -> standard element
    incremental: dict[str, Any] | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # element -> options
    path: Path | None = None                # the YAML file it came from
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for extensions

    @property
    def elements(self) -> list[str]:
        return list(self.columns.values())


@dataclass
class Standards:
    """All of standards/: elements by name (per kind) and code tables by name."""

    elements: dict[str, dict[str, Element]]  # kind -> element name -> Element
    code_tables: dict[str, pd.DataFrame]      # table name -> DataFrame (string columns)
    root: Path | None = None

    def element(self, kind: str, name: str) -> Element:
        return self.elements[kind][name]

    def code_table(self, name: str) -> pd.DataFrame:
        return self.code_tables[name]

    @property
    def regions(self) -> pd.DataFrame:
        """GB/T 2260 table: code, name, level, status, valid_from, valid_to, successors,
        province, prefecture — current and abolished codes."""
        return self.code_tables["region"]
