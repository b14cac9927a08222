"""Old GB/T 2260 codes resolved to the codes in use today."""
from __future__ import annotations

import pandas as pd

from govdata.standards.regions import current_codes_map, resolve_current
from govdata.standards.registry import load_standards


def history(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    """(code, status, valid_to, successors, successor_years) rows of a region table."""
    return pd.DataFrame(rows, columns=["code", "status", "valid_to", "successors", "successor_years"])


TINY = history([
    ("100001", "current", "", "", ""),
    ("100002", "current", "", "100001", "2001"),          # current code that gave part away
    ("100003", "abolished", "2005", "100004", "2005"),     # chain: 3 -> 4 -> 1
    ("100004", "abolished", "2010", "100001", "2010"),
    ("100005", "abolished", "2014", "100002;100001", "2001;2014"),  # part in 2001, rest at the end
    ("100006", "abolished", "1999", "100001;100002", "1999;1999"),  # split in two
    ("100007", "abolished", "1990", "100008", "1990"),     # cycle 7 <-> 8
    ("100008", "abolished", "1991", "100007", "1991"),
    ("100009", "abolished", "1995", "", ""),               # abolished without successor
    ("100010", "changed", "1992", "100010", "1992"),       # renamed: same code in use
    ("100010", "current", "", "", ""),
])


def test_current_codes_map_on_tiny_history():
    assert current_codes_map(TINY) == {
        "100001": ("100001",), "100002": ("100002",), "100003": ("100001",), "100004": ("100001",),
        "100005": ("100001",), "100006": ("100001", "100002"), "100007": (), "100008": (),
        "100009": (), "100010": ("100010",)}


def test_resolve_current_per_value():
    values = pd.Series(["100003", "100006", "100009", "999999", None, "100003"])
    result = resolve_current(values, TINY)
    assert result["current_code"].tolist() == ["100001", pd.NA, pd.NA, pd.NA, pd.NA, "100001"]
    assert result["current_codes"].tolist() == ["100001", "100001;100002", "", pd.NA, pd.NA, "100001"]


def test_resolve_current_on_shipped_table():
    result = resolve_current(pd.Series(["110103", "130124", "130421", "110101"]), load_standards().regions)
    assert result["current_code"].tolist() == ["110101", "130111", pd.NA, "110101"]
    assert result["current_codes"].tolist() == ["110101", "130111", "130402;130403", "110101"]
