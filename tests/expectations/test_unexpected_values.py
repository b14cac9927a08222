"""Unexpected values are computed only when a result lists them; the counts are GX's either way."""
from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa
import pytest
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.registry import get_metric_provider
from govdata.expectations.run import RESULT_FORMAT, ephemeral_context
from govdata.expectations.unexpected_values import (
    MAP_METRIC_CLASSES,
    no_values_asked,
    unexpected_values_when_asked,
)

VALUES = ["12", None, "x", "34", None, "yy", "12"]


def checks() -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column="c"),
            gxe.ExpectColumnValuesToMatchRegex(column="c", regex=r"^[0-9]{2}$"),
            gxe.ExpectColumnValuesToBeInSet(column="c", value_set=["12", "x"])]


def run(frame: pd.DataFrame, result_format) -> list[dict]:
    context = ephemeral_context(None)
    suite = context.suites.add(gx.ExpectationSuite(name="s", expectations=checks()))
    batch = context.data_sources.get("govdata").add_dataframe_asset("a").add_batch_definition_whole_dataframe("w")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    return [r.result for r in definition.run(batch_parameters={"dataframe": frame}, result_format=result_format).results]


FRAMES = {
    "object": pd.DataFrame({"c": pd.Series(VALUES, dtype=object)}),
    "categorical": pd.DataFrame({"c": pd.Series(VALUES, dtype="category")}),
    "arrow": pd.DataFrame({"c": pd.Series(pd.arrays.ArrowStringArray(pa.array(VALUES, type=pa.large_string())))}),
}


@pytest.mark.parametrize("kind", sorted(FRAMES))
def test_the_gate_gets_counts_and_no_values(kind):
    results = run(FRAMES[kind], RESULT_FORMAT)
    assert [(r["element_count"], r["unexpected_count"], r["partial_unexpected_list"]) for r in results] == [
        (7, 2, []), (7, 2, []), (7, 2, [])]
    assert [r["unexpected_percent"] for r in results] == [pytest.approx(200 / 7), 40.0, 40.0]


@pytest.mark.parametrize("kind", sorted(FRAMES))
def test_values_asked_for_are_gx_own(kind):
    asked = run(FRAMES[kind], {"result_format": "BASIC", "partial_unexpected_count": 1})
    missing, regex, in_set = (r["partial_unexpected_list"] for r in asked)
    assert (len(missing), pd.isna(missing[0]), regex, in_set) == (1, True, ["x"], ["34"])
    complete = run(FRAMES[kind], "COMPLETE")
    assert [r["unexpected_list"] for r in complete[1:]] == [["x", "yy"], ["34", "yy"]]


def test_registered_for_every_check_the_suites_generate():
    engine = PandasExecutionEngine()
    for metric_class in MAP_METRIC_CLASSES:
        registered_class, provider = get_metric_provider(f"{metric_class.condition_metric_name}.unexpected_values", engine)
        assert (registered_class, provider) == (metric_class, unexpected_values_when_asked)


def test_no_values_asked_only_for_a_zero_partial_list():
    assert no_values_asked({"result_format": "BASIC", "partial_unexpected_count": 0})
    assert no_values_asked({"result_format": "SUMMARY", "partial_unexpected_count": 0})
    assert not no_values_asked({"result_format": "BASIC", "partial_unexpected_count": 20})
    assert not no_values_asked({"result_format": "COMPLETE", "partial_unexpected_count": 0})
