"""Value-set and range checks asked for on the whole column give GX's counts, missing values apart."""
from __future__ import annotations

import datetime as dt
import warnings

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import pytest
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.registry import get_metric_provider
from govdata.expectations.regex_metric import CodedTextMatchRegex
from govdata.expectations.run import RESULT_FORMAT, ephemeral_context
from govdata.expectations.whole_column import (
    _GX_BETWEEN,
    _GX_IN_SET,
    WholeColumnBetween,
    WholeColumnInSet,
    compares_missing_as_false,
    passing_missing,
)

DAY = dt.datetime(2000, 1, 1)


def results(frame: pd.DataFrame, expectations: list, result_format=RESULT_FORMAT) -> list[dict]:
    context = ephemeral_context(None)
    suite = context.suites.add(gx.ExpectationSuite(name="s", expectations=expectations))
    batch = context.data_sources.get("govdata").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    run = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    assert all(not r.exception_info.get("raised_exception") for r in run.results if r.exception_info), run
    by_check = {(r.expectation_config.type, r.expectation_config.kwargs["column"]): r.result for r in run.results}
    return [by_check[(e.expectation_type, e.column)] for e in expectations]   # in the suite's order


def test_missing_values_pass_every_dtype():
    cases = [
        (_GX_IN_SET, pd.Series(["1", None, "9", "3"], dtype="category"), {"value_set": ["1", "9"]}),
        (_GX_IN_SET, pd.Series(["1", None, "9", "3"], dtype=object), {"value_set": ["1", "9"]}),
        (_GX_BETWEEN, pd.Series([1.0, np.nan, 5.0, 50.0]), {"min_value": 0, "max_value": 10}),
        (_GX_BETWEEN, pd.Series([DAY, pd.NaT, DAY, DAY.replace(year=2100)], dtype="datetime64[ns]"),
         {"min_value": DAY, "max_value": DAY.replace(year=2050)}),
        (_GX_BETWEEN, pd.Series([3, None, 5, 50], dtype=object), {"min_value": 0, "max_value": 10}),  # GX's map path
    ]
    for condition, column, kwargs in cases:
        in_set = condition is _GX_IN_SET   # as the providers call it
        cls, takes_missing = (WholeColumnInSet, True) if in_set else (WholeColumnBetween, compares_missing_as_false(column))
        assert passing_missing(condition, cls, column, takes_missing, **kwargs).tolist() == [True, True, True, False], column.dtype


def test_counts_are_gx_counts_on_present_values():
    frame = pd.DataFrame({
        "sex": pd.Series(["1", None, "2", "7", None, "7"], dtype="category"),
        "rating": [1.0, np.nan, 5.0, 50.0, np.nan, -1.0],
        "born": pd.Series([DAY, pd.NaT, DAY, DAY.replace(year=2100), DAY, pd.NaT], dtype="datetime64[ns]"),
    })
    checks = [gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=["1", "2"]),
              gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=0, max_value=10),
              gxe.ExpectColumnValuesToBeBetween(column="born", min_value=DAY, max_value=DAY.replace(year=2050))]
    got = results(frame, checks)
    assert [(r["element_count"], r["missing_count"], r["unexpected_count"]) for r in got] == [(6, 2, 2), (6, 2, 2), (6, 2, 1)]
    assert [r["unexpected_percent"] for r in got] == [50.0, 50.0, 25.0]


def test_listed_values_come_from_the_whole_column_without_reindexing():
    frame = pd.DataFrame({"sex": pd.Series(["1", None, "7", "8"], dtype=object), "rating": [1.0, np.nan, 50.0, 2.0]})
    checks = [gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=["1"]),
              gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=0, max_value=10),
              gxe.ExpectColumnValuesToMatchRegex(column="sex", regex="^[0-9]$")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # GX's "Boolean Series key will be reindexed" if a summary dropped missing values
        got = results(frame, checks, "COMPLETE")
    assert [(r["unexpected_list"], r["unexpected_index_list"]) for r in got] == [
        (["7", "8"], [2, 3]), ([50.0], [2]), ([], [])]


@pytest.mark.parametrize("metric_class", [WholeColumnInSet, WholeColumnBetween, CodedTextMatchRegex])
def test_every_summary_reads_the_class_that_keeps_missing_values(metric_class):
    engine = PandasExecutionEngine()
    for suffix in ("condition", "unexpected_count", "unexpected_values", "unexpected_rows", "unexpected_index_list"):
        registered, _ = get_metric_provider(f"{metric_class.condition_metric_name}.{suffix}", engine)
        assert registered is metric_class, suffix
