"""Property tests: every normaliser in transforms/ takes any strings — None, control and
escape characters, unpaired-surrogate-free unicode, NULL-ish words, huge strings — without an
exception, and returns one output row per input row, on the input's index."""
from __future__ import annotations

import pandas as pd
import pytest
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govdata.standards.registry import load_standards
from govdata.transforms import codes, dates, enterprise_codes, enterprise_names, identifiers, names
from govdata.transforms.normalise import canonical_keys, screen_values
from govdata.transforms.privacy import mask_id_number, mask_phone, mask_value

STANDARDS = load_standards()
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
HOSTILE = st.sampled_from(["", " ", "\x00", "\x1b[31m", "\u200b", "\ufeff", "\ufffd", "NULL", "N/A", "１２３",
                           "110105199001011234", "11010519900101123x", "110105900101123", "2021-02-30", "43831",
                           "張三", "😀", "'; DROP TABLE x;--", "\x85", "-5", "1.0", "男", "汉族"])
HUGE = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(20_000, 60_000))
VALUE = st.one_of(st.none(), TEXT, HOSTILE, HUGE)
VALUES = st.lists(VALUE, max_size=25)

NORMALISERS = {
    "citizen_id": identifiers.normalise_citizen_id,
    "uscc": enterprise_codes.normalise_uscc,
    "org_code": enterprise_codes.normalise_org_code,
    "reg_no": enterprise_codes.normalise_reg_no,
    "tax_no": enterprise_codes.normalise_tax_no,
    "person_names": names.normalise_person_names,
    "enterprise_names": lambda v: enterprise_names.normalise_enterprise_names(v, ["北京市", "东城区"]),
    "dates": dates.parse_dates,
    "dates_dayfirst": lambda v: dates.parse_dates(v, dayfirst=True),
    "timestamps": dates.parse_timestamps,
    "sex": lambda v: codes.normalise_sex(v, STANDARDS.code_table("sex_alias")),
    "ethnicity": lambda v: codes.normalise_ethnicity(v, STANDARDS.code_table("ethnicity"),
                                                     STANDARDS.code_tables.get("ethnicity_alias")),
    "industry": lambda v: codes.normalise_industry(v, STANDARDS.code_table("industry")),
    "code": lambda v: codes.normalise_code(v, STANDARDS.code_table("channel")),
    "phone": codes.normalise_phone,
    "address": codes.normalise_address,
    "address_region": lambda v: codes.address_region(v, STANDARDS.regions),
    "mask_value": mask_value,
    "mask_id_number": mask_id_number,
    "mask_phone": mask_phone,
    "screen_values": lambda v: screen_values(v, 64).text,
}

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])


def _series(values: list, string_dtype: bool) -> pd.Series:
    index = pd.RangeIndex(100, 100 + len(values))
    return pd.Series(values, index=index, dtype="string[pyarrow]" if string_dtype else object)


def _check(name: str, values: list, string_dtype: bool) -> None:
    series = _series(values, string_dtype)
    out = NORMALISERS[name](series)
    assert len(out) == len(series), name
    assert out.index.equals(series.index), name


@pytest.mark.parametrize("name", sorted(NORMALISERS))
@SETTINGS
@given(values=VALUES, string_dtype=st.booleans())
def test_normaliser_takes_any_strings(name, values, string_dtype):
    _check(name, values, string_dtype)


@SETTINGS
@given(values=VALUES)
def test_canonical_keys_take_any_strings(values):
    out = canonical_keys(pa.array(values, pa.string()))
    assert len(out) == len(values)
    for key in out.to_pylist():
        assert key is None or (key == key.strip() and key != "")


@SETTINGS
@given(values=VALUES)
def test_screened_values_hold_no_control_characters(values):
    screened = screen_values(pd.Series(values, dtype=object), 64)
    for text in screened.text.dropna():
        assert not any(ord(ch) < 32 and ch not in "\t\n\r" or 0x7F <= ord(ch) <= 0x9F for ch in text)
        assert len(text.strip()) <= 64 and "\ufffd" not in text
