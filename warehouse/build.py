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

from govdata.transforms.privacy import mask_id_number, mask_phone, token
from govdata.warehouse.schema import table_for
from govdata.warehouse.vault import encrypt_values

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


# --- who holds an identifier ---------------------------------------------------------------
# An identifier (citizen ID number, USCC) resolves to one master: the master holding a record
# that carries the identifier and agrees with what the identifier encodes (persons: birth date
# and sex; enterprises: region and organisation code) and with the name the identifier's holder
# goes by. The resolution is persisted (identifier_owner, keyed by the identifier's token) and
# kept while its owner still exists and still holds the identifier, unless another holder agrees
# strictly better; so it depends neither on record order nor on what a run relinked.
OWNER_REASONS = ("new_identifier", "owner_gone", "owner_lost_identifier", "better_holder", "no_holder")
_ENTITY = {"person": ("person_id", "id_number"), "enterprise": ("enterprise_id", "uscc")}


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name].astype("string") if name in frame else pd.Series(pd.NA, index=frame.index, dtype="string")


def _yyyymmdd(values: pd.Series) -> pd.Series:
    d = pd.to_datetime(values, errors="coerce")
    return (d.dt.year * 10000 + d.dt.month * 100 + d.dt.day).astype("Int64")


def _encoded_agreement(recs: pd.DataFrame, entity: str, identifier: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(first, second) attribute agreement of each record with its identifier, as booleans.
    Persons: the ID's birth date (digits 7-14) and sex (digit 17: odd = 1, even = 2).
    Enterprises: the USCC's region code (characters 3-8) and organisation code (9-17)."""
    if entity == "person":
        born = pd.to_numeric(identifier.str.slice(6, 14), errors="coerce").astype("Int64")
        digit = pd.to_numeric(identifier.str.slice(16, 17), errors="coerce").astype("Int64")
        sex = (2 - digit % 2).astype("string")
        first = _yyyymmdd(recs["birth_date"]) == born if "birth_date" in recs else None
        second = _text(recs, "sex") == sex
    else:
        first = _text(recs, "region_code") == identifier.str.slice(2, 8)
        second = _text(recs, "org_code") == identifier.str.slice(8, 17)
    if first is None:
        first = pd.Series(False, index=recs.index)
    return first.fillna(False).astype(bool), second.fillna(False).astype(bool)


def identifier_holders(xref: pd.DataFrame | None, std_frames: list[pd.DataFrame], entity: str,
                       key: bytes) -> pd.DataFrame:
    """Every (identifier token, master) pair where the master holds a record carrying the
    identifier, with `agreement` (0-7: 4 × birth/region, 2 × sex/org code, 1 × name agree) — the
    best of the master's records carrying it — and `records` (how many). Vectorised."""
    id_col, identifier = _ENTITY[entity]
    empty = pd.DataFrame({"identifier_token": pd.Series(dtype="string"), "master_id": pd.Series(dtype="string"),
                          "agreement": pd.Series(dtype="int64"), "records": pd.Series(dtype="int64")})
    frames = [f for f in std_frames if identifier in f]
    if xref is None or xref.empty or not frames:
        return empty
    attrs = [c for c in ("birth_date", "sex", "name", "name_pinyin", "region_code", "org_code")]
    recs = pd.concat([f[["source_system", "source_record_id", identifier] + [c for c in attrs if c in f]]
                      for f in frames], ignore_index=True)
    recs = recs[recs[identifier].notna()]
    keys = ["source_system", "source_record_id"]
    recs = recs.astype({"source_system": "string", "source_record_id": "string"}).merge(
        xref[keys + [id_col]].astype("string"), on=keys, how="inner")
    if recs.empty:
        return empty
    ident = recs[identifier].astype("string")
    first, second = _encoded_agreement(recs, entity, ident)
    encoded = first.to_numpy(np.int64) * 2 + second.to_numpy(np.int64)
    # Integer codes from here on (hash factorisation; no string sorts): the identifier, the master.
    id_code, id_values = pd.factorize(ident)
    m_code, m_values = pd.factorize(recs[id_col].astype("string"))
    # The holder's name: the most frequent name among the identifier's records that agree best
    # with it (ties: the smallest name).
    name = _text(recs, "name").fillna(_text(recs, "name_pinyin"))
    name_rank, _ = pd.factorize(name, sort=True)          # sorts the distinct names only
    best_encoded = pd.Series(encoded).groupby(id_code).transform("max").to_numpy()
    pick = (encoded == best_encoded) & (name_rank >= 0)
    pair = pd.Series(1, index=pd.MultiIndex.from_arrays([id_code[pick], name_rank[pick]])).groupby(level=[0, 1]).size()
    ids_, names_, n_ = (pair.index.get_level_values(0).to_numpy(), pair.index.get_level_values(1).to_numpy(),
                        pair.to_numpy())
    order = np.lexsort((names_, -n_, ids_))
    first_of = np.r_[True, ids_[order][1:] != ids_[order][:-1]] if len(order) else np.zeros(0, dtype=bool)
    holder_name = np.full(len(id_values), -2, dtype=np.int64)
    holder_name[ids_[order][first_of]] = names_[order][first_of]
    name_ok = (name_rank == holder_name[id_code]).astype(np.int64)
    agreement = encoded * 2 + name_ok
    key_ = id_code.astype(np.int64) * max(len(m_values), 1) + m_code
    grouped = pd.DataFrame({"k": key_, "a": agreement}).groupby("k", sort=False)["a"].agg(["max", "size"])
    k = grouped.index.to_numpy()
    id_of, m_of = k // max(len(m_values), 1), k % max(len(m_values), 1)
    tokens = token(pd.Series(id_values, dtype="string"), key).to_numpy()
    return pd.DataFrame({"identifier_token": pd.array(tokens[id_of], dtype="string"),
                         "master_id": pd.array(np.asarray(m_values, dtype=object)[m_of], dtype="string"),
                         "agreement": grouped["max"].to_numpy(np.int64), "records": grouped["size"].to_numpy(np.int64)})


def resolve_owners(holders: pd.DataFrame, previous: pd.DataFrame | None, live_masters: pd.Series,
                   run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(owners, changes). owners: identifier_token, master_id, agreement, assigned_run — one row
    per identifier someone holds. The previous owner stays while it exists, holds the identifier
    and agrees as well as the best holder; otherwise the best holder (highest agreement, then most
    records, then the smallest master id) takes over. changes: identifier_token, old_owner,
    new_owner, reason (OWNER_REASONS) for every identifier whose owner is new or moved.
    Vectorised on integer codes (hash factorisation; only distinct master ids are sorted)."""
    prev = previous if previous is not None else pd.DataFrame(columns=["identifier_token", "master_id"])
    prev = pd.DataFrame({"t": _text(prev, "identifier_token"), "m": _text(prev, "master_id"),
                         "run": _text(prev, "assigned_run")}).dropna(subset=["t", "m"]).drop_duplicates("t")
    h_tok, h_m = _text(holders, "identifier_token"), _text(holders, "master_id")
    t_code, t_values = pd.factorize(pd.concat([h_tok, prev["t"]], ignore_index=True))
    m_rank, m_values = pd.factorize(pd.concat([h_m, prev["m"]], ignore_index=True), sort=True)
    nh, nt, nm = len(holders), len(t_values), max(len(m_values), 1)
    ht, hm, pt, pm = t_code[:nh], m_rank[:nh], t_code[nh:], m_rank[nh:]
    agreement = holders["agreement"].to_numpy(np.int64)
    records = holders["records"].to_numpy(np.int64)
    # the best holder per identifier
    order = np.lexsort((hm, -records, -agreement, ht))
    first = order[np.r_[True, ht[order][1:] != ht[order][:-1]]] if nh else order
    best_m = np.full(nt, -1, dtype=np.int64)
    best_a = np.full(nt, -1, dtype=np.int64)
    best_m[ht[first]], best_a[ht[first]] = hm[first], agreement[first]
    # the previous owner's agreement, when it still holds the identifier
    prev_m = np.full(nt, -1, dtype=np.int64)
    prev_m[pt] = pm
    prev_run = np.full(nt, None, dtype=object)
    prev_run[pt] = prev["run"].to_numpy(dtype=object, na_value=None)
    found = pd.Index(ht.astype(np.int64) * nm + hm).get_indexer(np.arange(nt, dtype=np.int64) * nm + prev_m)
    prev_a = np.where((prev_m >= 0) & (found >= 0), agreement[np.maximum(found, 0)] if nh else -1, -1)
    has_prev = prev_m >= 0
    keep = has_prev & (prev_a == best_a) & (best_a >= 0)
    owner = np.where(keep, prev_m, best_m)
    live = np.zeros(nm, dtype=bool)
    live[np.flatnonzero(pd.Series(m_values).isin(live_masters).to_numpy())] = True
    reason = np.full(nt, None, dtype=object)
    moved = has_prev & ~keep
    reason[~has_prev] = "new_identifier"
    reason[moved] = "better_holder"
    reason[moved & (prev_a < 0)] = "owner_lost_identifier"
    reason[moved & ~live[np.maximum(prev_m, 0)]] = "owner_gone"
    reason[moved & (best_m < 0)] = "no_holder"
    masters = np.asarray(m_values, dtype=object)
    names = lambda codes: pd.array(np.where(codes >= 0, masters[np.maximum(codes, 0)], None), dtype="string")  # noqa: E731
    tokens = pd.array(np.asarray(t_values, dtype=object), dtype="string")
    held = owner >= 0
    owners = pd.DataFrame({"identifier_token": tokens[held], "master_id": names(owner[held]),
                           "agreement": pd.array(np.where(keep, prev_a, best_a)[held], dtype="Int64"),
                           "assigned_run": pd.array(np.where(keep & (prev_run != None), prev_run, run_id)[held],  # noqa: E711
                                                    dtype="string")})
    changed = reason != None  # noqa: E711
    changes = pd.DataFrame({"identifier_token": tokens[changed], "old_owner": names(prev_m[changed]),
                            "new_owner": names(owner[changed]), "reason": pd.array(reason[changed], dtype="string")})
    return owners, changes


def _claims_from_facts(previous: dict, role: str) -> pd.DataFrame:
    """Owners of identifiers as the previous facts recorded them (the most frequent, then the
    smallest): the previous claims of a warehouse loaded before identifier_owner existed."""
    frames = []
    for table, (tok, person, enterprise) in FACT_OWNERS.items():
        f = previous.get(table)
        if f is None or not len(f):
            continue
        frames.append(pd.DataFrame({"identifier_token": _text(f, tok),
                                    "master_id": _text(f, person if role == "person" else enterprise)}))
    if not frames:
        return pd.DataFrame({"identifier_token": pd.Series(dtype="string"), "master_id": pd.Series(dtype="string")})
    both = pd.concat(frames, ignore_index=True).dropna()
    n = both.groupby(["identifier_token", "master_id"], observed=True).size().rename("n").reset_index()
    n = n.sort_values(["identifier_token", "n", "master_id"], ascending=[True, False, True])
    return n.drop_duplicates("identifier_token")[["identifier_token", "master_id"]]


# fact table -> (token column, person owner column, enterprise owner column)
FACT_OWNERS = {"fact_application": ("applicant_token", "applicant_person_id", "applicant_enterprise_id"),
                "fact_certificate": ("holder_token", "holder_person_id", "holder_enterprise_id")}


def identifier_owners(xref: pd.DataFrame | None, std_frames: list[pd.DataFrame], entity: str, key: bytes,
                      previous: dict, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(identifier_owner rows of the entity, changes): see resolve_owners. The previous claims
    are the warehouse's identifier_owner rows, and for identifiers it lacks, the owners the
    previous facts carry."""
    id_col = _ENTITY[entity][0]
    holders = identifier_holders(xref, std_frames, entity, key)
    stored = previous.get("identifier_owner")
    if stored is not None and len(stored):
        stored = stored[_text(stored, "entity") == entity]
    else:
        stored = pd.DataFrame(columns=["identifier_token", "master_id", "assigned_run"])
    from_facts = _claims_from_facts(previous, entity)
    from_facts = from_facts[~from_facts["identifier_token"].isin(_text(stored, "identifier_token"))]
    claims = pd.concat([stored.reindex(columns=["identifier_token", "master_id", "assigned_run"]).astype("string"),
                        from_facts.astype("string")], ignore_index=True)
    live = xref[id_col].astype("string") if xref is not None and id_col in xref else pd.Series(dtype="string")
    owners, changes = resolve_owners(holders, claims, live.drop_duplicates(), run_id)
    return owners.assign(entity=entity), changes


def owner_map(owners: pd.DataFrame) -> pd.Series:
    """identifier token → master id."""
    return pd.Series(owners["master_id"].to_numpy(), index=owners["identifier_token"].to_numpy(), dtype="string")


def fact_owner_changes(table: str, rows: pd.DataFrame, role_tokens: dict[str, pd.Series],
                       masked: dict[str, pd.Series], previous: pd.DataFrame | None,
                       changes: dict[str, pd.DataFrame], run_id: str) -> pd.DataFrame:
    """fact_owner_change rows: facts loaded before whose person or enterprise is another now.
    reason: the identifier's reason when the fact's identifier kept its token and its owner moved
    (resolve_owners), else `identifier_changed` (the fact's own input changed)."""
    cols = [c.name for c in table_for("fact_owner_change").columns]
    if previous is None or not len(previous) or not len(rows):
        return pd.DataFrame(columns=cols)
    tok, person, enterprise = FACT_OWNERS[table]
    keys = ["source_system", "source_record_id"]
    new = rows[keys + [tok, person, enterprise]].astype("string").reset_index(drop=True)
    for role in ("person", "enterprise"):
        new[f"_{role}_token"] = role_tokens[role].astype("string").to_numpy()
        new[f"_{role}_masked"] = masked[role].astype("string").to_numpy()
    old = previous.reindex(columns=keys + [tok, person, enterprise]).astype("string")
    m = new.merge(old, on=keys, how="inner", suffixes=("", "_old"))
    out = []
    for role, col in (("person", person), ("enterprise", enterprise)):
        a, b = m[col], m[f"{col}_old"]
        moved = (a.isna() != b.isna()) | (a.notna() & b.notna() & (a != b)).fillna(False)
        part = m[moved.to_numpy()]
        if part.empty:
            continue
        ch = changes.get(role)
        reason = pd.Series("identifier_changed", index=part.index, dtype="string")
        if ch is not None and len(ch):
            why = part[[f"_{role}_token", f"{col}_old"]].merge(
                ch.rename(columns={"identifier_token": f"_{role}_token", "old_owner": f"{col}_old"}).astype("string"),
                on=[f"_{role}_token", f"{col}_old"], how="left")["reason"]
            same_id = (part[tok] == part[f"{tok}_old"]).fillna(False).to_numpy()
            reason = reason.where(~(same_id & why.notna().to_numpy()), why.to_numpy())
        out.append(pd.DataFrame({"run_id": run_id, "fact_table": table, "source_system": part["source_system"],
                                 "source_record_id": part["source_record_id"], "role": role,
                                 "identifier_token": part[f"_{role}_token"],
                                 "identifier_masked": part[f"_{role}_masked"],
                                 "old_owner": b[moved.to_numpy()], "new_owner": a[moved.to_numpy()],
                                 "reason": reason}))
    if not out:
        return pd.DataFrame(columns=cols)
    return _table_columns(pd.concat(out, ignore_index=True), "fact_owner_change")


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


def _owned_by(frame: pd.DataFrame, id_col: str, uscc_col: str, person_owner: pd.Series,
              enterprise_owner: pd.Series, key: bytes) -> tuple[pd.Series, pd.Series, dict, dict]:
    """(person id, enterprise id, role tokens, role masks) of a fact's identifiers, through the
    identifier owners (token → master id)."""
    pid = _col(frame, id_col).astype("string")
    uscc = _col(frame, uscc_col).astype("string")
    tokens = {"person": token(pid, key), "enterprise": token(uscc, key)}
    masks = {"person": mask_id_number(pid), "enterprise": mask_id_number(uscc)}
    return (tokens["person"].map(person_owner).astype("string"),
            tokens["enterprise"].map(enterprise_owner).astype("string"), tokens, masks)


def application_rows(apps: pd.DataFrame, person_owner: pd.Series, enterprise_owner: pd.Series,
                     channels: pd.DataFrame, calendar: pd.DataFrame, key: bytes, run_id: str,
                     roles: dict | None = None) -> pd.DataFrame:
    """fact_application rows; person_owner / enterprise_owner map identifier tokens to master
    ids (identifier_owner). `roles`, when given, receives each role's tokens and masks."""
    out = _with_owner(apps.copy(), "applicant", person_owner, enterprise_owner, key, roles)
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


def certificate_rows(certs: pd.DataFrame, person_owner: pd.Series, enterprise_owner: pd.Series, key: bytes,
                     run_id: str, roles: dict | None = None) -> pd.DataFrame:
    out = _with_owner(certs.copy(), "holder", person_owner, enterprise_owner, key, roles)
    out["run_id"] = run_id
    return _table_columns(out, "fact_certificate")


def _with_owner(out: pd.DataFrame, role: str, person_owner: pd.Series, enterprise_owner: pd.Series, key: bytes,
                roles: dict | None) -> pd.DataFrame:
    """The fact's <role>_person_id / <role>_enterprise_id / <role>_token from its identifiers
    (applicant or holder); `roles`, when given, receives the tokens and masks."""
    person, enterprise, tokens, masks = _owned_by(out, f"{role}_id_number", f"{role}_uscc", person_owner,
                                                  enterprise_owner, key)
    out[f"{role}_person_id"] = person
    out[f"{role}_enterprise_id"] = enterprise
    out[f"{role}_token"] = tokens["person"].fillna(tokens["enterprise"])
    if roles is not None:
        roles.update(tokens=tokens, masks=masks)
    return out


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
                 standards, key: bytes, run_id: str, *, name_masking: str | None = None,
                 previous: dict[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """Warehouse rows for one run (see module doc). `name_masking` (none | surname) defaults to
    GOVDATA_NAME_MASKING, else none. `previous`: the warehouse's identifier_owner and the facts'
    keys, tokens and owners before this run (previous_owner_state), so that facts keep their
    owner; fact_owner_change lists the facts whose owner moved."""
    previous = previous or {}
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

    owners, changes = [], {}
    for entity, xref in (("person", xref_p), ("enterprise", xref_e)):
        rows, changes[entity] = identifier_owners(xref, _frames_of_kind(std, entity), entity, key, previous, run_id)
        owners.append(rows)
    person_owner, enterprise_owner = owner_map(owners[0]), owner_map(owners[1])
    if xref_p is not None or xref_e is not None:
        tables["identifier_owner"] = _table_columns(pd.concat(owners, ignore_index=True), "identifier_owner")
    apps = _concat(_frames_of_kind(std, "application"))
    certs = _concat(_frames_of_kind(std, "certificate"))
    first, last = _fact_dates(apps, certs)
    calendar = dim_date_rows(first, last)
    tables["dim_date"] = calendar
    moved = []
    if len(apps):
        roles: dict = {}
        tables["fact_application"] = application_rows(apps, person_owner, enterprise_owner,
                                                      standards.code_table("channel"), calendar, key, run_id, roles)
        moved.append(fact_owner_changes("fact_application", tables["fact_application"], roles["tokens"],
                                        roles["masks"], previous.get("fact_application"), changes, run_id))
    if len(certs):
        roles = {}
        tables["fact_certificate"] = certificate_rows(certs, person_owner, enterprise_owner, key, run_id, roles)
        moved.append(fact_owner_changes("fact_certificate", tables["fact_certificate"], roles["tokens"],
                                        roles["masks"], previous.get("fact_certificate"), changes, run_id))
    moved = [m for m in moved if len(m)]
    if moved:
        tables["fact_owner_change"] = _table_columns(pd.concat(moved, ignore_index=True), "fact_owner_change")
    tables["dim_region"] = region_rows(standards.regions)
    tables["dim_service_item"] = service_item_rows(standards.code_table("service_item"),
                                                   _col(apps, "service_item_code") if len(apps) else pd.Series())
    if std:
        tables["dim_source"] = source_rows(std, quarantine, run_id)
    if quarantine is not None:   # even empty: the load replaces the re-normalised records' rows
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
