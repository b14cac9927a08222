"""The regex check's fast paths give GX's own answer (`astype(str).str.contains`) row for row."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from govdata.expectations.regex_metric import match_regex_condition, re2_equivalent
from govdata.expectations.suites import membership_regex
from govdata.standards.registry import load_standards

from .conftest import ID_PATTERN, PHONE_PATTERN

# Strings on which Python `re` and RE2 could part: a trailing newline (Python's `$` matches
# before it), inner newlines, full-width and Arabic-Indic digits (Python's \d matches them),
# Latin letters with diacritics, the empty string, CJK text.
TRICKY = [
    "11010519491231002X", "11010519491231002X\n", "11010519491231002X\n\n", "\n11010519491231002X",
    "1101051949123100２X", "١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "110105194912310029", "11010519491231002x", "",
    "13812345678", "13812345678\n", "010-1234567", "+8613812345678", "0101234567",
    "ZHANG", "ÉLODIE", "O'NEIL-SMITH", "ZHANG SAN.", "Zhang", "zhang", "zhang\n", "张三", "A\nB",
    "valid", "valid\n", "expired ", "110105", "11010", "1101050", "S1234", "91110000MA01ABCD2X",
]


def standards_patterns() -> list[str]:
    standards = load_standards()
    return sorted({e.pattern for kind in standards.elements.values() for e in kind.values() if e.pattern})


def gx_way(values: pd.Series, regex: str) -> list[bool]:
    """GX 1.x's pandas implementation of column_values.match_regex."""
    return values.astype(object).astype(str).str.contains(regex).tolist()


@pytest.mark.parametrize("regex", [*standards_patterns(), ID_PATTERN, PHONE_PATTERN,
                                   membership_regex(["110105", "110101", "440305", "9"]),
                                   r"a.b", r"^x*?y{2,}$", r"[^0-9]", r"^(ab|c)$|^d"])
def test_arrow_text_and_categorical_give_gx_answers(regex):
    arrow = pd.Series(pd.arrays.ArrowStringArray(pa.array(TRICKY, type=pa.large_string())))
    coded = pd.Series(TRICKY * 2, dtype="category")
    assert match_regex_condition(arrow, regex).tolist() == gx_way(arrow, regex)
    assert match_regex_condition(coded, regex).tolist() == gx_way(coded, regex)


def test_missing_values_pass_and_present_values_get_gx_answers():
    """GX asks for the condition on the whole column (filter_column_isnull off): a missing value
    passes, so GX's unexpected count over the present values is unchanged."""
    values = ["12", None, "x", "34", None, "yy"]
    arrow = pd.Series(pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string())))
    coded = pd.Series(values, dtype="category")
    plain = pd.Series(values, dtype=object)
    regex = r"^[0-9]{2}$"
    for column in (arrow, coded, plain):
        assert match_regex_condition(column, regex).tolist() == [True, True, False, True, True, False]
    assert match_regex_condition(arrow, r"^(\d{2})$").tolist() == [True, True, False, True, True, False]  # Python's \d


def test_every_standards_pattern_runs_in_re2():
    assert [p for p in standards_patterns() if re2_equivalent(p) is None] == []


@pytest.mark.parametrize("regex", [
    r"^\d{17}[\dX]$",   # \d is Unicode-aware in Python, ASCII in RE2
    r"\w+", r"\s", r"\bA",
    r"(?i)abc", r"(?m)^a$", r"(?s)a.b",
    r"a$b", r"(a$)+",   # `$` with something after it
    r"(a)\1", r"a(?=b)", r"(?<!a)b", r"(?>ab)", r"a++",
    r"x{1001}",   # above RE2's repetition limit
])
def test_constructs_that_could_differ_stay_with_python(regex):
    assert re2_equivalent(regex) is None


def test_python_dollar_before_a_final_newline_is_kept():
    assert re2_equivalent(r"^[0-9]{2}$") == "\\A(?:[\\x{30}-\\x{39}]){2,2}\\n?\\z"


def test_object_columns_take_gx_own_path():
    values = pd.Series(["12", 12, "x"], dtype=object)   # str() of an int is checked, as GX does
    assert match_regex_condition(values, r"^[0-9]{2}$").tolist() == [True, True, False]
