"""The gate's fast path (issue 14: coded and Arrow text, regex per distinct value or in RE2, sources
in forked workers, Data Docs from the collected results) gives the dq_result rows of the old one:
each object-dtype frame validated as one batch by GX's own metrics."""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping

import pandas as pd
import pytest
from govdata.expectations import column_batches
from govdata.expectations.outcome import results_frame
from govdata.expectations.run import (
    as_datetime_ns,
    as_float,
    build_quarantine_suite,
    build_suite,
    checked_columns,
    ephemeral_context,
    expectation_rows,
    quarantine_summary,
    run_suite,
    validate_standardised,
)
from govdata.expectations.suites import load_quality_config
from govdata.standards.model import Standards
from great_expectations.expectations.metrics.column_map_metrics.column_values_match_regex import (
    ColumnValuesMatchRegex,
)
from great_expectations.expectations.registry import _registered_metrics

from .conftest import element

TODAY = dt.date.today()
COUNTS = {"gongan": {"raw_rows": 14, "rejected_rows": 0}, "hall": {"raw_rows": 40, "rejected_rows": 2}}
# The sex code table (4 codes) as a value set (the default), or as a regex: on a repeating
# column, a set check on coded text or a regex run per distinct value.
IN_SET = (load_quality_config(), "expect_column_values_to_be_in_set")
AS_REGEX = ({**load_quality_config(), "inline_code_table_max": 3}, "expect_column_values_to_match_regex[code_table=sex]")


@pytest.fixture
def scale_standards(standards) -> Standards:
    """The conftest standards with the real standards' ASCII ID pattern (which runs in RE2); the
    phone pattern keeps its \\d (which stays with Python)."""
    person = {**standards.elements["person"], "id_number": element(
        "id_number", type="id_number", pattern=r"^[0-9]{17}[0-9X]$", required=True, critical=True)}
    return Standards(elements={**standards.elements, "person": person}, code_tables=standards.code_tables)


@pytest.fixture
def people() -> pd.DataFrame:
    """14 rows, object dtype, failing on purpose: IDs mostly distinct (Arrow text), sex codes
    repeating (categorical); a trailing newline (Python's `$` lets it pass), a full-width digit,
    a lower-case x, unknown sex codes, dates before 1900 and after today, a bad phone."""
    return pd.DataFrame({
        "source_system": "gongan",
        "source_record_id": [str(i) for i in range(14)],
        "id_number": ["11010519491231002X", "110105194912310029", "11010519491231002X\n", "1101051949123100２9",
                      "11010519491231002x", "440524188001010014", None, "1101051949123100", "110105195001010011",
                      "110105195001010011", "110105196001010012", "110105197001010013", None, "110105198001010014"],
        "name": ["张三", "李四", None, "王五", "赵六", "钱七", "孙八", None, "周九", "吴十", "郑一", "王二", "冯三", "陈四"],
        "sex": ["1", "2", "1", "3", "2", "1", None, "9", "0", "2", "3", "1", "1", "2"],
        "birth_date": [dt.date(1949, 12, 31), dt.date(1880, 1, 1), None, dt.date(2990, 1, 1), dt.date(1950, 1, 1),
                       dt.date(1960, 1, 1), dt.date(1970, 1, 1), None, dt.date(1980, 1, 1), dt.date(1990, 1, 1),
                       dt.date(1899, 12, 31), dt.date(2000, 1, 1), dt.date(2010, 1, 1), dt.date(2020, 1, 1)],
        "phone": ["13812345678", "13812345678\n", "12345", None, "0101234567", "013812345678", None, "1381234567",
                  "13912345678", "13912345678", "13712345678", None, "１3812345678", "13612345678"],
    })


@pytest.fixture
def applications() -> pd.DataFrame:
    """38 rows: numbers and timestamps; more rows than people, so its worker starts first."""
    return pd.DataFrame({
        "application_no": [f"A{i}" for i in range(37)] + [None],
        "submitted_at": pd.to_datetime(["2024-03-01 09:30"] * 35 + ["1980-01-01 00:00", None, "1989-12-31 23:59"]),
        "rating": pd.array([5, 4, 0, None, 6] + [3] * 33, dtype="Int64"),
    })


@contextlib.contextmanager
def gx_own_regex_metric():
    """GX 1.x's own pandas provider for column_values.match_regex, for the duration."""
    providers = _registered_metrics["column_values.match_regex.condition"]["providers"]
    ours = providers["PandasExecutionEngine"]
    providers["PandasExecutionEngine"] = (ColumnValuesMatchRegex, ColumnValuesMatchRegex._pandas)
    try:
        yield
    finally:
        providers["PandasExecutionEngine"] = ours


def old_way_rows(frame: pd.DataFrame, source, standards: Standards, run_id: str, config: dict) -> list[dict]:
    """dq_result rows as the gate made them before issue 14: the checked columns as they come
    (text as Python objects; dates and integers converted as then), one batch, in this process."""
    suite = build_suite(source.kind, standards, source, today=TODAY, config=config, present=frame.columns)
    types = {c: standards.elements[source.kind][c].type for c in checked_columns(suite)}
    batch = frame[list(types)].copy()
    for column, kind_of_value in types.items():
        if kind_of_value in ("date", "timestamp"):
            batch[column] = as_datetime_ns(batch[column], source.name)
        elif kind_of_value == "integer":
            batch[column] = as_float(batch[column], source.name)
    assert (batch.dtypes == object).sum() >= 1
    context = ephemeral_context(None)
    rows = expectation_rows(run_suite(context, f"std_{source.name}", suite, batch), run_id, source.name)
    summary = quarantine_summary(source, COUNTS)
    for row in expectation_rows(run_suite(context, f"quarantine_{source.name}", build_quarantine_suite(source, config),
                                          summary), run_id, source.name):
        row.update(observed_value=f"{summary.at[0, 'quarantine_rate']:.4f}",
                   unexpected_count=int(summary.at[0, "rejected_rows"]), element_count=int(summary.at[0, "raw_rows"]))
        rows.append(row)
    return rows


@pytest.mark.parametrize("split_min_rows", [None, 0], ids=["whole_batch", "by_column"])
@pytest.mark.parametrize(("config", "sex_check"), [IN_SET, AS_REGEX], ids=["in_set", "as_regex"])
def test_fast_path_gives_the_old_rows_exactly(scale_standards, gongan, hall, people, applications, config, sex_check,
                                              split_min_rows, monkeypatch):
    if split_min_rows is not None:   # every batch a column at a time (column_batches)
        monkeypatch.setattr(column_batches, "SPLIT_MIN_ROWS", split_min_rows)
    with gx_own_regex_metric():
        old = results_frame(old_way_rows(people, gongan, scale_standards, "run-s", config)
                            + old_way_rows(applications, hall, scale_standards, "run-s", config))
    new = validate_standardised({"gongan": people, "hall": applications}, [gongan, hall], scale_standards, COUNTS,
                                "run-s", None, config=config, workers=2).results
    pd.testing.assert_frame_equal(new, old)
    columns = ["element", "expectation", "success", "unexpected_count", "element_count", "observed_value"]
    assert [tuple(None if pd.isna(v) else v for v in row) for row in new[columns].itertuples(index=False)] == [
        ("id_number", "expect_column_values_to_not_be_null", False, 2, 14, "14.2857% unexpected"),
        # the trailing newline passes (Python's `$`); full-width digit, lower-case x, 16 digits fail
        ("id_number", "expect_column_values_to_match_regex", False, 3, 14, "25.0000% unexpected"),
        ("name", "expect_column_values_to_not_be_null", False, 2, 14, "14.2857% unexpected"),
        ("sex", sex_check, False, 2, 14, "15.3846% unexpected"),
        ("birth_date", "expect_column_values_to_be_between", False, 3, 14, "25.0000% unexpected"),
        # "12345", "1381234567" and the full-width 1 fail; "13812345678\n" passes (and \d stays Python's)
        ("phone", "expect_column_values_to_match_regex", False, 3, 14, "27.2727% unexpected"),
        (None, "expect_table_row_count_to_be_between", True, None, None, "14"),
        (None, "expect_column_values_to_be_between", True, 0, 14, "0.0000"),
        ("application_no", "expect_column_values_to_not_be_null", False, 1, 38, "2.6316% unexpected"),
        ("submitted_at", "expect_column_values_to_be_between", False, 2, 38, "5.4054% unexpected"),
        ("rating", "expect_column_values_to_be_between", False, 2, 38, "5.4054% unexpected"),
        (None, "expect_table_row_count_to_be_between", True, None, None, "38"),
        (None, "expect_column_values_to_be_between", True, 2, 40, "0.0500"),
    ]


def test_workers_in_process_or_forked_agree(standards, gongan, hall, people, applications):
    frames, sources = {"gongan": people, "hall": applications}, [gongan, hall]
    runs = [validate_standardised(frames, sources, standards, COUNTS, "run-w", None, workers=w) for w in (0, 1, 2)]
    pd.testing.assert_frame_equal(runs[1].results, runs[0].results)
    pd.testing.assert_frame_equal(runs[2].results, runs[0].results)
    # the validating processes' peak memory comes back with the outcome (forked workers' too)
    assert all(0 < run.peak_rss_mb < 4096 for run in runs)


class LakeLike(Mapping):
    """What the validate stage passes: a source's columns on request; a whole frame never."""

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames, self.asked = frames, []

    def columns(self, source: str) -> list[str]:
        return list(self.frames[source].columns)

    def read(self, source: str, columns: list[str]) -> pd.DataFrame:
        self.asked.append((source, columns))
        return self.frames[source][[c for c in columns if c in self.frames[source].columns]]

    def __getitem__(self, source: str) -> pd.DataFrame:
        raise AssertionError(f"read {source} whole")

    def __iter__(self):
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def test_a_lazy_mapping_is_read_once_per_source_in_its_checked_columns(standards, gongan, hall, people,
                                                                       applications):
    lake = LakeLike({"gongan": people, "hall": applications})
    outcome = validate_standardised(lake, [gongan, hall], standards, COUNTS, "run-l", None, workers=0)
    assert len(outcome.results) == 13
    assert lake.asked == [("gongan", ["birth_date", "id_number", "name", "phone", "sex"]),
                          ("hall", ["application_no", "rating", "submitted_at"])]


def test_data_docs_hold_every_source_validated_in_workers(standards, gongan, hall, people, applications, tmp_path):
    docs = tmp_path / "docs"
    validate_standardised({"gongan": people, "hall": applications}, [gongan, hall], standards, COUNTS, "run-d",
                          docs, workers=2)
    suites = sorted(str(p.relative_to(docs / "expectations").with_suffix("")) for p in docs.glob("expectations/**/*.html"))
    pages = sorted(p.relative_to(docs / "validations").parts for p in docs.glob("validations/**/*.html"))
    assert suites == ["quarantine/gongan", "quarantine/hall", "std/application/hall", "std/person/gongan"]
    assert ["/".join(parts[:-3]) for parts in pages] == suites   # one validation page per suite
    assert [parts[-1] for parts in pages] == ["govdata-quarantine_gongan.html", "govdata-quarantine_hall.html",
                                              "govdata-std_hall.html", "govdata-std_gongan.html"]
    index = (docs / "index.html").read_text()
    assert all(name.replace("/", ".") in index for name in suites)
