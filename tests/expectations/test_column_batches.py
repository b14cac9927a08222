from __future__ import annotations

import great_expectations as gx
import pandas as pd
import pytest
from govdata.expectations import column_batches
from govdata.expectations.column_batches import column_groups, group_frame
from govdata.expectations.run import validate_standardised

CLEAN_COUNTS = {"gongan": {"raw_rows": 4, "rejected_rows": 0}}


def _suite() -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name="s", expectations=[
        gx.expectations.ExpectColumnValuesToNotBeNull(column="a"),
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
        gx.expectations.ExpectColumnValuesToBeInSet(column="b", value_set=["x"]),
        gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="a", column_B="b"),
        gx.expectations.ExpectColumnValuesToBeUnique(column="a"),
    ])


def test_expectations_are_grouped_by_the_columns_they_read_in_first_appearance_order():
    assert column_groups(_suite()) == [(("a",), [0, 4]), ((), [1]), (("b",), [2]), (("a", "b"), [3])]


def test_a_group_gets_its_columns_and_a_table_level_group_the_first_column():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, None]})
    assert list(group_frame(frame, ("b",)).columns) == ["b"]
    assert list(group_frame(frame, ("a", "b")).columns) == ["a", "b"]
    assert list(group_frame(frame, ()).columns) == ["a"]
    assert list(group_frame(frame, ("gone",)).columns) == ["a"]


@pytest.fixture(params=["whole", "by_column"])
def split(request, monkeypatch):
    """Each test below runs once on the whole batch and once a column at a time."""
    if request.param == "by_column":
        monkeypatch.setattr(column_batches, "SPLIT_MIN_ROWS", 0)
    return request.param


def test_a_source_validated_a_column_at_a_time_gives_the_whole_batch_result(
        split, standards, gongan, gongan_frame, tmp_path):
    frame = gongan_frame.assign(id_number=["1101051949123100", "11010519491231002X", "11010519491231002X", None])
    outcome = validate_standardised({"gongan": frame}, [gongan], standards, CLEAN_COUNTS, "run-1", tmp_path / "docs")
    results = outcome.results.astype(object).where(outcome.results.notna(), None)
    assert [tuple(r) for r in results.drop(columns=["run_id", "source_system"]).itertuples(index=False)] == [
        ("std.person.gongan", "expect_column_values_to_not_be_null", "id_number", "critical", False,
         "25.0000% unexpected", 1, 4),
        ("std.person.gongan", "expect_column_values_to_match_regex", "id_number", "critical", False,
         "33.3333% unexpected", 1, 4),
        ("std.person.gongan", "expect_column_values_to_not_be_null", "name", "warning", True,
         "0.0000% unexpected", 0, 4),
        ("std.person.gongan", "expect_column_values_to_be_in_set", "sex", "critical", False,
         "33.3333% unexpected", 1, 4),
        ("std.person.gongan", "expect_column_values_to_be_between", "birth_date", "warning", False,
         "33.3333% unexpected", 1, 4),
        ("std.person.gongan", "expect_table_row_count_to_be_between", None, "critical", True, "4", None, None),
        ("quarantine.gongan", "expect_column_values_to_be_between", None, "critical", True, "0.0000", 0, 4),
    ]
    # the Data Docs show one validation of each suite, of the source's asset
    assert [(p.relative_to(tmp_path / "docs").parts[1:4], p.name) for p in sorted(
        (tmp_path / "docs" / "validations").rglob("*.html"))] == [
        (("quarantine", "gongan", "__none__"), "govdata-quarantine_gongan.html"),
        (("std", "person", "gongan"), "govdata-std_gongan.html"),
    ]
