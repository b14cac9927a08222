"""Steward review: the queue as a CSV with both records side by side (identifiers masked),
and the stewards' decisions read back from it."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from govdata.transforms.privacy import mask_document_number, mask_id_number, mask_phone

from .common import DECISION_COLS, KEY_COLS, require_columns

SHOWN = ["id_number", "id_number_status", "id_type", "doc_number", "name", "name_latin", "name_pinyin", "sex",
         "birth_date", "phone",
         "address", "region_code", "uscc", "org_code", "tax_no", "reg_no", "name_core",
         "legal_rep_name", "legal_rep_id_number", "founded_date"]
MASKS = {"id_number": mask_id_number, "legal_rep_id_number": mask_id_number,
         "doc_number": mask_document_number, "phone": mask_phone}


def _side(review: pd.DataFrame, records: pd.DataFrame, side: str, shown: list[str]) -> pd.DataFrame:
    keyed = records[KEY_COLS + shown].astype({c: "string" for c in KEY_COLS})
    keyed = keyed.rename(columns={"source_system": f"{side}_source_system",
                                  "source_record_id": f"{side}_source_record_id"})
    merged = review[[f"{side}_source_system", f"{side}_source_record_id"]].astype("string").merge(
        keyed, how="left", on=[f"{side}_source_system", f"{side}_source_record_id"])
    for col, mask in MASKS.items():
        if col in merged:
            merged[col] = mask(merged[col].astype("string"))
    return merged[shown].add_prefix(f"{side}_")


def review_to_csv(review: pd.DataFrame, records: pd.DataFrame, path: str | Path) -> Path:
    """One row per open pair: left and right values per field, the field's weight, and empty
    decision / decided_by / decided_at columns for the steward (match | non_match)."""
    require_columns(review, ["pair_id", "left_source_system", "left_source_record_id",
                             "right_source_system", "right_source_record_id", "score",
                             "evidence"], "review queue")
    require_columns(records, KEY_COLS, "records")
    shown = [c for c in SHOWN if c in records.columns]
    review = review.reset_index(drop=True)
    left, right = _side(review, records, "left", shown), _side(review, records, "right", shown)
    evidence = pd.DataFrame([json.loads(e) for e in review["evidence"]], index=review.index)
    out = review[["pair_id", "left_source_system", "left_source_record_id",
                  "right_source_system", "right_source_record_id", "score"]].copy()
    if "reason" in review:
        out["reason"] = review["reason"]
    for col in shown:
        out[f"left_{col}"], out[f"right_{col}"] = left[f"left_{col}"], right[f"right_{col}"]
    for f in evidence.columns:
        out[f"weight_{f}"] = evidence[f]
    out["decision"], out["decided_by"], out["decided_at"] = "", "", ""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, encoding="utf-8")
    return path


def decisions_from_csv(path: str | Path) -> pd.DataFrame:
    """Decided rows of a review CSV (rows with an empty decision are still open)."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    try:
        require_columns(raw, DECISION_COLS, str(path))
    except ValueError as exc:
        raise ValueError(f"decisions file {exc}") from None
    raw["decision"] = raw["decision"].str.strip().str.lower()
    decided = raw[raw["decision"] != ""].copy()
    bad = ~decided["decision"].isin(["match", "non_match"])
    if bad.any():
        line = int(decided.index[bad][0]) + 2   # header is line 1
        raise ValueError(f"decisions file {path}, line {line}: column decision is "
                         f"{decided.loc[bad, 'decision'].iloc[0]!r}, expected match or non_match")
    no_key = (decided[DECISION_COLS[:4]] == "").any(axis=1)
    if no_key.any():
        line = int(decided.index[no_key][0]) + 2
        raise ValueError(f"decisions file {path}, line {line}: a record key column is empty")
    decided["decided_at"] = pd.to_datetime(decided["decided_at"].replace("", None), errors="coerce")
    out = decided[DECISION_COLS].reset_index(drop=True)
    return out.astype({c: "string" for c in DECISION_COLS if c != "decided_at"})
