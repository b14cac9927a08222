"""Vectorised field comparisons for candidate pairs. Every function takes two aligned
Series (left and right side of the pairs) and returns a float array: 1 agree, 0 disagree,
NaN when either side is missing (the comparison then carries no weight)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein, Indel


def as_datetime(values: pd.Series) -> pd.Series:
    """datetime64 Series; Arrow date32 columns (from parquet) are cast in Arrow, which is
    ~50x faster than pd.to_datetime's per-value path."""
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_date(values.dtype.pyarrow_dtype):
        arr = pa.chunked_array(values.array._pa_array).cast(pa.timestamp("s"))
        return pd.Series(arr.to_pandas(), index=values.index).astype("datetime64[ns]")
    return pd.to_datetime(values, errors="coerce")


def _strings(values: pd.Series) -> pd.Series:
    """values as Arrow-backed strings: ==, isin and .str methods then run in Arrow C++
    (python-backed strings compare value by value); a no-op on Arrow-backed input."""
    return values.astype("string[pyarrow]")


def _both(left: pd.Series, right: pd.Series) -> np.ndarray:
    return (left.notna() & right.notna()).to_numpy()


def _result(agree: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, agree.astype(float), np.nan)


def exact(left: pd.Series, right: pd.Series) -> np.ndarray:
    present = _both(left, right)
    agree = (_strings(left) == _strings(right)).fillna(False).to_numpy(dtype=bool)
    return _result(agree, present)


def id_within_edits(left: pd.Series, right: pd.Series, max_edits: int) -> np.ndarray:
    """Same ID up to max_edits Damerau–Levenshtein edits (a transposition counts once)."""
    present = _both(left, right)
    dist = np.full(len(left), np.inf)
    if present.any():
        lv = left.to_numpy(dtype=object)[present].astype(str)
        rv = right.to_numpy(dtype=object)[present].astype(str)
        dist[present] = process.cpdist(list(lv), list(rv), scorer=DamerauLevenshtein.distance,
                                       workers=1)
    return _result(dist <= max_edits, present)


def similarity(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Normalised Indel similarity 0..1 per pair (NaN when either side is missing)."""
    present = _both(left, right)
    out = np.full(len(left), np.nan)
    if present.any():
        lv = left.to_numpy(dtype=object)[present].astype(str)
        rv = right.to_numpy(dtype=object)[present].astype(str)
        out[present] = process.cpdist(list(lv), list(rv), scorer=Indel.normalized_similarity)
    return out


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of datetime64 values by calendar casts (NaT compares unequal)."""
    years, months = days.astype("M8[Y]"), days.astype("M8[M]")
    return (years, (months - years.astype("M8[M]")).astype(np.int64),
            (days.astype("M8[D]") - months.astype("M8[D]")).astype(np.int64))


def birth_close(left: pd.Series, right: pd.Series) -> np.ndarray:
    """1 same birth date; NaN (no evidence) when day and month are swapped or one day apart
    (typing slips); 0 otherwise. Computed on numpy datetimes (pandas' .dt fields cost more)."""
    lv, rv = as_datetime(left).to_numpy(), as_datetime(right).to_numpy()
    present = ~np.isnat(lv) & ~np.isnat(rv)
    with np.errstate(invalid="ignore"):   # NaT: masked by present
        diff = np.abs(lv - rv) // np.timedelta64(1, "D")   # whole days apart
    (ly, lm, ld), (ry, rm, rd) = _ymd(lv), _ymd(rv)
    swapped = (ly == ry) & (lm == rd) & (ld == rm) & present
    exact_ = present & (diff == 0)
    near = present & ((diff == 1) | swapped) & ~exact_
    return np.where(near, np.nan, _result(exact_, present))


def region_agree(left: pd.Series, right: pd.Series) -> np.ndarray:
    """County codes compared; a province- or prefecture-level code (…00) is too coarse to
    count either way."""
    l, r = _strings(left), _strings(right)
    coarse = (l.str.endswith("00") | r.str.endswith("00")).fillna(False).to_numpy(dtype=bool)
    return np.where(coarse, np.nan, exact(l, r))


def sex_agree(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Only the determinate codes 1/2 are compared; 0 and 9 mean unknown."""
    known = {"1", "2"}
    l, r = _strings(left), _strings(right)
    l, r = l.where(l.isin(known)), r.where(r.isin(known))
    return exact(l, r)
