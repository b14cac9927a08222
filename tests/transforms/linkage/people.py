"""Hand-made standardised person records for the linkage tests."""
from __future__ import annotations

import datetime as dt

import pandas as pd
from stdnum.cn import ric

SURVIVORSHIP = {
    "person": {"trust_order": ["gongan", "shebao", "minzheng", "weijian", "churujing"],
               "default": "trust_order", "tiebreak": "most_frequent",
               "elements": {"name": "trust_order", "phone": "most_recent",
                            "address": "most_recent"}},
    "enterprise": {"trust_order": ["shichang", "shuiwu", "zhengwu"], "default": "trust_order",
                   "tiebreak": "most_frequent", "elements": {"address": "most_recent"}},
}


def make_id(birth: str, seq: str, region: str = "110105") -> str:
    """Valid 18-digit ID: region + yyyymmdd + 3-digit sequence (odd = male) + check digit."""
    body = region + birth.replace("-", "") + seq
    return body + ric.calc_check_digit(body)


def rec(source: str, rid: str, id_number: str | None, name: str | None, pinyin: str | None,
        sex: str | None, birth: str | None, phone: str | None = None, status: str | None = None,
        note: str | None = None, region: str = "110105", updated: str | None = None,
        address: str | None = None, latin: str | None = None, id_type: str | None = None,
        doc: str | None = None) -> dict:
    if status is None:
        status = "other_document" if doc else "missing" if id_number is None else "valid"
    return {"source_system": source, "source_record_id": rid, "id_number": id_number,
            "id_number_status": status, "id_number_note": note, "id_type": id_type,
            "doc_number": doc, "name": name, "name_latin": latin, "name_pinyin": pinyin, "sex": sex,
            "birth_date": dt.date.fromisoformat(birth) if birth else None,
            "ethnicity": "01", "phone": phone, "address": address, "region_code": region,
            "updated_at": pd.Timestamp(updated) if updated else pd.NaT}


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def clusters(xref: pd.DataFrame, id_col: str = "person_id") -> set[frozenset[str]]:
    """The partition as sets of 'source:id' keys (independent of the ids chosen)."""
    keys = xref["source_system"] + ":" + xref["source_record_id"]
    return {frozenset(g) for g in keys.groupby(xref[id_col]).agg(list)}
