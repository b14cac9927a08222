"""GX's regex check on coded and Arrow-backed text, without a Python call per row.

GX 1.x's pandas metric `column_values.match_regex` is `column.astype(str).str.contains(regex)`:
a Python str per row, then Python `re.search` row by row (~1 s per million rows: at scale,
most of the gate). This provider gives the same boolean per row, so the same unexpected
counts, percentages and success, more cheaply:

- a categorical column (text whose values repeat, run.as_checked_text): `re.search` once per distinct
  value, as str (what astype(str) gives), spread to the rows by their codes;
- an Arrow-backed text column (identifiers, phone numbers: nearly every value distinct): Arrow's
  RE2 on the Arrow data, with the pattern rewritten from Python's own parse of it, only when
  every construct in it means the same in both engines (re2_equivalent); otherwise GX's way;
- any other column (object, numbers): GX's own code, unchanged.

It is asked for on the whole column, missing values passing, as whole_column.py's value-set
and range conditions are: GX no longer copies the batch to drop them first.

Importing this module registers the provider for the pandas engine in place of GX's (GX's
registry keeps one provider per metric and engine); SQL and Spark keep theirs.
"""
from __future__ import annotations

import re
import re._constants as sre
import re._parser as sre_parse
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.column_map_metrics.column_values_match_regex import (
    ColumnValuesMatchRegex,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    column_condition_partial,
)

from govdata.expectations.whole_column import bind_summaries, on_present_values, quiet_registry

RE2_MAX_REPEAT = 1000   # RE2 rejects larger counted repetitions


def is_arrow_text(values: pd.Series | pd.Index) -> bool:
    """string[pyarrow] or an ArrowDtype string column: values are str by construction."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage == "pyarrow"
    return isinstance(dtype, pd.ArrowDtype) and (pa.types.is_string(dtype.pyarrow_dtype)
                                                  or pa.types.is_large_string(dtype.pyarrow_dtype))


@lru_cache(maxsize=256)
def _compiled(regex: str) -> re.Pattern:
    return re.compile(regex)   # pandas' str.contains compiles with flags=0 too


def distinct_matches(distinct: list[str], regex: str) -> np.ndarray:
    """Whether each distinct value contains a match of `regex`."""
    search = _compiled(regex).search
    return np.fromiter((search(text) is not None for text in distinct), dtype=np.bool_, count=len(distinct))


class _NotEquivalent(Exception):
    """A construct whose meaning differs between Python `re` and RE2 (or that RE2 lacks)."""


@lru_cache(maxsize=256)
def re2_equivalent(regex: str) -> str | None:
    """An RE2 pattern that `re.search`es exactly like `regex` on every string, or None.

    Built from Python's parse tree, not by editing the text: literals and class members become
    code-point escapes, `.` becomes [^\\n], `^` \\A, and `$` (end, or before a final newline)
    \\n?\\z where nothing follows it. Anything else that could differ (\\d \\w \\s \\b, which are
    Unicode-aware in Python and ASCII in RE2; flags; look-arounds, back-references, possessive
    or atomic groups; `$` mid-pattern; counts above RE2's limit) gives None."""
    try:
        parsed = sre_parse.parse(regex)
        if parsed.state.flags & ~sre.SRE_FLAG_UNICODE:
            raise _NotEquivalent("flags")
        return _sequence(list(parsed), tail=True)
    except (_NotEquivalent, re.error, RecursionError):
        return None


def _sequence(nodes: list, tail: bool) -> str:
    """Nodes in order; only the last stands where nothing follows it (when the sequence does)."""
    return "".join(_node(op, av, tail and i == len(nodes) - 1) for i, (op, av) in enumerate(nodes))


def _char(code: int) -> str:
    return f"\\x{{{code:x}}}"


def _node(op, av, tail: bool) -> str:
    if op is sre.LITERAL:
        return _char(av)
    if op is sre.NOT_LITERAL:
        return f"[^{_char(av)}]"
    if op is sre.ANY:
        return "[^\\n]"   # Python's `.` without DOTALL: anything but a newline
    if op is sre.IN:
        return _char_class(av)
    if op is sre.BRANCH:
        return "(?:" + "|".join(_sequence(list(alt), tail) for alt in av[1]) + ")"
    if op is sre.SUBPATTERN:
        _group, add_flags, del_flags, nodes = av
        if add_flags or del_flags:
            raise _NotEquivalent("scoped flags")
        return "(?:" + _sequence(list(nodes), tail) + ")"
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, nodes = av
        if low > RE2_MAX_REPEAT or (high != sre.MAXREPEAT and high > RE2_MAX_REPEAT):
            raise _NotEquivalent("count")
        count = f"{{{low},}}" if high == sre.MAXREPEAT else f"{{{low},{high}}}"
        return "(?:" + _sequence(list(nodes), tail=False) + ")" + count + ("?" if op is sre.MIN_REPEAT else "")
    if op is sre.AT:
        if av in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            return "\\A"
        if av is sre.AT_END_STRING:
            return "\\z"
        if av is sre.AT_END and tail:
            return "\\n?\\z"
    raise _NotEquivalent(str(op))


def _char_class(items: list) -> str:
    negate = bool(items) and items[0][0] is sre.NEGATE
    members = []
    for op, av in items[1:] if negate else items:
        if op is sre.LITERAL:
            members.append(_char(av))
        elif op is sre.RANGE:
            members.append(f"{_char(av[0])}-{_char(av[1])}")
        else:   # \d \w \s and friends inside a class
            raise _NotEquivalent(str(op))
    return "[" + ("^" if negate else "") + "".join(members) + "]"


def matches_with_re2(values: pd.Series, pattern: str) -> np.ndarray:
    """Arrow's RE2 search over an Arrow text column; a missing value counts as a match."""
    arrow = pa.chunked_array(values.array.__arrow_array__())
    found = pc.match_substring_regex(arrow, pattern=pattern)
    if found.null_count:
        found = pc.fill_null(found, True)
    return found.to_numpy().astype(np.bool_, copy=False)


def match_regex_condition(column: pd.Series, regex: str) -> pd.Series:
    """Per row, whether `regex` finds a match, True for a missing value: GX's
    `column.astype(str).str.contains(regex)` on the present values, computed per distinct value
    (categorical) or by RE2 (Arrow text) when that is exact. GX filters a column's nulls out
    before its own condition, copying the batch for every check; this condition is asked for on
    the whole column instead (CodedTextMatchRegex.filter_column_isnull) and passes the missing
    values, which GX counts apart (expect_column_values_to_not_be_null), so the unexpected
    counts stay GX's."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        hits = np.append(distinct_matches(column.cat.categories.astype(str).tolist(), regex), True)
        return pd.Series(hits[column.cat.codes.to_numpy()], index=column.index)   # code -1 (missing): the True at the end
    if is_arrow_text(column) and (pattern := re2_equivalent(regex)) is not None:
        try:
            return pd.Series(matches_with_re2(column, pattern), index=column.index)
        except pa.ArrowInvalid:   # e.g. a pattern beyond RE2's size budget: GX's way
            pass
    return on_present_values(column, lambda present: present.astype(str).str.contains(regex))   # GX 1.x's own


# Defining the subclass registers it; GX warns that it overwrites its provider, which is the point.
with quiet_registry():
    class CodedTextMatchRegex(ColumnValuesMatchRegex):
        """column_values.match_regex for pandas: see the module docstring."""

        filter_column_isnull = False   # nulls pass match_regex_condition; GX's metrics see the whole column

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column, regex, **kwargs):
            return match_regex_condition(column, regex)
bind_summaries(CodedTextMatchRegex)
