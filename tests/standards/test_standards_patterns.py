"""Element patterns accept identifiers python-stdnum calls valid and reject malformed ones."""
from __future__ import annotations

import re

import pytest
from stdnum.cn import ric, uscc

from govdata.standards.registry import load_standards



def org_code_check(body: str) -> str:
    """GB 11714 check character of an 8-character organisation code body."""
    total = sum(int(c, 36) * w for c, w in zip(body, [3, 7, 9, 10, 5, 8, 4, 2]))
    return {10: "X", 11: "0"}.get(11 - total % 11, str(11 - total % 11))


ORG_CODE = "MA01A2B3" + org_code_check("MA01A2B3")
USCC_BODY = "91110108" + ORG_CODE
VALID_USCC = USCC_BODY + uscc.calc_check_digit(USCC_BODY)
VALID_ID = "11010519491231002X"

CASES = [
    # (kind, element, value, matches)
    ("person", "id_number", VALID_ID, True),
    ("person", "id_number", "11010519491231002x", False),
    ("person", "id_number", "110105491231002", False),
    ("enterprise", "uscc", VALID_USCC, True),
    ("enterprise", "uscc", "91110108MA01A2B3CI", False),
    ("enterprise", "org_code", VALID_USCC[8:17], True),
    ("enterprise", "tax_no", "110108" + VALID_USCC[8:17], True),
    ("enterprise", "reg_no", "110108012345678", True),
    ("enterprise", "industry_code", "13", True),
    ("enterprise", "industry_code", "C", True),
    ("enterprise", "industry_code", "C13", False),
    ("person", "phone", "13812345678", True),
    ("person", "phone", "01062345678", True),
    ("person", "phone", "12812345678", False),
    ("person", "phone", "138-1234-5678", False),
    ("person", "sex", "9", True),
    ("person", "sex", "3", False),
    ("person", "ethnicity", "01", True),
    ("person", "ethnicity", "1", False),
    ("person", "name_pinyin", "zhangsan", True),
    ("person", "name_pinyin", "zhang san", False),
    ("person", "name_latin", "ZHANG SAN", True),
    ("person", "name_latin", "Zhang San", False),
    ("person", "name_latin", "DUPONT, JEAN-PIERRE", True),      # ICAO order, hyphenated given name
    ("person", "name_latin", "O'BRIEN JOHN F.", True),
    ("person", "name_latin", "MÜLLER JOSÉ", True),               # accents kept as given
    ("person", "name_latin", "ZHANG  SAN", False),               # double space
    ("person", "name_latin", "ZHANG,SAN", False),                # comma without its space
    ("person", "name_latin", "-ZHANG", False),
    ("application", "service_item_code", "S0001", True),
    ("certificate", "status", "cancelled", True),
    ("certificate", "status", "注销", False),
]


def test_reference_values_are_valid_for_stdnum():
    assert ric.is_valid(VALID_ID) and uscc.is_valid(VALID_USCC)


@pytest.mark.parametrize(("kind", "element", "value", "matches"), CASES)
def test_pattern(kind, element, value, matches):
    pattern = load_standards().element(kind, element).pattern
    assert (re.fullmatch(pattern, value) is not None) is matches
