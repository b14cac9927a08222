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


def pick_values(df: pd.DataFrame, id_col: str, element: str, rule: str, tiebreak: str
                ) -> pd.DataFrame:
    """Winning (value, source_system) per master id for one element; NULLs never win.
    Ties after rule and tiebreak: trust, then the smallest value, then the smallest record key."""
    sub = df.loc[df[element].notna(), [id_col, element, "source_system", "_gid", "_trust",
                                      "_recency", "_krank"]]
    if sub.empty:
        return pd.DataFrame(columns=[id_col, element, f"_src_{element}"])
    values = sub[element].astype(str) if sub[element].dtype == object else sub[element]
    val_code = pd.factorize(values, sort=True)[0]
    gid = sub["_gid"].to_numpy()
    pair = gid.astype(np.int64) * (val_code.max() + 1) + val_code
    _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    sub = sub.assign(_freq=counts[inverse])
    # np.lexsort: last key is the primary one
    order = np.lexsort((sub["_krank"].to_numpy(), val_code, sub["_trust"].to_numpy(),
                        _rule_key(tiebreak, sub), _rule_key(rule, sub), gid))
    best = sub.iloc[order].drop_duplicates("_gid")
    return best[[id_col, element, "source_system"]].rename(
        columns={"source_system": f"_src_{element}"})


def golden_records(df: pd.DataFrame, id_col: str, elements: list[str], spec: dict) -> pd.DataFrame:
    """One row per master id: survived elements, record_count, source_count, lineage JSON."""
    trust_order = list(spec["trust_order"])
    default, tiebreak = spec.get("default", "trust_order"), spec.get("tiebreak", "most_frequent")
    rules = spec.get("elements") or {}
    work = df.assign(_trust=trust_rank(df["source_system"], trust_order),
                     _gid=pd.factorize(df[id_col])[0],
                     _krank=np.argsort(np.argsort(
                         (df["source_system"] + "\x1f" + df["source_record_id"]).to_numpy(dtype=object),
                         kind="stable"), kind="stable"))
    if "updated_at" in work.columns:
        ts = pd.to_datetime(work["updated_at"], errors="coerce")
        work["_recency"] = ts.astype("int64").where(ts.notna(), np.iinfo(np.int64).min).to_numpy()
    else:
        work["_recency"] = np.iinfo(np.int64).min
    counts = work.groupby(id_col).agg(record_count=("source_record_id", "size"),
                                      source_count=("source_system", "nunique"))
    out = counts.reset_index()
    for element in elements:
        picked = pick_values(work, id_col, element, rules.get(element, default), tiebreak)
        out = out.merge(picked, on=id_col, how="left")
    src_cols = [f"_src_{e}" for e in elements]
    src = out[src_cols].astype(object).where(out[src_cols].notna(), None).to_numpy()
    out["lineage"] = [json.dumps({e: s for e, s in zip(elements, row) if s is not None},
                                 ensure_ascii=False, sort_keys=True) for row in src]
    out["record_count"] = out["record_count"].astype("int64")
    out["source_count"] = out["source_count"].astype("int64")
    return out[[id_col] + elements + ["record_count", "source_count", "lineage"]]
