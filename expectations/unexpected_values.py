"""GX's unexpected-values metric, skipped when no value is asked for.

With result format BASIC, GX computes every column check's `unexpected_values` for the
partial_unexpected_list: it filters the batch on the column's non-null rows (a copy of the
batch), then on the unexpected rows, and returns the first `partial_unexpected_count` of
them. The gate asks for none (run.RESULT_FORMAT: no raw ID or phone number may reach a
result), so that work always ended in an empty list. Registered here for the pandas engine:
the empty list at once when no value is asked for, GX's own function otherwise.

Importing this module registers the provider for the column checks the suites generate;
SQL and Spark keep GX's.
"""
from __future__ import annotations

from great_expectations.core.metric_function_types import MetricFunctionTypes
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.column_map_metrics import ColumnValuesNonNull
from great_expectations.expectations.metrics.map_metric_provider.column_map_condition_auxilliary_methods import (
    _pandas_column_map_condition_values,
)
from great_expectations.expectations.registry import register_metric

from govdata.expectations.regex_metric import CodedTextMatchRegex
from govdata.expectations.whole_column import WholeColumnBetween, WholeColumnInSet, quiet_registry

# The map metrics behind the suites' column checks (suites.element_expectations), each with
# the class whose condition the pandas engine runs (regex_metric.py, whole_column.py).
MAP_METRIC_CLASSES = (ColumnValuesNonNull, CodedTextMatchRegex, WholeColumnInSet, WholeColumnBetween)


def no_values_asked(result_format: dict) -> bool:
    """Whether a check's result is to list no unexpected value."""
    return result_format["result_format"] != "COMPLETE" and result_format.get("partial_unexpected_count") == 0


def unexpected_values_when_asked(cls, execution_engine, metric_domain_kwargs: dict, metric_value_kwargs: dict,
                                 metrics: dict, **kwargs) -> list:
    """[] when no value is asked for; otherwise GX's `_pandas_column_map_condition_values`."""
    if no_values_asked(metric_value_kwargs["result_format"]):
        return []
    return _pandas_column_map_condition_values(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs,
                                               metrics, **kwargs)


def register() -> None:
    """unexpected_values_when_asked in place of GX's provider of each class's
    `<metric>.unexpected_values`, with the keys GX registers it under."""
    with quiet_registry():
        for metric_class in MAP_METRIC_CLASSES:
            register_metric(
                metric_name=f"{metric_class.condition_metric_name}.unexpected_values",
                metric_domain_keys=metric_class.condition_domain_keys,
                metric_value_keys=(*metric_class.condition_value_keys, "result_format"),
                execution_engine=PandasExecutionEngine,
                metric_class=metric_class,
                metric_provider=unexpected_values_when_asked,
                metric_fn_type=MetricFunctionTypes.VALUE,
            )


register()
