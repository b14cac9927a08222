"""`govdata sources suggest URL`: profile an unknown database and propose a source YAML per table.

Columns are recognised by their values, never by their names (department naming is arbitrary:
pinyin initials, English, legacy abbreviations): ID numbers by checksum pass rate, USCC, old
registration and tax numbers by their check characters, coded columns by the share of their
distinct values found in a code table of standards/codes (codes, names or aliases: ethnicity,
sex, document type, region, industry, service item, channel, certificate type and status),
addresses by Chinese address patterns, dates and timestamps by parse rate, names by character
class, phones by pattern. Timestamps of one row are told apart by their order (submitted <=
accepted <= completed <= updated); only the choice of the `incremental:` column among equal
candidates looks at a name (ZHGXSJ, update_time, gxsj...). Each proposal carries its evidence as a
YAML comment for a steward to review.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from govdata.profiling import (MIN_RATE, RESIDENT_ID_TYPES, SAMPLE_ROWS, UPDATE_NAME, Evidence, SuggestError,
                               profile_column)


# Generic roles -> the kind's element (None: not an element of that kind).
ROLES = {
    "person": {"enterprise_name": None, "party_name": "name", "date": "birth_date"},
    "enterprise": {"id_number": "legal_rep_id_number", "name": "legal_rep_name", "enterprise_name": "name",
                   "party_name": "name", "date": "founded_date"},
    "application": {"id_number": "applicant_id_number", "uscc": "applicant_uscc", "name": "applicant_name",
                    "enterprise_name": "applicant_name", "party_name": "applicant_name"},
    "certificate": {"id_number": "holder_id_number", "uscc": "holder_uscc", "name": "holder_name",
                    "enterprise_name": "holder_name", "party_name": "holder_name"},
}


def guess_kind(elements: set[str]) -> str:
    if elements & {"service_item_code", "channel"}:
        return "application"
    if elements & {"certificate_type"}:
        return "certificate"
    return "enterprise" if "uscc" in elements or "enterprise_name" in elements else "person"


def element_for_kind(element: str, kind: str) -> str | None:
    return ROLES.get(kind, {}).get(element, element)


def guess_primary_key(frame: pd.DataFrame, used: set[str]) -> str | None:
    for column in frame.columns:
        if column in used:
            continue
        col = frame[column]
        if col.notna().all() and col.is_unique:
            return column
    return None


def _timestamps(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    from govdata.transforms.dates import parse_dates

    out = {}
    for column in columns:
        text = frame[column].astype("string").str.strip()
        parsed = parse_dates(text.fillna(""))
        out[column] = pd.to_datetime(frame[column].where(parsed["status"].eq("valid").to_numpy()), errors="coerce")
    return pd.DataFrame(out)


def _order_timestamps(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Timestamp columns from earliest to latest in a row (mean over rows holding all of them);
    equal means: the column filled more often is the later (an update time is set on every change)."""
    times = _timestamps(frame, columns)
    both = times.dropna()
    basis = both if len(both) else times
    mean = {c: basis[c].astype("int64").mean() if basis[c].notna().any() else 0 for c in columns}
    return sorted(columns, key=lambda c: (mean[c], int(times[c].notna().sum())))


def _pick_update(frame: pd.DataFrame, columns: list[str]) -> str:
    """The update-time column among timestamp columns: a name that says so, else the latest."""
    named = [c for c in columns if UPDATE_NAME.search(c)]
    return named[0] if len(named) == 1 else _order_timestamps(frame, columns)[-1]


def _text(value) -> str | None:
    """A stored value as the text extract would give: NULL stays NULL, an integral REAL is integer text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as strings (per distinct value, not per row)."""
    out = {}
    for column in frame.columns:
        codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
        texts = pd.array([_text(v) for v in uniques] + [None], dtype="string")
        out[column] = pd.Series(texts[codes], index=frame.index)   # -1 (NULL) picks the trailing None
    return pd.DataFrame(out, columns=frame.columns)


def suggest_table(engine: sa.Engine, table: str, standards, url_text: str, sample_rows: int = SAMPLE_ROWS) -> str:
    quoted = engine.dialect.identifier_preparer.quote(table)
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {quoted} LIMIT {int(sample_rows)}"))
        frame = _as_text(pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object))
    profiles = {column: profile_column(frame[column], standards) for column in frame.columns}
    generic = {e.element for found in profiles.values() for e in found[:1]}
    kind = guess_kind(generic)
    kind_elements = set(standards.elements.get(kind, {}))
    notes: list[str] = []
    # the key: the first column unique and never empty whose values are no identifier, name or date
    pk = guess_primary_key(frame, {c for c, found in profiles.items()
                                   if found and not {e.element for e in found} & {"certificate_no", "integer"}})
    profiles = {c: found for c, found in profiles.items() if c != pk}

    # candidates per column, the generic role given its element of this kind
    candidates: dict[str, list[Evidence]] = {}
    for column, found in profiles.items():
        mapped = []
        for e in found:
            element = element_for_kind(e.element, kind)
            if element in ("timestamp", "date", "integer") or (element and element in kind_elements):
                mapped.append(Evidence(element, e.rate, e.detail, e.priority))
        candidates[column] = mapped

    mapping: dict[str, Evidence] = {}
    taken: set[str] = set()
    order = sorted(candidates, key=lambda c: -max([e.priority + e.rate / 10 for e in candidates[c]] or [0]))
    for column in order:
        for e in candidates[column]:
            if e.element in ("timestamp", "date", "integer") or e.element not in taken:
                mapping[column] = e
                taken.add(e.element)
                break

    # document type + number pairs: the number is a citizen ID where the type says resident ID
    type_columns = [c for c, e in mapping.items() if e.element == "id_type"]
    if not type_columns:
        type_columns = [c for c, found in profiles.items() if any(e.element == "id_type" for e in found)]
    for type_column in type_columns[:1]:
        pair = _document_number(frame, type_column, mapping)
        if pair is not None:
            number_column, rate = pair
            element = element_for_kind("id_number", kind)
            mapping[number_column] = Evidence(element, rate, f"GB 11643 check digit passes where {type_column} is a resident ID")
        if "id_type" in kind_elements:
            mapping[type_column] = Evidence("id_type", 1.0, "document type codes (id_document_type)")
        else:
            mapping.pop(type_column, None)
            notes.append(f"# {type_column}: document type (id_document_type codes) of "
                         f"{pair[0] if pair else 'the ID number'}; not mapped: standards/elements.yaml has no "
                         f"`id_type` element for {kind}, so only the citizen ID numbers are taken")

    _assign_times(frame, kind, mapping)
    _assign_integers(frame, mapping, kind_elements)

    if kind == "application" and pk and "application_no" not in taken:
        mapping = {pk: Evidence("application_no", 1.0, "the primary key: unique application numbers"), **mapping}
    mapping = {c: e for c, e in mapping.items() if e.element not in ("timestamp", "date", "integer")}
    incremental = next((c for c, e in mapping.items() if e.element == "updated_at"), None)

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
    for column in frame.columns:
        if column in mapping:
            lines.append(f"  {column}: {mapping[column].element}  # {mapping[column].comment()}")
    if incremental:
        lines += ["incremental:",
                  f"  column: {incremental}  # the record's update time: extract from the last watermark on"]
    lines += notes
    unmapped = [c for c in frame.columns if c not in mapping and c != pk]
    if unmapped:
        lines.append(f"# not recognised: {', '.join(unmapped)}")
    return "\n".join(lines) + "\n"


def _document_number(frame: pd.DataFrame, type_column: str, mapping: dict[str, Evidence]) -> tuple[str, float] | None:
    """The document-number column of a type column: citizen IDs wherever the type is a resident ID."""
    from govdata.transforms.identifiers import normalise_citizen_id

    types = frame[type_column].astype("string").str.strip()
    resident = types.isin(RESIDENT_ID_TYPES).fillna(False).to_numpy()
    if not resident.any():
        return None
    best = None
    for column in frame.columns:
        if column == type_column:
            continue
        values = frame[column].astype("string").str.strip()[resident]
        values = values[values.notna() & (values != "")]
        if values.empty:
            continue
        rate = float(normalise_citizen_id(values)["status"].isin(["valid", "repaired"]).mean())
        if rate >= MIN_RATE and (best is None or rate > best[1]):
            best = (column, rate)
    return best


def _assign_times(frame: pd.DataFrame, kind: str, mapping: dict[str, Evidence]) -> None:
    stamps = [c for c, e in mapping.items() if e.element == "timestamp"]
    dates = [c for c, e in mapping.items() if e.element == "date"]
    if stamps:
        update = _pick_update(frame, stamps)
        mapping[update] = Evidence("updated_at", mapping[update].rate, mapping[update].detail
                                   + "; the latest time of the row: its update time")
        if kind == "application":
            rest = [c for c in _order_timestamps(frame, stamps) if c != update]
            for column, element in zip(rest[-3:], ("submitted_at", "accepted_at", "completed_at")[-len(rest[-3:]):] if rest else ()):
                mapping[column] = Evidence(element, mapping[column].rate, mapping[column].detail
                                           + "; order in the row: submitted <= accepted <= completed")
    if kind == "certificate" and dates:
        ordered = _order_timestamps(frame, dates)
        for column, element in zip(ordered[:1] + ordered[-1:] if len(ordered) > 1 else ordered,
                                   ("issue_date", "expiry_date")):
            mapping[column] = Evidence(element, mapping[column].rate, mapping[column].detail
                                       + ("; the earlier date of the row" if element == "issue_date" else "; the later date of the row"))


def _assign_integers(frame: pd.DataFrame, mapping: dict[str, Evidence], kind_elements: set[str]) -> None:
    for column, e in list(mapping.items()):
        if e.element != "integer" or not {"rating", "legal_limit_days"} & kind_elements:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce").dropna()
        if numbers.between(1, 5).all() and "rating" not in {m.element for m in mapping.values()}:
            mapping[column] = Evidence("rating", e.rate, e.detail + ": a 1–5 rating")
        elif numbers.max() > 5 and "legal_limit_days" not in {m.element for m in mapping.values()}:
            mapping[column] = Evidence("legal_limit_days", e.rate, e.detail + ": a number of days")


def _check_reachable(url: str) -> None:
    from govdata.connections import sqlalchemy_url

    parsed = sa.engine.make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database.removeprefix("file:").split("?")[0])
        if not path.is_file():
            raise SuggestError(f"{url}: no SQLite database at {path} (check the path; nothing was created)")


def suggest_sources(url: str, standards) -> dict[str, str]:
    """A proposed source YAML (text) per table of the database at url."""
    from govdata.connections import source_engine

    _check_reachable(url)
    engine = source_engine(url)  # SQLite read-only: a wrong path is an error, never a new empty file
    try:
        try:
            tables = sa.inspect(engine).get_table_names()
        except sa.exc.SQLAlchemyError as exc:
            raise SuggestError(f"{url}: cannot open the database ({str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]})") from exc
        return {t: suggest_table(engine, t, standards, url) for t in tables}
    finally:
        engine.dispose()
