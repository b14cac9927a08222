"""GX's value-set and range checks on the whole column, missing values passing.

GX's pandas engine drops a column's missing values before each column check's condition
(``df[df[column].notnull()]``): a copy of the whole batch per check, most of the cost of a check
on codes or dates. The providers here are asked for the condition on the whole column
(filter_column_isnull off, as GX's own not-null check is) and give GX's answer for every present
value and True for a missing one. GX counts the missing values apart (not-null check,
missing_count) and a check's unexpected count is the number of rows whose condition is False,
so every count and percentage stays GX's. The regex check does the same in regex_metric.py.

Importing this module registers the providers for the pandas engine in place of GX's (GX
keeps one provider per metric and engine); SQL and Spark keep theirs.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.column_map_metrics import ColumnValuesBetween, ColumnValuesInSet
from great_expectations.expectations.metrics.map_metric_provider import column_condition_partial
from great_expectations.expectations.registry import _registered_metrics

# GX's own conditions, undecorated (its decorators keep them as __wrapped__, functools.wraps)
_GX_IN_SET = inspect.unwrap(ColumnValuesInSet.__dict__["_pandas"])
_GX_BETWEEN = inspect.unwrap(ColumnValuesBetween.__dict__["_pandas"])


def compares_missing_as_false(column: pd.Series) -> bool:
    """Whether GX's range check on this dtype is a vectorised comparison, which answers False
    for NaN and NaT without raising (float, int, datetime64[ns], tz-aware datetimes)."""
    return (column.dtype in (int, float) or isinstance(column.dtype, pd.DatetimeTZDtype)
            or pd.api.types.is_datetime64_ns_dtype(column.dtype))


def on_present_values(column: pd.Series, condition: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`condition` computed on the present values only, as GX does, True where a value is missing."""
    present = column.notna().to_numpy()
    if present.all():
        return condition(column)
    met = np.ones(len(column), dtype=np.bool_)
    met[present] = np.asarray(condition(column[present]), dtype=np.bool_)
    return pd.Series(met, index=column.index)


def passing_missing(condition, cls, column: pd.Series, takes_missing: bool, **kwargs) -> pd.Series:
    """`condition` (GX's, on present values) for each row, True where the value is missing.
    On the whole column when the condition takes missing values without raising
    (`takes_missing`: GX's isin, vectorised comparisons); otherwise on the present values only."""
    if not takes_missing:
        return on_present_values(column, lambda present: condition(cls, present, **kwargs))
    met = np.asarray(condition(cls, column, **kwargs), dtype=np.bool_)
    return pd.Series(met | column.isna().to_numpy(), index=column.index)


@contextlib.contextmanager
def quiet_registry() -> Iterator[None]:
    """GX's registry warns for every provider replaced, which is the point here: quiet meanwhile."""
    registry_log = logging.getLogger("great_expectations.expectations.registry")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        registry_log.setLevel(level)


def bind_summaries(metric_class) -> None:
    """GX registers a condition's summary metrics (its unexpected count, values, rows, index
    list) under the class that first declares the condition, and a subclass declaring it again
    leaves them there: they would drop the missing values the subclass keeps (the parent's
    filter_column_isnull) and index a shorter frame with the whole column's condition. Bound
    here to `metric_class` for the pandas engine, with GX's functions."""
    prefix = f"{metric_class.condition_metric_name}.unexpected_"
    for name, definition in _registered_metrics.items():
        providers = definition.get("providers", {})
        if name.startswith(prefix) and PandasExecutionEngine.__name__ in providers:
            providers[PandasExecutionEngine.__name__] = (metric_class, providers[PandasExecutionEngine.__name__][1])


with quiet_registry():
    class WholeColumnInSet(ColumnValuesInSet):
        """column_values.in_set for pandas: see the module docstring."""

        filter_column_isnull = False

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column, value_set, **kwargs):
            return passing_missing(_GX_IN_SET, cls, column, True, value_set=value_set, **kwargs)

    class WholeColumnBetween(ColumnValuesBetween):
        """column_values.between for pandas: see the module docstring."""

        filter_column_isnull = False

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column, min_value=None, max_value=None, strict_min=None, strict_max=None, **kwargs):
            return passing_missing(_GX_BETWEEN, cls, column, compares_missing_as_false(column), min_value=min_value,
                                   max_value=max_value, strict_min=strict_min, strict_max=strict_max, **kwargs)
bind_summaries(WholeColumnInSet)
bind_summaries(WholeColumnBetween)
