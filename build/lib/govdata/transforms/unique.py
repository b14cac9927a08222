"""Run expensive per-value work once per distinct value, then broadcast back to all rows.

Department data repeats a lot (the same ID number, name or code in many rows), so every
normaliser computes on the distinct values and takes the result back by position.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Arrow-backed strings: normalisers build their results with pyarrow compute kernels, and
# taking them back to all rows stays in C++.
STRING = pd.StringDtype("pyarrow")


def distinct(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques): uniques is an object array of the distinct non-null values with a
    trailing None, and codes point into it (nulls point to that last None)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if not isinstance(uniques, np.ndarray):
        uniques = uniques.to_numpy(dtype=object, na_value=None)
    uniques = np.append(uniques.astype(object, copy=False), None)
    codes = np.where(codes < 0, len(uniques) - 1, codes)
    return codes, uniques


_SAMPLE = 2000
_MOSTLY_DISTINCT = 0.8


def mostly_distinct(values: pd.Series) -> bool:
    """True when deduplicating would not pay: a spread sample is mostly distinct (ID or phone
    numbers within one source). Hashing every value only to find few repeats costs more
    than the vectorised work it saves."""
    n = len(values)
    if n < 4 * _SAMPLE:
        return False
    sample = values.iloc[:: n // _SAMPLE]
    return sample.nunique(dropna=False) >= _MOSTLY_DISTINCT * len(sample)


def _arrow_strings(values: pd.Series) -> pa.StringArray | None:
    """values as one Arrow string array (missing -> null), or None when they are not all
    strings (as_text then str()s them one by one)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        return arrow_text(values)  # already Arrow: no Python string per value
    try:
        arr = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return None
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def per_unique(values: pd.Series, compute: Callable[[np.ndarray], pd.DataFrame],
               dedupe: bool = False, arrow: bool = False) -> pd.DataFrame:
    """compute(uniques) -> one row per unique (positional); returned aligned to values.index.
    compute must accept None among its inputs (it gets the raw values when they are mostly
    distinct, unless dedupe: then always the distinct values, for computes whose cost is
    per value even when the value was seen before). arrow: compute only reads its input
    through as_text, so the raw values may be handed over as an Arrow string array."""
    if not dedupe and mostly_distinct(values):
        if arrow:
            arr = _arrow_strings(values)
            if arr is not None:
                table = compute(arr)
                table.index = values.index
                return table
        raw = values.to_numpy(dtype=object)
        raw[pd.isna(raw)] = None  # NaN / NA -> None, as distinct() hands them over
        table = compute(raw)
        table.index = values.index
        return table
    codes, uniques = distinct(values)
    table = compute(uniques)
    out = table.take(codes)
    out.index = values.index
    return out


def as_text(uniques: np.ndarray) -> pa.StringArray:
    """Distinct values as an Arrow string array (non-strings such as numbers are str()-ed)."""
    if isinstance(uniques, pa.Array):
        return uniques
    try:
        return pa.array(uniques, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                         else str(v) for v in uniques], type=pa.string())


def strings(values) -> pd.api.extensions.ExtensionArray:
    """Arrow array or object array (None -> NA) -> pandas string[pyarrow] array."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pd.arrays.ArrowStringArray(pa.chunked_array([values]) if isinstance(values, pa.Array) else values)
    return pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values, type=pa.string(), from_pandas=True)]))


def join_notes(n: int, flags: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """';'-joined codes per position for the flags that are set; None where none is."""
    notes = np.full(n, None, dtype=object)
    for code, flag in flags:
        for i in np.flatnonzero(flag):
            notes[i] = code if notes[i] is None else f"{notes[i]};{code}"
    return notes


def null_strings(index: pd.Index) -> pd.Series:
    """All-NA string[pyarrow] Series (built in Arrow: a Python list of None is slow)."""
    return pd.Series(strings(pa.nulls(len(index), pa.string())), index=index)


def label_where(flag: np.ndarray | pd.Series, label: str, index: pd.Index) -> pd.Series:
    """label where flag is true, NA elsewhere (string[pyarrow])."""
    mask = pa.array(np.asarray(flag, dtype=bool))
    return pd.Series(strings(pc.if_else(mask, pa.scalar(label), pa.scalar(None, pa.string()))), index=index)


def arrow_text(values: pd.Series) -> pa.StringArray:
    """Any Series of strings / None / NaN (object or string dtype) as one Arrow string array;
    non-strings are str()-ed."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        arr = values.array.__arrow_array__()
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        return arr.cast(pa.string())
    raw = values.to_numpy(dtype=object)
    try:  # from_pandas: None / NaN / NA are nulls, no separate isna pass
        arr = pa.array(raw, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return as_text(values.to_numpy(dtype=object, na_value=None))
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _arrow(values: pd.Series) -> pa.ChunkedArray:
    if values.dtype != STRING:
        values = values.astype(STRING)
    return values.array.__arrow_array__()


def coalesce(first: pd.Series, *others: pd.Series) -> pd.Series:
    """First non-NA string per row (aligned on first.index); Arrow's coalesce, because
    pandas fillna on Arrow strings goes through a slow element-wise setitem."""
    arrays = [_arrow(first)] + [_arrow(o.reindex(first.index)) for o in others]
    return pd.Series(strings(pc.coalesce(*arrays)), index=first.index)


def _offsets_data(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = text.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def any_byte(text: pa.Array, flags: np.ndarray) -> np.ndarray:
    """Per string: does any of its UTF-8 bytes have flags[byte] set (False for null)."""
    if not len(text):
        return np.zeros(0, dtype=bool)
    offsets, data = _offsets_data(text)
    positions = np.flatnonzero(flags[data[offsets[0]:offsets[-1]]]) + offsets[0]
    out = np.zeros(len(text), dtype=bool)
    out[np.searchsorted(offsets, positions, side="right") - 1] = True  # string holding each hit
    if text.null_count:
        out &= text.is_valid().to_numpy(zero_copy_only=False)
    return out


# UTF-8 lead bytes of characters NFKC may change: everything but ASCII and U+4000..U+9FFF
# (CJK Extension A and Unified Ideographs, lead bytes E4..E9: no decompositions, never
# composed with what follows). A string made only of those is its own NFKC form.
_NFKC_UNSAFE = np.zeros(256, dtype=bool)
_NFKC_UNSAFE[0xC0:] = True
_NFKC_UNSAFE[0xE4:0xEA] = False
# RE2's \s: [\t\n\f\r ]
ASCII_SPACE = np.zeros(256, dtype=bool)
ASCII_SPACE[[9, 10, 12, 13, 32]] = True


def nfkc(text: pa.Array) -> pa.Array:
    """pc.utf8_normalize(text, 'NFKC'), run only on the strings it could change."""
    unsafe = any_byte(text, _NFKC_UNSAFE)
    if not unsafe.any():
        return text
    if unsafe.all():
        return pc.utf8_normalize(text, "NFKC")
    mask = pa.array(unsafe)
    return pc.replace_with_mask(text, mask, pc.utf8_normalize(pc.filter(text, mask), "NFKC"))
