"""Linkage quality against a known truth: pairwise precision / recall / F1 counted from
cluster sizes (sum of C(n,2) over the contingency table — no pair enumeration), and the
errors broken down by likely cause, derived from the standardised records."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

KEY = ["source_system", "source_record_id"]


def _pairs(counts: pd.Series | np.ndarray) -> int:
    c = np.asarray(counts, dtype=np.int64)
    return int((c * (c - 1) // 2).sum())


def record_causes(records: pd.DataFrame) -> pd.Series:
    """One cause label per record (the first that applies), from the std columns:
    guardian_id (ID's birth date/sex contradict the record), typo_id (invalid ID present),
    missing_id, fifteen_digit (ID upgraded from 15 digits), pinyin_only (no Chinese name);
    else NA."""
    col = lambda c: records[c] if c in records else pd.Series(pd.NA, index=records.index)
    ids = col("id_number").astype("string")
    status = col("id_number_status").astype("string")
    note = col("id_number_note").astype("string").fillna("")
    usable = status.isin(["valid", "repaired"]) & ids.notna()
    id_birth = pd.to_datetime(ids.where(usable).str[6:14], format="%Y%m%d", errors="coerce")
    birth = pd.to_datetime(col("birth_date"), errors="coerce")
    digit = pd.to_numeric(ids.where(usable).str[16], errors="coerce").astype("float64")
    id_sex = pd.Series(np.where(digit % 2 == 1, "1", "2"), index=records.index).where(digit.notna())
    sex = col("sex").astype("string")
    guardian = usable & (((birth != id_birth) & birth.notna() & id_birth.notna())
                         | (sex.isin(["1", "2"]) & id_sex.notna() & (sex != id_sex)))
    rules = [("guardian_id", guardian.fillna(False)),
             ("typo_id", (status == "invalid").fillna(False) & ids.notna()),
             ("missing_id", (status == "missing").fillna(False) | ids.isna()),
             ("fifteen_digit", note.str.contains("upgraded_15", regex=False)),
             ("pinyin_only", col("name").isna() & col("name_pinyin").notna())]
    cause = pd.Series(pd.NA, index=records.index, dtype="string")
    for label, mask in reversed(rules):   # earlier rules win
        cause = cause.mask(mask.to_numpy(dtype=bool), label)
    return cause


def _pair_cause(minority: pd.DataFrame, majority: pd.DataFrame) -> str:
    """Why records of two entities were merged (or one entity split): a record cause if any
    record carries one, else twin (same birth date, different names) / namesake (same name)."""
    causes = minority["_cause"].dropna()
    if len(causes):
        return str(causes.mode().sort_values().iloc[0])
    if "name" in minority and "birth_date" in minority:
        same_name = bool(set(minority["name"].dropna()) & set(majority["name"].dropna()))
        mb = set(pd.to_datetime(minority["birth_date"], errors="coerce").dropna())
        jb = set(pd.to_datetime(majority["birth_date"], errors="coerce").dropna())
        if same_name:
            return "namesake"
        if mb & jb:
            return "twin"
    return "other"


def _errors_by_cause(cells: pd.DataFrame, by: str, other: str, detail: pd.DataFrame) -> dict:
    """For each cluster of `by` spread over several `other` clusters: the pairs lost there
    (C(size,2) - sum C(cell,2)), attributed to the records outside its largest cell."""
    out: dict[str, int] = {}
    spread = cells.groupby(by)[other].transform("size") > 1
    for key, grp in cells[spread].groupby(by):
        lost = _pairs([grp["n"].sum()]) - _pairs(grp["n"])
        biggest = grp.sort_values(["n", other], ascending=[False, True])[other].iloc[0]
        rows = detail[detail[by] == key]
        cause = _pair_cause(rows[rows[other] != biggest], rows[rows[other] == biggest])
        out[cause] = out.get(cause, 0) + lost
    return dict(sorted(out.items()))


def evaluate(xref: pd.DataFrame, truth: pd.DataFrame, id_col: str = "person_id",
             truth_col: str = "true_person_id", records: pd.DataFrame | None = None) -> dict:
    """Pairwise precision, recall, F1 of xref's clusters against truth's, over the records
    both know. With records: false_merges and misses (pair counts) by cause."""
    for frame, cols, what in ((xref, KEY + [id_col], "xref"), (truth, KEY + [truth_col], "truth")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"evaluate: {what} lacks column(s) {', '.join(missing)}")
    x = xref[KEY + [id_col]].astype("string")
    t = truth[KEY + [truth_col]].astype("string")
    joined = x.merge(t, on=KEY, how="inner")
    cells = joined.groupby([id_col, truth_col]).size().rename("n").reset_index()
    tp = _pairs(cells["n"])
    predicted = _pairs(cells.groupby(id_col)["n"].sum())
    actual = _pairs(cells.groupby(truth_col)["n"].sum())
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    result = {"records": int(len(joined)), "records_unmatched_in_truth": int(len(x) - len(joined)),
              "true_pairs": actual, "predicted_pairs": predicted, "true_positive_pairs": tp,
              "false_merge_pairs": predicted - tp, "missed_pairs": actual - tp,
              "precision": precision, "recall": recall, "f1": f1,
              "predicted_entities": int(joined[id_col].nunique()),
              "true_entities": int(joined[truth_col].nunique())}
    if records is not None:
        rec = records.copy()
        rec[KEY] = rec[KEY].astype("string")
        rec["_cause"] = record_causes(rec)
        detail = joined.merge(rec, on=KEY, how="left")
        result["false_merges_by_cause"] = _errors_by_cause(cells, id_col, truth_col, detail)
        result["misses_by_cause"] = _errors_by_cause(cells, truth_col, id_col, detail)
    return result


KINDS = {"person": ("person_id", "true_person_id", "persons.parquet"),
         "enterprise": ("enterprise_id", "true_enterprise_id", "enterprises.parquet")}


def evaluate_run(world: str | Path, summary: dict, lake: str | None = None) -> dict:
    """Scores one pipeline run on a generated world: the run's link/<kind>_xref.parquet
    against world/truth/<kind>s.parquet, error causes from the run's std/*.parquet."""
    import fsspec

    from govdata.lake import read_parquet, run_path
    from govdata.settings import get_settings

    lake = lake or summary.get("lake") or get_settings().lake
    run_id = summary["run_id"]
    std_dir = run_path(lake, run_id, "std")
    fs, _, (std_root,) = fsspec.get_fs_token_paths(std_dir)
    std_files = sorted(fs.glob(f"{std_root}/*.parquet")) if fs.exists(std_root) else []
    std = [read_parquet(f) for f in std_files]
    out = {}
    for kind, (id_col, truth_col, truth_file) in KINDS.items():
        xref_path = run_path(lake, run_id, "link", f"{kind}_xref.parquet")
        truth_path = Path(world) / "truth" / truth_file
        if not fs.exists(fsspec.core.strip_protocol(xref_path)) or not truth_path.exists():
            out[kind] = {"error": f"missing {truth_path if not truth_path.exists() else xref_path}"}
            continue
        records = [s for s in std if "kind" in s and len(s) and (s["kind"] == kind).all()]
        out[kind] = evaluate(read_parquet(xref_path), pd.read_parquet(truth_path), id_col, truth_col,
                             records=pd.concat(records, ignore_index=True) if records else None)
    return out
