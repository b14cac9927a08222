"""Why a record is hard to link: the cause label `govdata evaluate` breaks linkage errors down
by, read from a standardised record's own columns (when the generator's truth carries no label)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

CITIZEN_ID_TYPES = ("111", "112", "113")
# The rules read text Arrow-backed: string tests and regexes run in Arrow (RE2) on the whole
# column, where Python-backed strings cost a Python call per value (with the parsing once per
# distinct value below, 200,000 gongan records at 1M persons: 0.29 s instead of 1.46 s). The
# patterns mean the same in both engines (RE2 knows no \u escape: the CJK range is written with
# its two characters).
TEXT = pd.StringDtype("pyarrow")


def _col(records: pd.DataFrame, name: str) -> pd.Series:
    return records[name] if name in records else pd.Series(pd.NA, index=records.index)


def _per_value(text: pd.Series, parse: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """An elementwise parser applied once per distinct value and spread back over the rows:
    millions of ID numbers hold a few thousand birth dates and ten sequence digits, and pandas
    parses one Python object at a time. The parser gets the values as the Python objects it
    would make of them itself (str, datetime.date), made by Arrow in bulk instead of by
    pandas one at a time. Null parses as null."""
    codes, values = pd.factorize(text.values)   # of the array, not the Series: uniques stay an array, not an Index
    values = (pa.array(values).to_pandas(date_as_object=True) if isinstance(values, pd.arrays.ArrowExtensionArray)
              else pd.Series(values, dtype=object))
    parsed = parse(values).reindex(codes)   # code -1 (null) has no label: NaT / NaN
    parsed.index = text.index
    return parsed


def birth_dates(records: pd.DataFrame) -> pd.Series:
    """The records' birth dates as the rules compare them: pd.to_datetime, unparseable ones NaT
    (a std birth_date is Arrow date32, which pandas converts one value at a time)."""
    return _per_value(_col(records, "birth_date"), lambda v: pd.to_datetime(v, errors="coerce"))


def _person_rules(records: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Person causes, most specific first: guardian_id (ID's birth date/sex contradict the
    record), excel_damage (ID number through a spreadsheet), other_document (passport, travel
    permit: no lifelong key), typo_id (invalid ID present), no_identifier (the source has no
    ID column), missing_id, fifteen_digit (upgraded from 15 digits), rare_character (a
    placeholder or pinyin for a character the system lacked), latin_name (a foreigner's or
    HK/MO/TW resident's Latin name beside a permanent residence ID / residence permit),
    pinyin_only (no Chinese name)."""
    col = lambda c: _col(records, c)
    ids = col("id_number").astype(TEXT)
    status = col("id_number_status").astype(TEXT)
    note = col("id_number_note").astype(TEXT).fillna("")
    usable = status.isin(["valid", "repaired"]) & ids.notna()
    id_birth = _per_value(ids.where(usable).str[6:14], lambda v: pd.to_datetime(v, format="%Y%m%d", errors="coerce"))
    birth = birth_dates(records)
    digit = _per_value(ids.where(usable).str[16], lambda v: pd.to_numeric(v, errors="coerce")).astype("float64")
    id_sex = pd.Series(np.where(digit % 2 == 1, "1", "2"), index=records.index).where(digit.notna())
    sex = col("sex").astype(TEXT)
    guardian = usable & (((birth != id_birth) & birth.notna() & id_birth.notna())
                         | (sex.isin(["1", "2"]) & id_sex.notna() & (sex != id_sex)))
    name = col("name").astype(TEXT)
    doc = col("doc_number").astype(TEXT)
    id_type = col("id_type").astype(TEXT)
    # The source maps no ID column at all: its status column is empty, not 'missing'.
    unmapped = status.isna() & ids.isna() & doc.isna() if "id_number_status" in records else \
        pd.Series(False, index=records.index)
    non_citizen_key = ids.str.match(r"^(9|8[123])", na=False) | (id_type.notna() & ~id_type.isin(CITIZEN_ID_TYPES))
    return [("guardian_id", guardian.fillna(False)),
            ("excel_damage", note.str.contains("excel_", regex=False)),
            ("other_document", (status == "other_document").fillna(False) | doc.notna()),
            ("typo_id", (status == "invalid").fillna(False) & ids.notna()),
            ("no_identifier", unmapped.fillna(False)),
            ("missing_id", (status == "missing").fillna(False) | ids.isna()),
            ("fifteen_digit", note.str.contains("upgraded_15", regex=False)),
            ("rare_character", name.str.contains(r"[*?□A-Za-z]", regex=True).fillna(False)
             & name.str.contains(r"[一-鿿]", regex=True).fillna(False)),
            ("latin_name", name.isna() & col("name_latin").notna() & non_citizen_key.fillna(False)),
            ("pinyin_only", name.isna() & col("name_pinyin").notna())]


def _enterprise_rules(records: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Enterprise causes: no_code (no USCC, organisation code, registration or tax number),
    old_code_only (no USCC, an old number), typo_uscc, individual_business (USCC 92…),
    branch (分公司 in the name)."""
    col = lambda c: _col(records, c)
    uscc = col("uscc").astype(TEXT)
    codes = [col(c).astype(TEXT) for c in ("uscc", "org_code", "reg_no", "tax_no")]
    no_code = codes[0].isna() & codes[1].isna() & codes[2].isna() & codes[3].isna()
    old_only = uscc.isna() & ~no_code
    return [("no_code", no_code.fillna(False)),
            ("old_code_only", old_only.fillna(False)),
            ("typo_uscc", (col("uscc_status").astype(TEXT) == "invalid").fillna(False)),
            ("individual_business", uscc.str.startswith("92").fillna(False)),
            ("branch", col("name").astype(TEXT).str.contains("分公司", regex=False).fillna(False))]


def record_causes(records: pd.DataFrame) -> pd.Series:
    """One cause label per record (the first rule that applies; see _person_rules and
    _enterprise_rules), from the std columns; else NA. Enterprise records are those of kind
    'enterprise' (or, without a kind column, records with a uscc and no id_number column)."""
    if "kind" in records:
        enterprise = (records["kind"].astype(TEXT) == "enterprise").fillna(False).to_numpy(dtype=bool)
    else:
        enterprise = np.full(len(records), "uscc" in records and "id_number" not in records)
    cause = pd.Series(pd.NA, index=records.index, dtype="string")
    for rows, rules in ((~enterprise, _person_rules), (enterprise, _enterprise_rules)):
        if not rows.any():
            continue
        for label, mask in reversed(rules(records)):   # earlier rules win
            cause = cause.mask(mask.to_numpy(dtype=bool) & rows, label)
    return cause


# --- the scratch database ------------------------------------------------------------------
