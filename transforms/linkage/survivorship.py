"""Golden records: one value per element per master ID, chosen by the stewards' rules in
standards/survivorship.yaml, with lineage (element -> source_system that supplied it)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

RULES = ("trust_order", "most_recent", "most_frequent")


def entity_rules(survivorship: dict, entity: str) -> dict:
    """The entity's section ({trust_order, default, tiebreak, elements}); accepts the whole
    parsed YAML or just the section."""
    spec = survivorship.get(entity, survivorship) if isinstance(survivorship, dict) else None
    if not isinstance(spec, dict) or "trust_order" not in spec:
        raise ValueError(f"survivorship: no '{entity}' section with a trust_order list")
    for key in ("default", "tiebreak"):
        if spec.get(key, "trust_order") not in RULES:
            raise ValueError(f"survivorship.{entity}.{key}: unknown rule {spec.get(key)!r}; "
                             f"expected one of {', '.join(RULES)}")
    for element, rule in (spec.get("elements") or {}).items():
        if rule not in RULES:
            raise ValueError(f"survivorship.{entity}.elements.{element}: unknown rule {rule!r}; "
                             f"expected one of {', '.join(RULES)}")
    return spec


def trust_rank(source_system: pd.Series, trust_order: list[str]) -> np.ndarray:
    """0 for the most trusted source; sources not listed rank after all listed ones."""
    rank = {s: i for i, s in enumerate(trust_order)}
    return source_system.map(rank).fillna(len(trust_order)).to_numpy(dtype=np.int64)


def _rule_key(rule: str, sub: pd.DataFrame) -> np.ndarray:
    """Ascending sort key for a rule (smaller wins)."""
    if rule == "trust_order":
        return sub["_trust"].to_numpy()
    if rule == "most_recent":
        return -sub["_recency"].to_numpy(dtype=np.float64)
    return -sub["_freq"].to_numpy()


def pick_rows(work: pd.DataFrame, element: str, rule: str, tiebreak: str, n_groups: int
              ) -> np.ndarray:
    """Row position of the winning value per master id (-1: no value). NULLs never win.
    Ties after rule and tiebreak: trust, then the smallest value, then the smallest record key."""
    present = work[element].notna().to_numpy()
    rows = np.flatnonzero(present)
    winner = np.full(n_groups, -1, dtype=np.int64)
    if not len(rows):
        return winner
    values = work[element].iloc[rows]
    val_code = pd.factorize(values.astype(str) if values.dtype == object else values, sort=True)[0]
    gid = work["_gid"].to_numpy()[rows]
    trust = work["_trust"].to_numpy()[rows]
    pair = gid.astype(np.int64) * (int(val_code.max()) + 1) + val_code
    _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    keys = {"trust_order": trust,
            "most_recent": -work["_recency"].to_numpy(dtype=np.float64)[rows],
            "most_frequent": -counts[inverse]}
    # np.lexsort: the last key is the primary one
    order = np.lexsort((work["_krank"].to_numpy()[rows], val_code, trust, keys[tiebreak],
                        keys[rule], gid))
    first = np.ones(len(order), dtype=bool)
    first[1:] = gid[order][1:] != gid[order][:-1]
    winner[gid[order][first]] = rows[order][first]
    return winner


def _lineage(elements: list[str], sources: dict[str, np.ndarray]) -> np.ndarray:
    """JSON object element -> source per golden row, built column-wise (keys sorted)."""
    out = None
    for element in sorted(elements):
        src = sources[element]
        names = pd.Series(src, dtype=object)
        encoded = names.map({v: f'"{element}": {json.dumps(str(v))}' for v in names.dropna().unique()})
        piece = encoded.fillna("").to_numpy(dtype=object)
        if out is None:
            out = piece
        else:
            sep = np.where((out != "") & (piece != ""), ", ", "")
            out = out + sep + piece
    return "{" + out + "}" if out is not None else np.array([], dtype=object)


def golden_records(df: pd.DataFrame, id_col: str, elements: list[str], spec: dict) -> pd.DataFrame:
    """One row per master id: survived elements, record_count, source_count, lineage JSON."""
    trust_order = list(spec["trust_order"])
    default, tiebreak = spec.get("default", "trust_order"), spec.get("tiebreak", "most_frequent")
    rules = spec.get("elements") or {}
    gid, uniques = pd.factorize(df[id_col])
    source_code, source_names = pd.factorize(df["source_system"])
    work = df.assign(
        _trust=trust_rank(df["source_system"], trust_order), _gid=gid,
        _krank=np.argsort(np.argsort((df["source_system"] + "\x1f" + df["source_record_id"])
                                     .to_numpy(dtype=object), kind="stable"), kind="stable"))
    if "updated_at" in work.columns:
        ts = pd.to_datetime(work["updated_at"], errors="coerce")
        work["_recency"] = ts.astype("int64").where(ts.notna(), np.iinfo(np.int64).min).to_numpy()
    else:
        work["_recency"] = np.iinfo(np.int64).min
    n_groups = len(uniques)
    out = pd.DataFrame({id_col: pd.Series(uniques, dtype="string")})
    sources = {}
    src_values = df["source_system"].to_numpy(dtype=object)
    for element in elements:
        win = pick_rows(work, element, rules.get(element, default), tiebreak, n_groups)
        has = win >= 0
        safe = np.where(has, win, 0)
        out[element] = df[element].iloc[safe].reset_index(drop=True).where(pd.Series(has))
        sources[element] = np.where(has, src_values[safe], None)
    out["record_count"] = np.bincount(gid, minlength=n_groups).astype("int64")
    pairs = np.unique(gid.astype(np.int64) * (len(source_names) + 1) + source_code)
    out["source_count"] = np.bincount(pairs // (len(source_names) + 1),
                                      minlength=n_groups).astype("int64")
    out["lineage"] = pd.Series(_lineage(elements, sources), dtype="string")
    return out[[id_col] + elements + ["record_count", "source_count", "lineage"]]
