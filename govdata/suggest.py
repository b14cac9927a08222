"""`govdata sources suggest URL`: profile an unknown database and propose a source YAML per table.

Columns are recognised by their values, never by their names (department naming is arbitrary:
pinyin initials, English, legacy abbreviations): ID numbers by checksum pass rate, USCC by
checksum, dates by parse rate, sex codes by value set, names by character class, phones by
pattern. Each proposal carries its evidence as a YAML comment for a steward to review.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

SAMPLE_ROWS = 5000
MIN_RATE = 0.8

CJK_NAME = r"^[\u3400-\u9fff·•．.・\s]{2,12}$"
LATIN_NAME = r"^[A-Za-z]+( [A-Za-z]+)+$"
PHONE = r"^(\+?86[- ]?)?(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$"
ENTERPRISE_NAME = r"(?:公司|企业|合作社|厂|店|中心|事务所)"


@dataclass(frozen=True)
class Evidence:
    element: str
    rate: float
    detail: str

    def comment(self) -> str:
        return f"{self.detail} ({self.rate:.0%} of non-empty sample values)"


def _rate(mask: pd.Series, non_empty: pd.Series) -> float:
    n = int(non_empty.sum())
    return float((mask & non_empty).sum() / n) if n else 0.0


def profile_column(values: pd.Series, standards) -> list[Evidence]:
    """Every element the column's values support, best first."""
    from transforms.dates import parse_dates
    from transforms.identifiers import normalise_citizen_id, normalise_uscc

    text = values.astype("string").str.strip()
    non_empty = text.notna() & (text != "")
    if not non_empty.any():
        return []
    sample = text[non_empty]
    found: list[Evidence] = []

    ids = normalise_citizen_id(sample)
    rate = float(ids["status"].isin(["valid", "repaired"]).mean())
    if rate >= MIN_RATE:
        found.append(Evidence("id_number", rate, "GB 11643 check digit passes"))
    uscc = normalise_uscc(sample)
    rate = float(uscc["status"].isin(["valid", "repaired"]).mean())
    if rate >= MIN_RATE:
        found.append(Evidence("uscc", rate, "GB 32100 check character passes"))

    aliases = set(standards.code_table("sex_alias")["alias"].str.lower())
    rate = float(sample.str.lower().isin(aliases).mean())
    if rate >= 0.95 and sample.nunique() <= 6:
        found.append(Evidence("sex", rate, f"values within the sex alias set {sorted(sample.unique())[:6]}"))

    rate = float(sample.str.match(PHONE).mean())
    if rate >= MIN_RATE:
        found.append(Evidence("phone", rate, "mobile or landline pattern"))

    if not found:
        dates = parse_dates(sample)
        rate = float((dates["status"] == "valid").mean())
        if rate >= MIN_RATE and not sample.str.fullmatch(r"\d{1,4}").all():
            years = pd.to_datetime(dates["value"]).dt.year
            has_time = bool(sample.str.contains(r"\d:\d").mean() > 0.5)
            element = "updated_at" if has_time else ("birth_date" if years.median() < 2015 else "issue_date")
            found.append(Evidence(element, rate, f"parses as a date, years {years.min()}–{years.max()}"))

    rate = float(sample.str.match(CJK_NAME).mean())
    if rate >= MIN_RATE and sample.str.len().median() <= 4:
        found.append(Evidence("name", rate, "2–4 CJK characters"))
    elif sample.str.contains(ENTERPRISE_NAME).mean() >= MIN_RATE:
        found.append(Evidence("enterprise_name", float(sample.str.contains(ENTERPRISE_NAME).mean()),
                              "enterprise legal-form words"))
    rate = float(sample.str.match(LATIN_NAME).mean())
    if rate >= MIN_RATE and not found:
        found.append(Evidence("name", rate, "latin words (pinyin name)"))
    return sorted(found, key=lambda e: -e.rate)


# In an enterprise table a person's ID and name belong to its legal representative.
ENTERPRISE_ROLES = {"id_number": "legal_rep_id_number", "name": "legal_rep_name", "enterprise_name": "name",
                    "birth_date": "founded_date"}


def guess_kind(elements: set[str]) -> str:
    return "enterprise" if "uscc" in elements or "enterprise_name" in elements else "person"


def element_for_kind(element: str, kind: str) -> str:
    if kind == "enterprise":
        return ENTERPRISE_ROLES.get(element, element)
    return "name" if element == "enterprise_name" else element


def guess_primary_key(frame: pd.DataFrame, used: set[str]) -> str | None:
    for column in frame.columns:
        if column in used:
            continue
        col = frame[column]
        if col.notna().all() and col.is_unique:
            return column
    return None


def suggest_table(engine: sa.Engine, table: str, standards, url_text: str, sample_rows: int = SAMPLE_ROWS) -> str:
    quoted = engine.dialect.identifier_preparer.quote(table)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"SELECT * FROM {quoted} LIMIT {int(sample_rows)}"), conn, dtype=str)
    mapping: dict[str, Evidence] = {}
    taken: set[str] = set()
    for column in frame.columns:
        for evidence in profile_column(frame[column], standards):
            if evidence.element not in taken:
                mapping[column] = evidence
                taken.add(evidence.element)
                break
    kind = guess_kind(taken)
    pk = guess_primary_key(frame, set(mapping))
    lines = [
        f"# proposed by `govdata sources suggest` from {len(frame)} sampled rows of {table}; review before use",
        f"name: {table.lower()}",
        f"department: {table}  # TODO: the department's name",
        f"kind: {kind}",
        f"connection: {url_text}",
        f"table: {table}",
        f"primary_key: {pk}  # unique and never empty in the sample" if pk else "primary_key: null  # TODO: no unique column found",
        "columns:",
    ]
    for column, evidence in mapping.items():
        lines.append(f"  {column}: {element_for_kind(evidence.element, kind)}  # {evidence.comment()}")
    unmapped = [c for c in frame.columns if c not in mapping and c != pk]
    if unmapped:
        lines.append(f"# not recognised: {', '.join(unmapped)}")
    return "\n".join(lines) + "\n"


def suggest_sources(url: str, standards) -> dict[str, str]:
    """A proposed source YAML (text) per table of the database at url."""
    from govdata.connections import source_engine

    engine = source_engine(url)  # SQLite read-only: a wrong path is an error, never a new empty file
    try:
        tables = sa.inspect(engine).get_table_names()
        return {t: suggest_table(engine, t, standards, url) for t in tables}
    finally:
        engine.dispose()
