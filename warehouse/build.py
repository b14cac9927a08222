"""Link outputs + standardised application/certificate frames → warehouse rows.

Analyst-visible tables get tokens (HMAC of the raw identifier) and masks; the raw ID and phone
numbers go to vault rows only, encrypted (warehouse.vault.encrypt_values).
"""
from __future__ import annotations

import json
import os
from datetime import date

import numpy as np
import pandas as pd

from transforms.privacy import mask_id_number, mask_phone, token
from warehouse.schema import table_for
from warehouse.vault import encrypt_values

# Link output names: the contract's table names, or the pipeline's `<entity>_<part>` files.
_LINK_NAMES = {
    "xref_person": ("xref_person", "person_xref"),
    "dim_person": ("dim_person", "person_golden"),
    "xref_enterprise": ("xref_enterprise", "enterprise_xref"),
    "dim_enterprise": ("dim_enterprise", "enterprise_golden"),
    "master_id_history": ("master_id_history", "person_history", "enterprise_history"),
    "review_queue": ("review_queue", "person_review", "enterprise_review"),
}
NAME_MASKING = ("none", "surname")   # surname: 张** — keep the first character only
CALENDAR_YEARS = (1949, 2100)        # dim_date never spans beyond these (bad dates stay out)


def _link_frame(link: dict[str, pd.DataFrame], table: str) -> pd.DataFrame | None:
    frames = [link[n] for n in _LINK_NAMES[table] if n in link and link[n] is not None]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return None
    frames = [f for f in frames if len(f)] or frames[:1]   # an empty frame has no dtypes to agree on
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].copy()


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")


def _table_columns(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Only the warehouse table's columns (missing nullable ones as NULL), in table order."""
    cols = [c.name for c in table_for(table).columns]
    out = frame.reindex(columns=cols)
    return out.reset_index(drop=True)


def _lineage_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
                      if isinstance(v, (dict, list)) else v)


def mask_names(names: pd.Series, masking: str) -> pd.Series:
    if masking not in NAME_MASKING:
        raise ValueError(f"name_masking {masking!r}: use one of {', '.join(NAME_MASKING)}")
    s = names.astype("string")
    if masking == "none":
        return s
    return s.str[:1] + s.str.len().sub(1).clip(lower=0).map(
        lambda n: "*" * int(n) if pd.notna(n) else pd.NA).astype("string")


# --- persons / enterprises ------------------------------------------------------------------
def person_rows(golden: pd.DataFrame, key: bytes, run_id: str, name_masking: str = "none"
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dim_person, vault_person) from golden person records."""
    _require(golden, ["person_id"], "dim_person (link output)")
    g = golden.reset_index(drop=True)
    ids = g["id_number"].astype("string") if "id_number" in g else pd.Series(pd.NA, index=g.index, dtype="string")
    phones = g["phone"].astype("string") if "phone" in g else pd.Series(pd.NA, index=g.index, dtype="string")
    dim = g.drop(columns=[c for c in ("id_number", "phone") if c in g]).copy()
    dim["person_token"] = token(ids, key)
    dim["id_number_masked"] = mask_id_number(ids)
    dim["phone_masked"] = mask_phone(phones)
    if "name" in dim:
        dim["name"] = mask_names(dim["name"], name_masking)
    if "lineage" in dim:
        dim["lineage"] = _lineage_text(dim["lineage"])
    dim["first_seen_run"] = run_id
    dim["last_run"] = run_id
    vault = pd.DataFrame({"person_id": g["person_id"], "person_token": dim["person_token"],
                          "id_number_enc": encrypt_values(ids, key, "id_number"),
                          "phone_token": token(phones, key), "phone_enc": encrypt_values(phones, key, "phone")})
    return _table_columns(dim, "dim_person"), _table_columns(vault, "vault_person")


def enterprise_rows(golden: pd.DataFrame, key: bytes, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dim_enterprise, vault_enterprise): USCCs are public; the legal rep's ID goes to the vault."""
    _require(golden, ["enterprise_id"], "dim_enterprise (link output)")
    g = golden.reset_index(drop=True)
    rep = (g["legal_rep_id_number"].astype("string") if "legal_rep_id_number" in g
           else pd.Series(pd.NA, index=g.index, dtype="string"))
    dim = g.drop(columns=[c for c in ("legal_rep_id_number",) if c in g]).copy()
    dim["enterprise_token"] = token(dim["uscc"].astype("string"), key) if "uscc" in dim else pd.NA
    dim["legal_rep_token"] = token(rep, key)
    dim["legal_rep_id_masked"] = mask_id_number(rep)
    if "lineage" in dim:
        dim["lineage"] = _lineage_text(dim["lineage"])
    dim["first_seen_run"] = run_id
    dim["last_run"] = run_id
    vault = pd.DataFrame({"enterprise_id": g["enterprise_id"], "legal_rep_token": dim["legal_rep_token"],
                          "legal_rep_id_number_enc": encrypt_values(rep, key, "legal_rep_id_number")})
    vault = vault[rep.notna().to_numpy()]
    return _table_columns(dim, "dim_enterprise"), _table_columns(vault, "vault_enterprise")


def master_id_map(xref: pd.DataFrame | None, golden: pd.DataFrame | None, std_frames: list[pd.DataFrame],
                  id_col: str, identifier: str) -> pd.Series:
    """identifier (ID number / USCC) → master id: golden records first, then every standardised
    record that carries the identifier, through its xref row."""
    pieces = []
    if golden is not None and identifier in golden:
        pieces.append(golden[[identifier, id_col]])
    if xref is not None and std_frames:
        recs = pd.concat([f[["source_system", "source_record_id", identifier]] for f in std_frames
                          if identifier in f], ignore_index=True) if any(identifier in f for f in std_frames) else None
        if recs is not None:
            keyed = recs.merge(xref[["source_system", "source_record_id", id_col]].astype("string"),
                               on=["source_system", "source_record_id"], how="inner")
            pieces.append(keyed[[identifier, id_col]])
    if not pieces:
        return pd.Series(dtype="string")
    both = pd.concat(pieces, ignore_index=True).dropna().astype("string")
    both = both.drop_duplicates(identifier, keep="first")
    return pd.Series(both[id_col].to_numpy(), index=both[identifier].to_numpy(), dtype="string")


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
def _frames_of_kind(std: dict[str, pd.DataFrame], kind: str) -> list[pd.DataFrame]:
    out = []
    for source, frame in std.items():
        if frame is None or frame.empty:
            continue
        _require(frame, ["source_system", "source_record_id", "kind"], f"std frame {source}")
        part = frame[frame["kind"] == kind]
        if len(part):
            out.append(part)
    return out


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype="object")


def application_rows(apps: pd.DataFrame, person_ids: pd.Series, enterprise_ids: pd.Series,
                     channels: pd.DataFrame, calendar: pd.DataFrame, key: bytes, run_id: str) -> pd.DataFrame:
    out = apps.copy()
    pid = _col(out, "applicant_id_number").astype("string")
    uscc = _col(out, "applicant_uscc").astype("string")
    out["applicant_person_id"] = pid.map(person_ids).astype("string")
    out["applicant_enterprise_id"] = uscc.map(enterprise_ids).astype("string")
    out["applicant_token"] = token(pid, key).fillna(token(uscc, key))
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


def certificate_rows(certs: pd.DataFrame, person_ids: pd.Series, enterprise_ids: pd.Series, key: bytes,
                     run_id: str) -> pd.DataFrame:
    out = certs.copy()
    pid = _col(out, "holder_id_number").astype("string")
    uscc = _col(out, "holder_uscc").astype("string")
    out["holder_person_id"] = pid.map(person_ids).astype("string")
    out["holder_enterprise_id"] = uscc.map(enterprise_ids).astype("string")
    out["holder_token"] = token(pid, key).fillna(token(uscc, key))
    out["run_id"] = run_id
    return _table_columns(out, "fact_certificate")


# --- reference dimensions -------------------------------------------------------------------
def region_rows(regions: pd.DataFrame) -> pd.DataFrame:
    """GB/T 2260 codes, current and historical; parent = prefecture (or province) code."""
    _require(regions, ["code", "name", "level"], "standards code table region")
    r = regions.copy()
    for col in ("valid_from", "valid_to"):
        if col in r:
            r[col] = pd.to_numeric(r[col].replace("", pd.NA), errors="raise").astype("Int64")
    code = r["code"].astype("string")
    prefecture = code.str[:4] + "00"
    province = code.str[:2] + "0000"
    r["parent_code"] = np.where(r["level"] == "county", prefecture,
                                np.where(r["level"] == "prefecture", province, None))
    r.loc[(r["level"] == "county") & ~prefecture.isin(code), "parent_code"] = province
    # A code reused over time (renamed, re-levelled) has several periods: analysts join on the code,
    # so keep its current period, else its latest one.
    r["_current"] = r["status"].eq("current") if "status" in r else False
    r = r.sort_values(["code", "_current", "valid_from"], na_position="first").drop_duplicates("code", keep="last")
    return _table_columns(r, "dim_region")


def service_item_rows(items: pd.DataFrame, used: pd.Series) -> pd.DataFrame:
    """The code table, plus codes used by applications but missing from it (name NULL)."""
    _require(items, ["code"], "standards code table service_item")
    out = items.rename(columns={"code": "service_item_code"})
    if "legal_limit_days" in out:
        out["legal_limit_days"] = pd.to_numeric(out["legal_limit_days"].replace("", pd.NA),
                                                errors="raise").astype("Int64")
    extra = pd.Series(used.dropna().unique(), dtype="string")
    extra = extra[~extra.isin(out["service_item_code"])]
    out = pd.concat([out, pd.DataFrame({"service_item_code": extra})], ignore_index=True)
    return _table_columns(out, "dim_service_item")


def source_rows(std: dict[str, pd.DataFrame], quarantine: pd.DataFrame, run_id: str) -> pd.DataFrame:
    rows = []
    q = quarantine if quarantine is not None and len(quarantine) else pd.DataFrame(
        columns=["source_system", "source_record_id", "row_rejected"])
    for source, frame in std.items():
        qs = q[q["source_system"] == source]
        rejected = qs[qs["row_rejected"].astype(bool)]
        kind = frame["kind"].iloc[0] if len(frame) and "kind" in frame else None
        rows.append({"source_system": source, "kind": kind, "record_count": len(frame),
                     "rejected_rows": int(rejected["source_record_id"].nunique()),
                     "quarantined_values": int(len(qs) - len(rejected)), "last_run": run_id})
    return _table_columns(pd.DataFrame(rows), "dim_source")


def _fact_dates(apps: pd.DataFrame, certs: pd.DataFrame) -> tuple[date, date]:
    values = [pd.to_datetime(_col(apps, c)) for c in ("submitted_at", "accepted_at", "completed_at")]
    values += [pd.to_datetime(_col(certs, c)) for c in ("issue_date", "expiry_date")]
    all_days = pd.concat(values + [pd.Series([pd.Timestamp.today()])], ignore_index=True).dropna()
    return all_days.min().date(), all_days.max().date()


def build_tables(link: dict[str, pd.DataFrame], std: dict[str, pd.DataFrame], quarantine: pd.DataFrame,
                 standards, key: bytes, run_id: str, *, name_masking: str | None = None) -> dict[str, pd.DataFrame]:
    """Warehouse rows for one run (see module doc). `name_masking` (none | surname) defaults to
    GOVDATA_NAME_MASKING, else none."""
    name_masking = name_masking or os.environ.get("GOVDATA_NAME_MASKING", "none")
    tables: dict[str, pd.DataFrame] = {}
    xref_p, golden_p = _link_frame(link, "xref_person"), _link_frame(link, "dim_person")
    xref_e, golden_e = _link_frame(link, "xref_enterprise"), _link_frame(link, "dim_enterprise")
    if golden_p is not None:
        tables["dim_person"], tables["vault_person"] = person_rows(golden_p, key, run_id, name_masking)
    if golden_e is not None:
        tables["dim_enterprise"], tables["vault_enterprise"] = enterprise_rows(golden_e, key, run_id)
    for name, frame in (("xref_person", xref_p), ("xref_enterprise", xref_e)):
        if frame is not None:
            tables[name] = _table_columns(frame.assign(run_id=run_id, is_deleted=False), name)
    history = _link_frame(link, "master_id_history")
    if history is not None:
        tables["master_id_history"] = _table_columns(history.assign(run_id=history.get("run_id", run_id)),
                                                     "master_id_history")
    review = _link_frame(link, "review_queue")
    if review is not None:
        tables["review_queue"] = review_rows(review, run_id)

    person_ids = master_id_map(xref_p, golden_p, _frames_of_kind(std, "person"), "person_id", "id_number")
    enterprise_ids = master_id_map(xref_e, golden_e, _frames_of_kind(std, "enterprise"), "enterprise_id", "uscc")
    apps = _concat(_frames_of_kind(std, "application"))
    certs = _concat(_frames_of_kind(std, "certificate"))
    first, last = _fact_dates(apps, certs)
    calendar = dim_date_rows(first, last)
    tables["dim_date"] = calendar
    if len(apps):
        tables["fact_application"] = application_rows(apps, person_ids, enterprise_ids,
                                                      standards.code_table("channel"), calendar, key, run_id)
    if len(certs):
        tables["fact_certificate"] = certificate_rows(certs, person_ids, enterprise_ids, key, run_id)
    tables["dim_region"] = region_rows(standards.regions)
    tables["dim_service_item"] = service_item_rows(standards.code_table("service_item"),
                                                   _col(apps, "service_item_code") if len(apps) else pd.Series())
    if std:
        tables["dim_source"] = source_rows(std, quarantine, run_id)
    if quarantine is not None and len(quarantine):
        tables["quarantine"] = _table_columns(quarantine.assign(run_id=run_id), "quarantine")
    return tables


def review_rows(review: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Review pairs; per-field evidence columns not in the table are kept as one JSON text."""
    cols = {c.name for c in table_for("review_queue").columns}
    out = review.copy()
    extra = [c for c in out.columns if c not in cols]
    if "evidence" not in out and extra:
        out["evidence"] = [json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()},
                                      ensure_ascii=False, default=str) for row in out[extra].to_dict("records")]
    if "run_id" not in out:
        out["run_id"] = run_id
    return _table_columns(out, "review_queue")
