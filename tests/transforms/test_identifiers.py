"""Identifier normalisation: table-driven faults and hypothesis agreement with python-stdnum."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from govdata.transforms.identifiers import (PROVINCES, normalise_citizen_id, normalise_identity_document,
                                            region_known)

TODAY = dt.date(2026, 1, 1)
VALID_ID = "11010519491231002X"  # the GB 11643 example number


def one(value, **kw) -> dict:
    return normalise_citizen_id(pd.Series([value], dtype=object), **kw).iloc[0].to_dict()


@pytest.mark.parametrize("raw, value, status, note", [
    (VALID_ID, VALID_ID, "valid", None),
    ("11010519491231002x", VALID_ID, "repaired", "lowercase_x"),
    (" 110105 19491231 002X\u3000", VALID_ID, "repaired", "whitespace"),
    ("１１０１０５１９４９１２３１００２Ｘ", VALID_ID, "repaired", "fullwidth"),
    ("１１０１０５１９４９１２３１００２ｘ", VALID_ID, "repaired", "fullwidth;lowercase_x"),
    ("110105491231002", VALID_ID, "repaired", "upgraded_15"),
    # 110103 (崇文区) was abolished in 2010: still a valid ID number
    ("110103199001010018", "110103199001010018", "valid", None),
    ("11010519491213002X", None, "invalid", "bad_check_digit"),  # transposed 31 -> 13
    ("11010519491231020X", None, "invalid", "bad_check_digit"),  # transposed 02 -> 20
    ("110105199002300028", None, "invalid", "bad_birth_date"),   # 1990-02-30, check digit right
    ("110105203001010028", None, "invalid", "future_birth_date"),
    ("11010519491231002", None, "invalid", "bad_length"),
    ("1101051949123100XX", None, "invalid", "bad_chars"),
    ("", None, "missing", None),
    (None, None, "missing", None),
])
def test_citizen_id_faults(raw, value, status, note):
    got = one(raw, today=TODAY)
    assert (got["value"] if got["value"] is not pd.NA else None) == value
    assert got["status"] == status
    assert (got["note"] if got["note"] is not pd.NA else None) == note


def test_citizen_id_derived_fields_and_alignment():
    values = pd.Series(["110105491231002", None, VALID_ID, "bad"], index=[10, 11, 12, 13])
    out = normalise_citizen_id(values, today=TODAY)
    assert list(out.index) == [10, 11, 12, 13]
    assert out["birth_date"].tolist()[0] == pd.Timestamp("1949-12-31")
    assert out["birth_date"].isna().tolist() == [False, True, False, True]
    assert out["sex"].tolist() == ["2", pd.NA, "2", pd.NA]
    assert out["region_code"].tolist() == ["110105", pd.NA, "110105", pd.NA]
    male = one("110105194912310011", today=TODAY)  # 17th digit 1 -> male
    assert male["sex"] == "1" and male["status"] == "valid"


def test_region_known_flags_unknown_codes_without_rejecting():
    table = pd.DataFrame({"code": ["110105", "110103"]})
    codes = pd.Series(["110105", "110103", "999999", None])
    assert region_known(codes, table).tolist() == [True, True, False, False]
    body = "49999919900101001"  # no such region: still valid (9 would be a foreigner's card)
    number = body + ric.calc_check_digit(body + "0")
    assert one(number, today=TODAY)["status"] == "valid"


# ---- hypothesis: agree with stdnum.cn.ric on checksum and birth-date validity.
# stdnum's validate() also checks its own 2014 region table, which rejects abolished and
# newer codes GB/T 2260 keeps; so the region is not compared, only checksum and date.
def stdnum_ric_ok(number: str) -> bool:
    if number[-1] != ric.calc_check_digit(number):
        return False
    try:
        born = ric.get_birth_date(number)
    except Exception:
        return False
    if number[:2] in ("81", "82", "83") and number[2:6] != "0000":
        return False  # residence permits carry exactly 810000 / 820000 / 830000
    if number[0] == "9" and number[1:3] not in PROVINCES:
        return False  # a foreigner's card names its issuing province
    return 1850 <= born.year and born <= TODAY  # our extra rules: plausible, not future


@st.composite
def id_numbers(draw):
    region = draw(st.from_regex(r"[1-8][0-9]{5}", fullmatch=True))
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31)))
    serial = draw(st.from_regex(r"[0-9]{3}", fullmatch=True))
    body = f"{region}{born:%Y%m%d}{serial}"
    number = body + ric.calc_check_digit(body + "0")
    corruption = draw(st.sampled_from(["none", "digit", "swap", "check", "date"]))
    chars = list(number)
    if corruption == "digit":
        i = draw(st.integers(0, 16))
        chars[i] = draw(st.sampled_from("0123456789"))
    elif corruption == "swap":
        i = draw(st.integers(0, 15))
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    elif corruption == "check":
        chars[17] = draw(st.sampled_from("0123456789X"))
    elif corruption == "date":
        chars[10:14] = list(draw(st.from_regex(r"[0-9]{4}", fullmatch=True)))
    return "".join(chars)


@settings(max_examples=150, deadline=None)
@given(st.lists(id_numbers(), min_size=1, max_size=20))
def test_citizen_id_agrees_with_stdnum(numbers):
    out = normalise_citizen_id(pd.Series(numbers), today=TODAY)
    ours = out["status"].isin(["valid", "repaired"]).tolist()
    assert ours == [stdnum_ric_ok(n) for n in numbers]
    for n, value, born in zip(numbers, out["value"], out["birth_date"]):
        if value is not pd.NA:
            assert value == n
            assert born.date() == ric.get_birth_date(n)


# ---- numbers built on GB 11643 that are not citizen IDs, and Excel damage
def with_check(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


HK_PERMIT = with_check("81000019900101001")      # 810000199001010019
TW_PERMIT = with_check("83000019851231002")      # 830000198512310020
FOREIGNER = with_check("93115619900101001")      # 931156199001010014: Shanghai, nationality 156


@pytest.mark.parametrize("raw, value, status, note, region, born, kind", [
    (HK_PERMIT, "810000199001010019", "valid", None, "810000", "1990-01-01", "residence_permit"),
    (with_check("82000020000229003"), "82000020000229003X", "valid", None, "820000", "2000-02-29",
     "residence_permit"),
    (TW_PERMIT, "830000198512310020", "valid", None, "710000", "1985-12-31", "residence_permit"),
    (FOREIGNER, "931156199001010014", "valid", None, "310000", "1990-01-01", "permanent_residence"),
    (with_check("81010019900101001"), None, "invalid", "bad_region", None, None, None),   # 810100: no permit
    (with_check("99915619900101001"), None, "invalid", "bad_region", None, None, None),   # province 99
    ("1.10101E+17", None, "invalid", "excel_scientific", None, None, None),
    ("1.10105199001011E+17", None, "invalid", "excel_scientific", None, None, None),
    ("1.10105199001011e17", None, "invalid", "excel_scientific", None, None, None),
    ("110105199001011000", None, "invalid", "excel_truncated", None, None, None),
    ("110105199001011234", None, "invalid", "bad_check_digit", None, None, None),
])
def test_residence_permits_foreigners_and_excel_damage(raw, value, status, note, region, born, kind):
    got = one(raw, today=TODAY)
    na = lambda v: None if v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v) else v
    assert na(got["value"]) == value
    assert got["status"] == status
    assert na(got["note"]) == note
    assert na(got["region_code"]) == region
    assert (None if pd.isna(got["birth_date"]) else str(got["birth_date"].date())) == born
    assert na(got["id_kind"]) == kind


def test_residence_permit_and_foreigner_checksums_agree_with_stdnum():
    for number in (HK_PERMIT, TW_PERMIT, FOREIGNER):
        assert ric.calc_check_digit(number) == number[-1]
    assert one(FOREIGNER, today=TODAY)["sex"] == "1"      # 17th digit 1
    assert one(TW_PERMIT, today=TODAY)["sex"] == "2"      # 17th digit 2


def test_provinces_are_the_region_tables_provinces():
    from govdata.standards.registry import load_standards

    regions = load_standards().regions
    current = regions[(regions["level"] == "province") & (regions["status"] == "current")]
    assert PROVINCES == frozenset(current["code"].str[:2])


def test_identity_document_by_type():
    numbers = pd.Series([VALID_ID, "E12345678", "h1234567801", "12345678", "USA110090010001", FOREIGNER,
                         "110105194912310011", "1.10101E+17", "E1234", "110105194912310021", "X", None,
                         "Ｅ１２３４ ５６７８", VALID_ID, "11010519491213002X"], index=range(100, 115))
    types = pd.Series([None, "414", "516", "511", "553", "553", "335", "414", "513", "414", "990", "414",
                       "414", "111", "111"], index=range(100, 115), dtype="string")
    out = normalise_identity_document(numbers, types, today=TODAY)
    assert list(out.index) == list(range(100, 115))
    assert out["value"].tolist() == [VALID_ID, pd.NA, pd.NA, pd.NA, pd.NA, FOREIGNER, "110105194912310011",
                                     pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, VALID_ID, pd.NA]
    assert out["status"].tolist() == ["valid", "other_document", "other_document", "other_document",
                                      "other_document", "valid", "valid", "invalid", "invalid", "invalid",
                                      "invalid", "missing", "other_document", "valid", "invalid"]
    assert out["note"].tolist() == [pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, "number_is_id", "excel_scientific",
                                    "bad_document_format", "bad_document_format", "bad_document_format", pd.NA,
                                    pd.NA, pd.NA, "bad_check_digit"]
    assert out["doc_number"].tolist() == [pd.NA, "E12345678", "H1234567801", "12345678", "USA110090010001",
                                          pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, "E12345678",
                                          pd.NA, pd.NA]
    assert out["region_code"].tolist()[:7] == ["110105", pd.NA, pd.NA, pd.NA, pd.NA, "310000", "110105"]


def test_identity_document_without_types_is_the_citizen_id():
    numbers = pd.Series([VALID_ID, "E12345678"])
    out = normalise_identity_document(numbers, None, today=TODAY)
    assert out["status"].tolist() == ["valid", "invalid"]
    assert out["doc_number"].isna().all()


def test_document_holder_keys_survive_renewals():
    from govdata.standards.registry import load_standards
    from govdata.transforms.identifiers import document_holder_keys

    types = load_standards().code_table("id_document_type")
    keys = document_holder_keys(pd.Series(["516", "516", "511", "511", "414", "414", None, "516"]),
                                pd.Series(["H1234567801", "H1234567800", "12345678", "1234567801B", "E12345678",
                                           "E87654321", "E12345678", None]), types)
    assert keys.tolist() == ["516:H12345678", "516:H12345678", "511:12345678", "511:12345678", "414:E12345678",
                             "414:E87654321", pd.NA, pd.NA]
