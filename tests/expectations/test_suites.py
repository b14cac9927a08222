from __future__ import annotations

import datetime as dt

import pytest
from govdata.expectations.suites import (
    build_quarantine_suite,
    build_suite,
    describe_suite,
)

TODAY = dt.date(2026, 11, 25)


def test_person_suite_without_source_covers_every_element_in_standards_order(standards):
    suite = build_suite("person", standards, today=TODAY)
    assert suite.name == "std.person"
    assert describe_suite(suite) == [
        ("expect_column_values_to_not_be_null", "id_number"),
        ("expect_column_values_to_match_regex", "id_number"),
        ("expect_column_values_to_not_be_null", "name"),
        ("expect_column_values_to_be_in_set", "sex"),
        ("expect_column_values_to_be_between", "birth_date"),
        ("expect_column_values_to_match_regex", "phone"),
    ]


def test_source_suite_keeps_mapped_elements_and_adds_row_count(standards, gongan):
    suite = build_suite("person", standards, gongan, today=TODAY)
    assert suite.name == "std.person.gongan"
    assert describe_suite(suite) == [
        ("expect_column_values_to_not_be_null", "id_number"),
        ("expect_column_values_to_match_regex", "id_number"),
        ("expect_column_values_to_not_be_null", "name"),
        ("expect_column_values_to_be_in_set", "sex"),
        ("expect_column_values_to_be_between", "birth_date"),
        ("expect_table_row_count_to_be_between", None),
    ]
    row_count = suite.expectations[-1]
    assert (row_count.min_value, row_count.max_value) == (1, None)


def test_expectation_parameters_come_from_element_fields_and_code_tables(standards, gongan):
    by_key = {(e.expectation_type, getattr(e, "column", None)): e
              for e in build_suite("person", standards, gongan, today=TODAY).expectations}
    assert by_key[("expect_column_values_to_match_regex", "id_number")].regex == r"^\d{17}[\dX]$"
    assert by_key[("expect_column_values_to_be_in_set", "sex")].value_set == ["0", "1", "2", "9"]
    birth = by_key[("expect_column_values_to_be_between", "birth_date")]
    assert birth.min_value == dt.datetime(1900, 1, 1)
    assert birth.max_value == dt.datetime(2026, 11, 25, 23, 59, 59, 999999)


def test_severity_follows_element_critical(standards, gongan):
    severities = {(e.expectation_type, e.column if hasattr(e, "column") else None): e.severity.value
                  for e in build_suite("person", standards, gongan, today=TODAY).expectations}
    assert severities[("expect_column_values_to_be_in_set", "sex")] == "critical"
    assert severities[("expect_column_values_to_not_be_null", "name")] == "warning"
    assert severities[("expect_column_values_to_be_between", "birth_date")] == "warning"


def test_integer_range_from_quality_config(standards, hall):
    suite = build_suite("application", standards, hall, today=TODAY)
    assert describe_suite(suite) == [
        ("expect_column_values_to_not_be_null", "application_no"),
        ("expect_column_values_to_be_between", "submitted_at"),
        ("expect_column_values_to_be_between", "rating"),
        ("expect_table_row_count_to_be_between", None),
    ]
    rating = suite.expectations[2]
    assert (rating.min_value, rating.max_value) == (1, 5)


def test_quarantine_suite_uses_source_override_else_default(gongan, hall):
    assert build_quarantine_suite(hall).expectations[0].max_value == 0.5
    assert build_quarantine_suite(gongan).expectations[0].max_value == 0.05


def test_unknown_element_in_source_mapping_is_named(standards, gongan):
    from dataclasses import replace
    bad = replace(gongan, columns={**gongan.columns, "ZZ": "shoe_size"})
    with pytest.raises(ValueError, match=r"gongan .*unknown person elements: \['shoe_size'\]"):
        build_suite("person", standards, bad)


def test_missing_code_table_is_named(standards):
    standards.code_tables.pop("sex")
    with pytest.raises(ValueError, match=r"person\.sex names code table 'sex'"):
        build_suite("person", standards)


def test_derived_columns_get_value_checks_but_no_completeness_check(standards, gongan):
    unmapped = type(gongan)(**{**gongan.__dict__, "columns": {"SFZHM": "id_number", "XBDM": "sex"}})
    suite = build_suite("person", standards, unmapped, today=TODAY,
                        present=["source_system", "id_number", "name", "sex", "phone", "not_an_element"])
    assert describe_suite(suite) == [
        ("expect_column_values_to_not_be_null", "id_number"),
        ("expect_column_values_to_match_regex", "id_number"),
        ("expect_column_values_to_be_in_set", "sex"),
        ("expect_column_values_to_match_regex", "phone"),
        ("expect_table_row_count_to_be_between", None),
    ]


def test_membership_regex_matches_exactly_the_codes():
    import re

    from govdata.expectations.suites import membership_regex

    pattern = membership_regex(["110101", "110102", "1102", "12"])
    assert pattern == "^1(?:10(?:10[12]|2)|2)$"
    matcher = re.compile(pattern)
    assert [bool(matcher.match(v)) for v in ["110101", "110102", "1102", "12", "110103", "11", "110", "12X"]] == [
        True, True, True, True, False, False, False, False]


def test_large_code_table_becomes_a_prefix_tree_regex(standards, gongan):
    from govdata.expectations.suites import load_quality_config

    config = {**load_quality_config(), "inline_code_table_max": 3}
    suite = build_suite("person", standards, gongan, today=TODAY, config=config)
    check = next(e for e in suite.expectations if getattr(e, "column", None) == "sex")
    assert check.expectation_type == "expect_column_values_to_match_regex"
    assert check.regex == "^[0129]$"
    assert check.meta == {"element": "sex", "kind": "person", "check": "code_table", "code_table": "sex"}
