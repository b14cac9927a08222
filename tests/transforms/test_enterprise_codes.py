"""Enterprise identifiers (transforms/enterprise_codes.py) against python-stdnum and on
known faults, with exact values."""
from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import uscc
from stdnum.iso7064 import mod_11_10

from govdata.transforms.enterprise_codes import normalise_org_code, normalise_reg_no, normalise_tax_no, normalise_uscc


USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@st.composite
def usccs(draw):
    head = draw(st.text(USCC_ALPHABET, min_size=2, max_size=2))
    region = draw(st.from_regex(r"[0-9]{6}", fullmatch=True))
    tail = draw(st.text(USCC_ALPHABET, min_size=9, max_size=9))
    body = head + region + tail
    number = body + uscc.calc_check_digit(body + "0")
    chars = list(number)
    corruption = draw(st.sampled_from(["none", "char", "swap"]))
    if corruption == "char":
        chars[draw(st.integers(0, 17))] = draw(st.sampled_from(USCC_ALPHABET))
    elif corruption == "swap":
        i = draw(st.integers(0, 16))
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def stdnum_uscc_ok(number: str) -> bool:
    # stdnum insists on digits in positions 1-8; GB 32100 allows letters in positions 1-2
    # (e.g. N for agricultural cooperatives), so the check character is compared directly.
    return number[2:8].isdigit() and number[-1] == uscc.calc_check_digit(number)


@settings(max_examples=150, deadline=None)
@given(st.lists(usccs(), min_size=1, max_size=20))
def test_uscc_agrees_with_stdnum(numbers):
    out = normalise_uscc(pd.Series(numbers))
    assert out["status"].eq("valid").tolist() == [stdnum_uscc_ok(n) for n in numbers]
    digits_only = [n for n in numbers if n[:8].isdigit()]
    if digits_only:
        assert normalise_uscc(pd.Series(digits_only))["status"].eq("valid").tolist() == \
            [uscc.is_valid(n) for n in digits_only]


def test_uscc_faults_and_derived_codes():
    out = normalise_uscc(pd.Series(["91110000802100433B", "91110000802100433b", " 9111 0000 8021 0043 3B",
                                    "91110000802100433C", "91110000802100433", "9111000080210043IB", None]))
    assert out["status"].tolist() == ["valid", "repaired", "repaired", "invalid", "invalid", "invalid", "missing"]
    assert out["note"].tolist() == [pd.NA, "lowercase", "whitespace", "bad_check_digit", "bad_length",
                                    "bad_chars", pd.NA]
    assert out["org_code"].tolist()[:3] == ["802100433"] * 3
    assert out["region_code"].tolist()[0] == "110000"


def test_org_code_reg_no_tax_no():
    org = normalise_org_code(pd.Series(["80210043-3", "802100433", "802100434", "D2143569-X"]))
    assert org["value"].tolist() == ["802100433", "802100433", pd.NA, "D2143569X"]
    assert org["status"].tolist() == ["valid", "valid", "invalid", "valid"]

    body = "11010000000000"
    good = body + mod_11_10.calc_check_digit(body)
    reg = normalise_reg_no(pd.Series([good, body + str((int(good[-1]) + 1) % 10), "1234"]))
    assert reg["status"].tolist() == ["valid", "invalid", "invalid"]
    assert reg["note"].tolist() == [pd.NA, "bad_check_digit", "bad_length"]
    assert reg["region_code"].tolist()[0] == "110100"

    tax = normalise_tax_no(pd.Series(["110000802100433", "110000802100434", "91110000802100433B", "11000080210043"]))
    assert tax["status"].tolist() == ["valid", "invalid", "valid", "invalid"]
    assert tax["org_code"].tolist() == ["802100433", pd.NA, "802100433", pd.NA]
    assert tax["region_code"].tolist() == ["110000", pd.NA, "110000", pd.NA]
    assert tax["note"].tolist() == [pd.NA, "bad_check_digit", "uscc", "bad_length"]
