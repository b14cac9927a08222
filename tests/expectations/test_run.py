from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from govdata.expectations.run import validate_standardised

CLEAN_COUNTS = {"gongan": {"raw_rows": 4, "rejected_rows": 0}}


def summary(results: pd.DataFrame) -> list[tuple]:
    cols = ["suite", "expectation", "element", "severity", "success", "unexpected_count", "element_count"]
    return [tuple(None if pd.isna(v) else v for v in row) for row in results[cols].itertuples(index=False)]


def test_unknown_sex_code_fails_value_set_with_exact_count(standards, gongan, gongan_frame):
    outcome = validate_standardised({"gongan": gongan_frame}, [gongan], standards, CLEAN_COUNTS, "run-1", None)
    assert summary(outcome.results) == [
        ("std.person.gongan", "expect_column_values_to_not_be_null", "id_number", "critical", False, 1, 4),
        ("std.person.gongan", "expect_column_values_to_match_regex", "id_number", "critical", True, 0, 4),
        ("std.person.gongan", "expect_column_values_to_not_be_null", "name", "warning", True, 0, 4),
        ("std.person.gongan", "expect_column_values_to_be_in_set", "sex", "critical", False, 1, 4),
        ("std.person.gongan", "expect_column_values_to_be_between", "birth_date", "warning", False, 1, 4),
        ("std.person.gongan", "expect_table_row_count_to_be_between", None, "critical", True, None, None),
        ("quarantine.gongan", "expect_column_values_to_be_between", None, "critical", True, 0, 4),
    ]
    assert list(outcome.results.columns) == [
        "run_id", "source_system", "suite", "expectation", "element", "severity",
        "success", "observed_value", "unexpected_count", "element_count",
    ]
    assert set(outcome.results["run_id"]) == {"run-1"}
    assert set(outcome.results["source_system"]) == {"gongan"}
    assert outcome.results["observed_value"].tolist() == [
        "25.0000% unexpected", "0.0000% unexpected", "0.0000% unexpected", "33.3333% unexpected",
        "33.3333% unexpected", "4", "0.0000",
    ]
    assert outcome.critical_failed is True
    assert outcome.failures == [
        "[critical] gongan std.person.gongan: id_number expect_column_values_to_not_be_null failed (1 of 4 rows unexpected)",
        "[critical] gongan std.person.gongan: sex expect_column_values_to_be_in_set failed (1 of 4 rows unexpected)",
        "[warning] gongan std.person.gongan: birth_date expect_column_values_to_be_between failed (1 of 4 rows unexpected)",
    ]
    assert outcome.docs_index is None


def test_warning_only_failures_do_not_stop_the_run(standards, gongan, gongan_frame):
    frame = gongan_frame.assign(id_number=["11010519491231002X"] * 4, sex=["1", "2", "9", None])
    outcome = validate_standardised({"gongan": frame}, [gongan], standards, CLEAN_COUNTS, "run-2", None)
    assert outcome.critical_failed is False
    assert outcome.failures == [
        "[warning] gongan std.person.gongan: birth_date expect_column_values_to_be_between failed (1 of 4 rows unexpected)",
    ]


def test_quarantine_rate_above_threshold_is_critical(standards, gongan, gongan_frame):
    clean = gongan_frame.assign(id_number=["11010519491231002X"] * 4, sex="1",
                                birth_date=[dt.date(1980, 1, 1)] * 4)
    counts = {"gongan": {"raw_rows": 5, "rejected_rows": 1}}  # 20% > 5% default
    outcome = validate_standardised({"gongan": clean}, [gongan], standards, counts, "run-3", None)
    row = outcome.results[outcome.results["suite"] == "quarantine.gongan"].iloc[0]
    assert (row["success"], row["observed_value"], row["unexpected_count"], row["element_count"]) == (
        False, "0.2000", 1, 5)
    assert outcome.critical_failed is True
    assert outcome.failures == ["[critical] gongan quarantine.gongan: expect_column_values_to_be_between failed (1 of 5 rows unexpected)"]


def test_empty_source_fails_row_count(standards, gongan, gongan_frame):
    empty = gongan_frame.iloc[0:0]
    counts = {"gongan": {"raw_rows": 0, "rejected_rows": 0}}
    outcome = validate_standardised({"gongan": empty}, [gongan], standards, counts, "run-4", None)
    row = outcome.results[outcome.results["expectation"] == "expect_table_row_count_to_be_between"].iloc[0]
    assert (row["success"], row["observed_value"]) == (False, "0")
    assert outcome.critical_failed is True


def test_timestamps_and_integers_are_range_checked(standards, hall):
    frame = pd.DataFrame({
        "application_no": ["A1", "A2", "A3"],
        "submitted_at": pd.to_datetime(["2024-03-01 09:30", "1980-01-01 00:00", None]),
        "rating": pd.array([5, 0, None], dtype="Int64"),
    })
    counts = {"hall": {"raw_rows": 4, "rejected_rows": 1}}  # 25% under the source's 50%
    outcome = validate_standardised({"hall": frame}, [hall], standards, counts, "run-5", None)
    assert summary(outcome.results) == [
        ("std.application.hall", "expect_column_values_to_not_be_null", "application_no", "critical", True, 0, 3),
        ("std.application.hall", "expect_column_values_to_be_between", "submitted_at", "warning", False, 1, 3),
        ("std.application.hall", "expect_column_values_to_be_between", "rating", "warning", False, 1, 3),
        ("std.application.hall", "expect_table_row_count_to_be_between", None, "critical", True, None, None),
        ("quarantine.hall", "expect_column_values_to_be_between", None, "critical", True, 1, 4),
    ]


def test_data_docs_site_is_built_without_raw_identifiers(standards, gongan, gongan_frame, tmp_path):
    bad_id = "1101051949123100"  # 16 digits: fails the regex, must not be echoed anywhere
    frame = gongan_frame.assign(id_number=[bad_id, "11010519491231002X", "11010519491231002X", None])
    docs = tmp_path / "docs"
    outcome = validate_standardised({"gongan": frame}, [gongan], standards, CLEAN_COUNTS, "run-6", docs)
    assert outcome.docs_index == (docs / "index.html").resolve()
    assert outcome.docs_index.is_file()
    pages = [p for p in docs.rglob("*.html")]
    assert len(pages) >= 3  # index + the suite pages + the validation pages
    assert not [p for p in docs.rglob("*") if p.is_file() and bad_id in p.read_text(errors="ignore")]
    assert not outcome.results.astype(str).apply(lambda c: c.str.contains(bad_id)).any().any()
    regex = outcome.results[outcome.results["expectation"] == "expect_column_values_to_match_regex"].iloc[0]
    assert (regex["success"], regex["unexpected_count"]) == (False, 1)


def test_missing_column_names_source_and_column(standards, gongan, gongan_frame):
    with pytest.raises(ValueError, match=r"source gongan lacks columns \['sex'\]"):
        validate_standardised({"gongan": gongan_frame.drop(columns="sex")}, [gongan], standards,
                              CLEAN_COUNTS, "run-7", None)


def test_missing_frame_or_counts_is_named(standards, gongan, gongan_frame):
    with pytest.raises(ValueError, match=r"no standardised frame for source 'gongan'"):
        validate_standardised({}, [gongan], standards, CLEAN_COUNTS, "run-8", None)
    with pytest.raises(ValueError, match=r"quarantine_counts\['gongan'\] lacks 'rejected_rows'"):
        validate_standardised({"gongan": gongan_frame}, [gongan], standards, {"gongan": {"raw_rows": 4}},
                              "run-8", None)


def test_large_code_table_check_counts_unknown_codes(standards, gongan, gongan_frame):
    from govdata.expectations.suites import load_quality_config

    config = {**load_quality_config(), "inline_code_table_max": 3}
    outcome = validate_standardised({"gongan": gongan_frame}, [gongan], standards, CLEAN_COUNTS, "run-9", None,
                                    config=config)
    row = outcome.results[outcome.results["element"] == "sex"].iloc[0]
    assert (row["expectation"], row["success"], row["unexpected_count"], row["element_count"]) == (
        "expect_column_values_to_match_regex[code_table=sex]", False, 1, 4)


def test_bad_counts_and_error_texts_are_reported_without_identifiers(standards, gongan, gongan_frame):
    from govdata.expectations.run import redact_digits

    with pytest.raises(ValueError, match=r"quarantine_counts\['gongan'\]\['raw_rows'\] is not a non-negative"):
        validate_standardised({"gongan": gongan_frame}, [gongan], standards,
                              {"gongan": {"raw_rows": -1, "rejected_rows": 0}}, "run-10", None)
    with pytest.raises(ValueError, match=r"rejected_rows 5 exceeds raw_rows 4"):
        validate_standardised({"gongan": gongan_frame}, [gongan], standards,
                              {"gongan": {"raw": 4, "rejected": 5}}, "run-10", None)
    assert redact_digits("could not convert '11010519491231002X' nor 13812345678; column 3") == (
        "could not convert '<redacted>' nor <redacted>; column 3")
