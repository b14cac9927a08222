"""Fact rows (fact_application, fact_certificate) with their owners, and the calendar (dim_date)
their service times are counted on."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from govdata.transforms.privacy import mask_id_number
from govdata.warehouse.rows import _col, _require, _table_columns, _text

# identifiers → (their tokens, their master ids: NULL for no owner); owners.owner_lookup
Owners = Callable[[pd.Series], tuple[pd.Series, pd.Series]]
CALENDAR_YEARS = (1949, 2100)        # dim_date never spans beyond these (bad dates stay out)


# --- calendar -------------------------------------------------------------------------------
def dim_date_rows(first: date, last: date) -> pd.DataFrame:
    """One row per day of the years first..last: Chinese public holidays and adjusted working
    days from chinese-calendar; outside its years, Saturday/Sunday are the days off."""
    import chinese_calendar

    y0 = max(first.year, CALENDAR_YEARS[0])
    y1 = min(max(last.year, y0), CALENDAR_YEARS[1])
    days = pd.date_range(f"{y0}-01-01", f"{y1}-12-31", freq="D")
    weekday = days.weekday.to_numpy()
    is_workday = weekday < 5
    is_holiday = np.zeros(len(days), dtype=bool)
    names = np.full(len(days), None, dtype=object)
    lo, hi = min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year
    known = (days.year >= lo) & (days.year <= hi)
    for i in np.flatnonzero(known):
        d = days[i].date()
        is_workday[i] = chinese_calendar.is_workday(d)
        holiday, name = chinese_calendar.get_holiday_detail(d)
        # get_holiday_detail also names adjusted working weekends; only days off are holidays.
        is_holiday[i] = bool(holiday) and name is not None and not is_workday[i]
        names[i] = name if is_holiday[i] else None
    return pd.DataFrame({
        "date_key": (days.year * 10000 + days.month * 100 + days.day).astype("int64"),
        "date": days.date, "year": days.year.astype("int64"), "month": days.month.astype("int64"),
        "day": days.day.astype("int64"), "weekday": (weekday + 1).astype("int64"),  # ISO: Monday = 1
        "is_holiday": is_holiday, "holiday_name": pd.array(names, dtype="string"), "is_workday": is_workday,
    })


def working_days_between(accepted: pd.Series, completed: pd.Series, calendar: pd.DataFrame) -> pd.Series:
    """Working days after the day of acceptance up to and including the day of completion
    (numpy busday_count over every non-working day of the calendar). NULL when either time is
    missing or completion precedes acceptance."""
    a = pd.to_datetime(accepted).dt.normalize()
    c = pd.to_datetime(completed).dt.normalize()
    ok = (a.notna() & c.notna() & (c >= a)).to_numpy()
    out = pd.Series(pd.NA, index=accepted.index, dtype="Int64")
    if not ok.any():
        return out
    days_off = pd.to_datetime(calendar.loc[~calendar["is_workday"].astype(bool), "date"]).to_numpy("datetime64[D]")
    begin = a[ok].to_numpy("datetime64[D]") + 1
    end = c[ok].to_numpy("datetime64[D]") + 1
    # weekmask all days: weekends count as off only through the calendar (adjusted workdays).
    counts = np.busday_count(begin, end, weekmask="1111111", holidays=days_off)
    out[ok] = counts
    return out


# --- facts ----------------------------------------------------------------------------------
# Fact rows per chunk when the sources are lake files: a fact row depends on its own record (and
# the owners, held whole), and a service hall's million applications are ~3 GB as pandas rows.
FACT_CHUNK_ROWS = 250_000


def _frames_of_kind(std: dict[str, pd.DataFrame], kind: str, one_by_one: bool = False,
                    chunk_rows: int | None = None) -> list[pd.DataFrame] | Iterator[pd.DataFrame]:
    """The rows of that kind, one frame per source. `one_by_one`: a generator (a lazy mapping
    reads each source when its turn comes). A lazy mapping's `kinds` skips other sources unread.
    `chunk_rows`: a lazy mapping of lake files (`paths`) yields each source in frames of at most
    that many rows."""
    parts = _parts_of_kind(std, kind, chunk_rows=chunk_rows)
    return parts if one_by_one else list(parts)


def _source_frames(std, source: str, columns: list[str] | None, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    paths = getattr(std, "paths", None)
    if chunk_rows and paths is not None:
        from govdata.lake import iter_tables, present_columns, to_pandas

        if columns is not None:
            columns = present_columns(paths[source], columns)
        for table in iter_tables(paths[source], chunk_rows, columns):
            # text stays Arrow-backed and dates datetime64: no Python object per value, which
            # the rows were converted from and back to Arrow for staging (5M persons: ~25 s)
            yield to_pandas(table, arrow_strings=True, date_as_object=False)
        return
    yield std.read(source, columns) if columns is not None and hasattr(std, "read") else std[source]


@dataclass(frozen=True)
class LakePart:
    """A source's lake file, not read: its rows of `kind` in `columns` (those it has), for DuckDB
    to scan through the decrypting dataset (lake.dataset) — no pandas frame, no Python string."""
    path: str
    kind: str
    columns: tuple[str, ...]

    def dataset(self):
        from govdata.lake import dataset

        return dataset(self.path)


def _scannable(schema, columns: list[str]) -> bool:
    """Columns DuckDB reads as pandas would: text as text, dates as dates (anything else is read
    through pandas, whose parsing the owners' agreement was defined with)."""
    import pyarrow as pa

    def fits(name: str) -> bool:
        t = schema.field(name).type
        if name == "birth_date":
            return pa.types.is_date(t) or (pa.types.is_timestamp(t) and t.tz is None)
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    return all(fits(c) for c in columns)


def lean_parts_of_kind(std, kind: str, columns: list[str]) -> Iterator[pd.DataFrame | LakePart]:
    """_parts_of_kind in those columns, one source at a time. When `std` holds lake paths, a
    LakePart per source (identifier_owners scans it in DuckDB), or — for a file whose columns are
    not all text and dates — its frame: text as Arrow strings and dates as datetime64. Columns a
    source lacks are left out."""
    paths = getattr(std, "paths", None)
    if paths is None:
        yield from _parts_of_kind(std, kind)
        return
    from govdata.lake import parquet_schema, read_arrow, to_pandas

    kinds = getattr(std, "kinds", None) or {}
    for source in std:
        if kinds.get(source, kind) != kind:
            continue
        schema = parquet_schema(paths[source])
        present = [c for c in columns if c in schema.names]
        if {"source_system", "source_record_id"} <= set(present) and _scannable(schema, present):
            yield LakePart(paths[source], kind, tuple(present))
            continue
        table = read_arrow(paths[source], present)
        frame = to_pandas(table, arrow_strings=True, date_as_object=False)
        del table
        if "kind" in frame:
            frame = frame[frame["kind"] == kind]
        if len(frame):
            yield frame


def _parts_of_kind(std, kind: str, columns: list[str] | None = None, chunk_rows: int | None = None
                   ) -> Iterator[pd.DataFrame]:
    kinds = getattr(std, "kinds", None) or {}
    for source in std:
        if kinds.get(source, kind) != kind:
            continue
        for frame in _source_frames(std, source, columns, chunk_rows):
            if frame is None or frame.empty:
                continue
            _require(frame, ["source_system", "source_record_id", "kind"], f"std frame {source}")
            part = frame[frame["kind"] == kind]
            if len(part):
                yield part


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _owned_by(frame: pd.DataFrame, id_col: str, uscc_col: str, person_owner: Owners,
              enterprise_owner: Owners) -> tuple[pd.Series, pd.Series, dict, dict]:
    """(person id, enterprise id, role tokens, role masks) of a fact's identifiers, through the
    identifier owners (identifiers → tokens and master ids: owners.owner_lookup)."""
    pid, uscc = _text(frame, id_col), _text(frame, uscc_col)   # Arrow-backed text stays Arrow-backed
    (person_tokens, person), (enterprise_tokens, enterprise) = person_owner(pid), enterprise_owner(uscc)
    tokens = {"person": person_tokens, "enterprise": enterprise_tokens}
    masks = {"person": mask_id_number(pid), "enterprise": mask_id_number(uscc)}
    return person, enterprise, tokens, masks


def application_rows(apps: pd.DataFrame, person_owner: Owners, enterprise_owner: Owners,
                     channels: pd.DataFrame, calendar: pd.DataFrame, run_id: str,
                     roles: dict | None = None) -> pd.DataFrame:
    """fact_application rows; person_owner / enterprise_owner map identifier tokens to master
    ids (identifier_owner; owners.owner_lookup). `roles`, when given, receives each role's tokens and masks."""
    out = _with_owner(apps.copy(), "applicant", person_owner, enterprise_owner, roles)
    online = channels.set_index("code")["online"].astype(str).str.lower().isin(["true", "1", "yes"])
    channel = _col(out, "channel").astype("string")
    unknown = channel.dropna()[~channel.dropna().isin(online.index)]
    if len(unknown):
        raise ValueError(f"fact_application: channel code(s) not in standards code table channel: "
                         f"{', '.join(sorted(unknown.unique())[:5])}")
    out["online"] = channel.map(online).astype("boolean")
    out["working_days_taken"] = working_days_between(_col(out, "accepted_at"), _col(out, "completed_at"), calendar)
    limit = pd.to_numeric(_col(out, "legal_limit_days"), errors="raise").astype("Int64")
    out["legal_limit_days"] = limit
    out["within_limit"] = (out["working_days_taken"] <= limit).astype("boolean")
    out["run_id"] = run_id
    return _table_columns(out, "fact_application")


def certificate_rows(certs: pd.DataFrame, person_owner: Owners, enterprise_owner: Owners, run_id: str,
                     roles: dict | None = None) -> pd.DataFrame:
    out = _with_owner(certs.copy(), "holder", person_owner, enterprise_owner, roles)
    out["run_id"] = run_id
    return _table_columns(out, "fact_certificate")


def _with_owner(out: pd.DataFrame, role: str, person_owner: Owners, enterprise_owner: Owners,
                roles: dict | None) -> pd.DataFrame:
    """The fact's <role>_person_id / <role>_enterprise_id / <role>_token from its identifiers
    (applicant or holder); `roles`, when given, receives the tokens and masks."""
    person, enterprise, tokens, masks = _owned_by(out, f"{role}_id_number", f"{role}_uscc", person_owner,
                                                  enterprise_owner)
    out[f"{role}_person_id"] = person
    out[f"{role}_enterprise_id"] = enterprise
    out[f"{role}_token"] = tokens["person"].fillna(tokens["enterprise"])
    if roles is not None:
        roles.update(tokens=tokens, masks=masks)
    return out


APPLICATION_DATES, CERTIFICATE_DATES = ("submitted_at", "accepted_at", "completed_at"), ("issue_date", "expiry_date")


def _fact_dates(std) -> tuple[date, date]:
    """The first and last day any fact mentions (today included): dim_date's span. Only the
    date columns are read from a lazy mapping."""
    values = [pd.Series([pd.Timestamp.today()])]
    for kind, names in (("application", APPLICATION_DATES), ("certificate", CERTIFICATE_DATES)):
        # a chunk at a time, kept as its first and last day: millions of facts never held at once
        for part in _parts_of_kind(std, kind, ["source_system", "source_record_id", "kind", *names],
                                   chunk_rows=FACT_CHUNK_ROWS):
            for c in names:
                days = pd.to_datetime(_col(part, c)).dropna()
                if len(days):
                    values.append(pd.Series([days.min(), days.max()]))
    all_days = pd.concat(values, ignore_index=True).dropna()
    return all_days.min().date(), all_days.max().date()


__all__ = ["CALENDAR_YEARS", "application_rows", "certificate_rows", "dim_date_rows", "working_days_between"]
