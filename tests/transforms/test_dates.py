"""Date and timestamp parsing: every recognised format and every fault, exact values."""
from __future__ import annotations

import pandas as pd
import pytest

from govdata.transforms.dates import parse_dates, parse_timestamps


@pytest.mark.parametrize("raw, value, status, note", [
    ("19900115", "1990-01-15", "valid", None),
    ("1990-01-15", "1990-01-15", "valid", None),
    ("1990/1/5", "1990-01-05", "valid", None),
    ("1990.1.5", "1990-01-05", "valid", None),
    ("1990年1月5日", "1990-01-05", "valid", None),
    ("１９９０－０１－１５", "1990-01-15", "valid", None),
    (" 1990-01-15 ", "1990-01-15", "valid", None),
    ("1990-01-15 12:30:45", "1990-01-15", "valid", None),  # time dropped for a date element
    ("32874", "1990-01-01", "valid", "excel_serial"),
    ("29348", "1980-05-07", "valid", "excel_serial"),
    ("32874.0", "1990-01-01", "valid", "excel_serial"),   # the serial as a REAL
    ("1980.05.07", "1980-05-07", "valid", None),          # dotted date
    ("1980.5.7", "1980-05-07", "valid", None),
    ("1990-02-30", None, "invalid", "impossible_date"),
    ("1900-02-29", None, "invalid", "impossible_date"),     # 1900 is not a leap year
    ("2000-02-29", "2000-02-29", "valid", None),            # 2000 is
    ("1990-13-01", None, "invalid", "impossible_date"),
    ("1700-01-01", None, "invalid", "out_of_range"),
    ("15/01/1990", None, "invalid", "unparseable"),         # day-first only when asked
    ("15878", "1943-06-21", "valid", "excel_serial"),     # an elder's birth date from a spreadsheet
    ("12345", "1933-10-18", "valid", "excel_serial"),
    ("99999", None, "invalid", "unparseable"),              # above the Excel serial window
    ("abc", None, "invalid", "unparseable"),
    ("", None, "missing", None),
    (None, None, "missing", None),
])
def test_parse_dates(raw, value, status, note):
    got = parse_dates(pd.Series([raw], dtype=object)).iloc[0]
    if value is None:
        assert pd.isna(got["value"])
    else:
        assert got["value"] == pd.Timestamp(value)
    assert got["status"] == status
    assert (None if got["note"] is pd.NA else got["note"]) == note


def test_dayfirst_and_explicit_format():
    out = parse_dates(pd.Series(["15/01/1990", "1/2/1990", "31/02/1990", "1990-01-15"]), dayfirst=True)
    assert out["value"].tolist()[:2] == [pd.Timestamp("1990-01-15"), pd.Timestamp("1990-02-01")]
    assert out["status"].tolist() == ["valid", "valid", "invalid", "valid"]
    assert out["note"].tolist()[2] == "impossible_date"
    fmt = parse_dates(pd.Series(["15.01.1990", "1990-01-15", None]), fmt="%d.%m.%Y")
    assert fmt["status"].tolist() == ["valid", "invalid", "missing"]
    assert fmt["value"].tolist()[0] == pd.Timestamp("1990-01-15")


def test_parse_timestamps_keeps_time_and_alignment():
    values = pd.Series(["2024-03-01 08:09:10", "2024-03-01T08:09:10.25", "20240301", "2024-03-01 24:00:00"],
                       index=[7, 8, 9, 10])
    out = parse_timestamps(values)
    assert list(out.index) == [7, 8, 9, 10]
    assert out["value"].tolist()[:3] == [pd.Timestamp("2024-03-01 08:09:10"),
                                         pd.Timestamp("2024-03-01 08:09:10.250"),
                                         pd.Timestamp("2024-03-01")]
    assert out["status"].tolist() == ["valid", "valid", "valid", "invalid"]
    assert out["note"].tolist()[3] == "impossible_date"
    assert str(out["value"].dtype) == "datetime64[ns]"


def test_a_pinned_format_tells_impossible_dates_from_unparseable_ones():
    out = parse_dates(pd.Series(["30/02/1968", "31/04/2006", "30/04/1968", "1968-04-30", "x"]),
                      dayfirst=True, fmt="%d/%m/%Y")
    assert out["status"].tolist() == ["invalid", "invalid", "valid", "invalid", "invalid"]
    assert out["note"].tolist() == ["impossible_date", "impossible_date", pd.NA, "unparseable", "unparseable"]


@pytest.mark.parametrize("raw, expected", [
    ("7-May-1980", "1980-05-07"), ("May 7, 1980", "1980-05-07"), ("07 MAY 1980", "1980-05-07"),
    ("7 Sept. 1980", "1980-09-07"), ("September 30, 1999", "1999-09-30"), ("29-FEB-2000", "2000-02-29"),
    ("1980 05 07", "1980-05-07"), ("1980.05.07.", "1980-05-07"),
])
def test_english_month_names_spaces_and_a_trailing_dot(raw, expected):
    out = parse_dates(pd.Series([raw]))
    assert (out["status"].iloc[0], str(out["value"].iloc[0].date())) == ("valid", expected)


def test_month_names_that_name_no_day_or_no_date():
    out = parse_dates(pd.Series(["31-Feb-1980", "Mayday"]))
    assert out["note"].tolist() == ["impossible_date", "unparseable"]
