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


def _sort_keys(rule: str) -> list[tuple[str, bool]]:
    return {"trust_order": [("_trust", True)],
            "most_recent": [("_recency", False)],
            "most_frequent": [("_freq", False)]}[rule]


def pick_values(df: pd.DataFrame, id_col: str, element: str, rule: str, tiebreak: str
                ) -> pd.DataFrame:
    """Winning (value, source_system) per master id for one element; NULLs never win."""
    sub = df.loc[df[element].notna(), [id_col, element, "source_system", "source_record_id",
                                      "_trust", "_recency"]]
    if sub.empty:
        return pd.DataFrame(columns=[id_col, element, f"_src_{element}"])
    sub = sub.assign(_val=sub[element].astype(str))
    sub["_freq"] = sub.groupby([id_col, "_val"])["_val"].transform("size")
    keys = [(id_col, True)] + _sort_keys(rule) + _sort_keys(tiebreak) + \
        [("_trust", True), ("_val", True), ("source_record_id", True)]
    seen, cols, asc = set(), [], []
    for col, a in keys:
        if col not in seen:
            seen.add(col), cols.append(col), asc.append(a)
    best = sub.sort_values(cols, ascending=asc, kind="stable").drop_duplicates(id_col)
    return best[[id_col, element, "source_system"]].rename(
        columns={"source_system": f"_src_{element}"})


def golden_records(df: pd.DataFrame, id_col: str, elements: list[str], spec: dict) -> pd.DataFrame:
    """One row per master id: survived elements, record_count, source_count, lineage JSON."""
    trust_order = list(spec["trust_order"])
    default, tiebreak = spec.get("default", "trust_order"), spec.get("tiebreak", "most_frequent")
    rules = spec.get("elements") or {}
    work = df.assign(_trust=trust_rank(df["source_system"], trust_order))
    if "updated_at" in work.columns:
        ts = pd.to_datetime(work["updated_at"], errors="coerce")
        work["_recency"] = ts.astype("int64").where(ts.notna(), np.iinfo(np.int64).min)
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
