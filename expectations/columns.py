"""The columns a suite checks, in the dtypes GX validates fastest: text as Arrow strings (as
categories when values repeat), dates as datetime64[ns], integers as float64."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.expectations.regex_metric import is_arrow_text

def prepare_columns(frame: pd.DataFrame, types: dict[str, str], source: str) -> pd.DataFrame:
    """`frame` cut to the columns in `types` (column -> element type): dates as datetime64[ns],
    integers as float64 (GX's range check vectorises those), text as as_checked_text says."""
    missing = [c for c in types if c not in frame.columns]
    if missing:
        raise ValueError(f"standardised frame of source {source} lacks columns {missing}")
    prepared = {}   # column by column: a frame[list] would copy every column first
    for column, kind_of_value in types.items():
        if kind_of_value in ("date", "timestamp"):
            prepared[column] = as_datetime_ns(frame[column], source)
        elif kind_of_value == "integer":
            prepared[column] = as_float(frame[column], source)
        else:
            prepared[column] = as_checked_text(frame[column])
    return pd.DataFrame(prepared, index=frame.index, columns=list(types), copy=False)


# Rows looked at to tell codes from identifiers. Arrow's count_distinct grows faster than the
# rows once its hash table leaves the cache: on ID numbers 16,384 rows take ~1 ms, 65,536 take
# 8-30 ms, asked twice per text column and source.
CARDINALITY_SAMPLE = 1 << 14


def checked_text_frame(path: str, columns: list[str]) -> pd.DataFrame:
    """A lake file's `columns` as pandas, text in the dtype as_checked_text would give it and
    dates as datetime64: text whose values repeat (told from the file's first row group) is
    read as the Parquet file's own dictionaries, which pandas takes as a Categorical; the rest
    as Arrow-backed strings. Reading strings and coding them afterwards cost 3.4 s for a 5M-row
    source's eleven checked columns, this 1.2 s."""
    from govdata.lake import first_row_group, is_text_type, read_arrow

    sample = first_row_group(path, columns)
    repeating = [c for c in sample.column_names
                 if is_text_type(sample.schema.field(c).type) and not mostly_distinct(sample[c])]
    # without the pandas metadata: integers with nulls come as float64 (what as_float makes of
    # them) instead of a masked Int64 converted again
    return read_arrow(path, columns, dictionary=repeating).to_pandas(types_mapper=_checked_dtype, ignore_metadata=True)


def _checked_dtype(typ: pa.DataType):
    """Text as Arrow-backed strings, dates and tz-naive timestamps as Arrow temporals (which
    as_datetime_ns clips and converts in Arrow); anything else as pandas converts it."""
    from govdata.lake import _arrow_string_dtype

    if pa.types.is_date(typ) or pa.types.is_timestamp(typ) and typ.tz is None:
        return pd.ArrowDtype(typ)
    return _arrow_string_dtype(typ)


def as_checked_text(values: pd.Series) -> pd.Series:
    """Text in the dtype GX checks cheapest, with the same results: a categorical when values
    repeat (codes, names), string[pyarrow] when nearly all differ (ID and phone numbers).

    GX filters the whole batch on each expectation's non-null rows, copying every column per
    expectation: integer codes copy ~10x faster than Arrow strings or a Python object per row,
    and set and regex checks then look at each distinct value once (regex_metric.py). For
    mostly-distinct values coding costs more than it saves: they stay Arrow text, which regex
    checks search with RE2 when the pattern means the same there. A column holding anything
    but str (and nulls) stays as it is, and GX checks it as before."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values
    arrow = arrow_text(values)
    if arrow is None:
        return values
    if mostly_distinct(arrow):
        return values if is_arrow_text(values) else pd.Series(
            pd.arrays.ArrowStringArray(arrow), index=values.index, name=values.name)
    encoded = arrow.dictionary_encode().combine_chunks()   # one dictionary for all chunks
    codes = pc.fill_null(encoded.indices, -1).to_numpy()
    # str categories, not Arrow ones: pandas would turn Arrow categories into Python objects
    # anyway (uniqueness check, astype), once per use instead of once.
    categories = pd.Index(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    coded = pd.Categorical.from_codes(codes, categories=categories, validate=False)
    return pd.Series(coded, index=values.index, name=values.name)


def arrow_text(values: pd.Series) -> pa.ChunkedArray | None:
    """A text column's values as Arrow large_string; None for a column holding anything but
    str (and nulls)."""
    if is_arrow_text(values):
        return pa.chunked_array(values.array.__arrow_array__()).cast(pa.large_string())
    if isinstance(values.dtype, pd.StringDtype) or (
            values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")):
        return pa.chunked_array([pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)])
    return None


def mostly_distinct(arrow: pa.ChunkedArray) -> bool:
    """Whether more than half the non-null values among the first rows differ from each other."""
    sample = arrow.slice(0, CARDINALITY_SAMPLE)
    present = len(sample) - sample.null_count
    return present > 0 and pc.count_distinct(sample).as_py() > present // 2


# datetime64[ns] covers 1677-09-22..2262-04-11. Values beyond are clipped to these edges,
# which still lie outside every configured range, so they fail instead of vanishing.
NS_FLOOR, NS_CEILING = pd.Timestamp("1678-01-01"), pd.Timestamp("2261-12-31")


def as_datetime_ns(values: pd.Series, source: str) -> pd.Series:
    """date/datetime values -> datetime64[ns]; GX only vectorises range checks on that
    dtype (object dates go through a per-row Python map)."""
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_temporal(values.dtype.pyarrow_dtype):
        clipped = arrow_clipped_ns(values)
        if clipped is not None:
            return clipped
        values = arrow_temporal_as_numpy(values)
    if pd.api.types.is_datetime64_ns_dtype(values.dtype) or isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    try:
        wide = values if pd.api.types.is_datetime64_any_dtype(values.dtype) else values.astype("datetime64[s]")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"source {source}: column {values.name!r} does not hold dates ({exc})") from exc
    return wide.clip(lower=NS_FLOOR, upper=NS_CEILING).astype("datetime64[ns]")


_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def arrow_clipped_ns(values: pd.Series) -> pd.Series | None:
    """An ArrowDtype date or tz-naive timestamp column as datetime64[ns], clipped to
    [NS_FLOOR, NS_CEILING] in Arrow on the integer ticks (pandas' clip and astype of 5M dates
    took 0.5 s, this 0.07 s); None for any other type."""
    arrow = pa.chunked_array(values.array.__arrow_array__())
    if pa.types.is_date(arrow.type):
        arrow = arrow.cast(pa.timestamp("s"))
    if not pa.types.is_timestamp(arrow.type) or arrow.type.tz is not None:
        return None
    per = _NS_PER_UNIT[arrow.type.unit]
    ticks = arrow.cast(pa.int64())
    low, high = -(-NS_FLOOR.value // per), NS_CEILING.value // per   # the edges, in this unit
    ticks = pc.max_element_wise(pc.min_element_wise(ticks, high, skip_nulls=False), low, skip_nulls=False)
    ns = pc.multiply(ticks, per).cast(pa.timestamp("ns"))
    return pd.Series(ns.to_numpy(), index=values.index, name=values.name, copy=False)   # NULL -> NaT


def arrow_temporal_as_numpy(values: pd.Series) -> pd.Series:
    """An ArrowDtype date/timestamp column as numpy datetime64 of the same instants, converted
    by Arrow (pandas' astype walks such a column one Python object per row). Dates become
    midnight timestamps in seconds, which as_datetime_ns clips and widens as before."""
    arrow = pa.chunked_array(values.array.__arrow_array__())
    if pa.types.is_date(arrow.type):
        arrow = arrow.cast(pa.timestamp("s"))
    return arrow.to_pandas().set_axis(values.index).rename(values.name)


def as_float(values: pd.Series, source: str) -> pd.Series:
    """Nullable integers -> float64 (NA -> NaN, which GX counts as missing)."""
    try:
        return pd.to_numeric(values, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"source {source}: column {values.name!r} does not hold integers ({exc})") from exc
