"""Who holds an identifier (identifier_owner) and which facts changed owner (fact_owner_change)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from govdata.warehouse.rows import _table_columns, _text, identifier_token
from govdata.warehouse.schema import table_for

# --- who holds an identifier ---------------------------------------------------------------
# An identifier (citizen ID number, USCC) resolves to one master: the master holding a record
# that carries the identifier and agrees with what the identifier encodes (persons: birth date
# and sex; enterprises: region and organisation code) and with the name the identifier's holder
# goes by. The resolution is persisted (identifier_owner, keyed by the identifier's token) and
# kept while its owner still exists and still holds the identifier, unless another holder agrees
# strictly better; so it depends neither on record order nor on what a run relinked.
OWNER_REASONS = ("new_identifier", "owner_gone", "owner_lost_identifier", "better_holder", "no_holder")
_ENTITY = {"person": ("person_id", "id_number"), "enterprise": ("enterprise_id", "uscc")}


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


HOLDER_ATTRIBUTES = ("birth_date", "sex", "name", "name_pinyin", "region_code", "org_code")
# what identifier_holders reads of a person or enterprise record
HOLDER_COLUMNS = ["source_system", "source_record_id", "kind", "id_number", "uscc", *HOLDER_ATTRIBUTES]
ARROW_TEXT = "string[pyarrow]"   # text without a Python object per value: a fraction of the memory


def _arrow_text(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype=ARROW_TEXT)


def _holder_records(frame: pd.DataFrame, identifier: str, attrs: tuple[str, ...]) -> pd.DataFrame | None:
    """A source's records carrying the identifier, in the columns the agreement reads: text as
    Arrow strings, birth dates as datetime64 (built one source at a time, so the person records
    of a run are never held as Python objects together)."""
    if identifier not in frame:
        return None
    columns = ["source_system", "source_record_id", identifier] + [c for c in attrs if c in frame]
    part = frame.loc[frame[identifier].notna(), columns]
    part = part.astype({c: ARROW_TEXT for c in columns if c != "birth_date"})   # no-op when read as Arrow
    if "birth_date" in part and not pd.api.types.is_datetime64_any_dtype(part["birth_date"]):
        part["birth_date"] = pd.to_datetime(part["birth_date"], errors="coerce")
    return part


def identifier_holders(xref: pd.DataFrame | None, std_frames: list[pd.DataFrame], entity: str,
                       key: bytes) -> pd.DataFrame:
    """Every (identifier token, master) pair where the master holds a record carrying the
    identifier, with `agreement` (0-7: 4 × birth/region, 2 × sex/org code, 1 × name agree) — the
    best of the master's records carrying it — and `records` (how many). Vectorised."""
    id_col, identifier = _ENTITY[entity]
    empty = pd.DataFrame({"identifier_token": pd.Series(dtype="string"), "master_id": pd.Series(dtype="string"),
                          "agreement": pd.Series(dtype="int64"), "records": pd.Series(dtype="int64")})
    if xref is None or xref.empty:
        return empty
    parts = [_holder_records(f, identifier, HOLDER_ATTRIBUTES) for f in std_frames]   # a lazy iterable: one source at a time
    parts = [p for p in parts if p is not None]
    if not parts:
        return empty
    keys = ["source_system", "source_record_id"]
    recs = pd.concat(parts, ignore_index=True)
    del parts
    recs = recs.merge(xref[keys + [id_col]].astype(ARROW_TEXT), on=keys, how="inner")
    if recs.empty:
        return empty
    ident = recs[identifier]
    first, second = _encoded_agreement(recs, entity, ident)
    encoded = first.to_numpy(np.int64) * 2 + second.to_numpy(np.int64)
    # Integer codes from here on (hash factorisation; no string sorts): the identifier, the master.
    id_code, id_values = pd.factorize(ident)
    m_code, m_values = pd.factorize(recs[id_col])
    # The holder's name: the most frequent name among the identifier's records that agree best
    # with it (ties: the smallest name).
    name = _arrow_text(recs, "name").fillna(_arrow_text(recs, "name_pinyin"))
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
    tokens = identifier_token(pd.Series(id_values, dtype="string"), key).to_numpy()
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
    names = lambda codes: pd.array(np.where(codes >= 0, masters[np.maximum(codes, 0)], None), dtype="string")
    tokens = pd.array(np.asarray(t_values, dtype=object), dtype="string")
    held = owner >= 0
    owners = pd.DataFrame({"identifier_token": tokens[held], "master_id": names(owner[held]),
                           "agreement": pd.array(np.where(keep, prev_a, best_a)[held], dtype="Int64"),
                           "assigned_run": pd.array(np.where(keep & (prev_run != None), prev_run, run_id)[held],
                                                    dtype="string")})
    changed = reason != None
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
    live = xref[id_col].drop_duplicates().astype("string") if xref is not None and id_col in xref \
        else pd.Series(dtype="string")
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


__all__ = ["FACT_OWNERS", "OWNER_REASONS", "fact_owner_changes", "identifier_holders", "identifier_owners",
           "owner_map", "resolve_owners"]
