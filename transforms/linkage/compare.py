"""Vectorised field comparisons for candidate pairs. Every function takes two aligned
Series (left and right side of the pairs) and returns a float array: 1 agree, 0 disagree,
NaN when either side is missing (the comparison then carries no weight).

The sides may be text or two Categoricals over the same values (persons.compare_pairs takes
the pairs' rows as codes): coded sides compare as integers, and text tests run once per
distinct value. At 5M persons a partition compares ~2M pairs, and taking and comparing them as
strings was most of its time."""
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


def _coded(left: pd.Series, right: pd.Series) -> bool:
    """Whether both sides are Categoricals over the same values (their codes then compare)."""
    return isinstance(left.dtype, pd.CategoricalDtype) and left.dtype == right.dtype


def _sides(left: pd.Series, right: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Both sides as they compare cheapest: kept when coded alike, else Arrow-backed strings."""
    return (left, right) if _coded(left, right) else (_strings(left), _strings(right))


def _text_test(values: pd.Series, test) -> np.ndarray:
    """test (a function of a text Series giving booleans) per value, False where missing; on a
    Categorical once per distinct value."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        per_value = test(pd.Series(values.cat.categories.astype("string[pyarrow]")))
        at = np.append(per_value.fillna(False).to_numpy(dtype=bool), False)   # code -1 -> False
        return at[values.cat.codes.to_numpy()]
    return test(values).fillna(False).to_numpy(dtype=bool)


def _objects(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """The values at `rows` as Python objects (None when missing), converting only those rows."""
    return values.iloc[rows].to_numpy(dtype=object, na_value=None)


def _both(left: pd.Series, right: pd.Series) -> np.ndarray:
    return (left.notna() & right.notna()).to_numpy()


def _result(agree: np.ndarray, present: np.ndarray) -> np.ndarray:
    return np.where(present, agree.astype(float), np.nan)


def exact(left: pd.Series, right: pd.Series) -> np.ndarray:
    if _coded(left, right):
        lc, rc = left.cat.codes.to_numpy(), right.cat.codes.to_numpy()
        return _result(lc == rc, (lc >= 0) & (rc >= 0))
    present = _both(left, right)
    agree = (_strings(left) == _strings(right)).fillna(False).to_numpy(dtype=bool)
    return _result(agree, present)


def agreement_only(left: pd.Series, right: pd.Series) -> np.ndarray:
    """1 equal; NaN otherwise: a difference is no evidence against. Other documents (type +
    number: passports and permits are reissued under new numbers), addresses (people move),
    latin name keys (the pinyin comparison already counts a different name)."""
    agree = exact(left, right)
    return np.where(agree == 1, 1.0, np.nan)




def id_within_edits(left: pd.Series, right: pd.Series, max_edits: int) -> np.ndarray:
    """Same ID up to max_edits Damerau–Levenshtein edits (a transposition counts once); the
    distance is only computed for the unequal pairs."""
    present = _both(left, right)
    equal = exact(left, right) == 1
    dist = np.where(equal, 0.0, np.inf)
    todo = np.flatnonzero(present & ~equal)
    if len(todo):
        lv, rv = _objects(left, todo).astype(str), _objects(right, todo).astype(str)
        dist[todo] = process.cpdist(list(lv), list(rv), scorer=DamerauLevenshtein.distance, workers=1)
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
    l, r = _sides(left, right)
    ends_00 = lambda v: v.str.endswith("00")   # noqa: E731
    coarse = _text_test(l, ends_00) | _text_test(r, ends_00)
    return np.where(coarse, np.nan, exact(l, r))


def sex_agree(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Only the determinate codes 1/2 are compared; 0 and 9 mean unknown."""
    l, r = _sides(left, right)
    known = (l.isin(["1", "2"]) & r.isin(["1", "2"])).to_numpy()
    return np.where(known, exact(l, r), np.nan)


WEAK = 0.5   # weak agreement: a rare character's stand-in (王* / 王hong / a homophone) vs the full name


def _has_stand_in(names: pd.Series) -> pd.Series:
    """A placeholder (*), latin letters, or a character outside the common Han block."""
    outside_common_han = ~names.str.fullmatch("[\u4e00-\u9fa5]*")   # the characters themselves: RE2 has no \u
    return names.str.contains(r"[*A-Za-z]", regex=True) | outside_common_han


def name_agree(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Person names: 1 equal; WEAK (0.5) when they agree once a rare character's stand-in (a
    placeholder, its pinyin, a common homophone) is taken as the character; 0 otherwise; NaN
    when either is missing. Computed per distinct pair of the unequal ones (names.name_agreement)."""
    from govdata.transforms.names import name_agreement

    l, r = _sides(left, right)
    out = exact(l, r)
    todo = np.flatnonzero(out == 0)
    if len(todo):
        stand_in = _text_test(l.iloc[todo], _has_stand_in) | _text_test(r.iloc[todo], _has_stand_in)
        if stand_in.any():
            at = todo[stand_in]
            levels = [name_agreement(a, b) for a, b in zip(_objects(l, at), _objects(r, at))]
            out[at] = levels
    return out


def _rotation(a: str, b: str) -> bool:
    return len(a) == len(b) and b in a + a


def name_order_agree(left_pinyin: pd.Series, right_pinyin: pd.Series,
                     left_latin_key: pd.Series, right_latin_key: pd.Series) -> np.ndarray:
    """Cross-script name keys (name_pinyin) with token-order swaps as agreement: 1 when the
    pinyin are equal, when both latin names have the same order-free key (SMITH JOHN / John
    Smith) or when one side is a latin name whose pinyin is a rotation of the other's (SAN ZHANG
    / 张三 -> sanzhang / zhangsan); 0 otherwise; NaN when either pinyin is missing or when only
    one side is a latin name and they differ (another romanisation)."""
    lp, rp = _sides(left_pinyin, right_pinyin)
    out = exact(lp, rp)
    lk, rk = _sides(left_latin_key, right_latin_key)
    todo = (out == 0) & (lk.notna() | rk.notna()).to_numpy()
    if todo.any():
        same_key = exact(lk, rk) == 1
        out[todo & same_key] = 1.0
        rest = np.flatnonzero(todo & ~same_key)
        if len(rest):
            a, b = _objects(lp, rest), _objects(rp, rest)
            out[rest] = [float(_rotation(x, y)) for x, y in zip(a, b)]
        # a latin name against a Chinese one: Cantonese, Wade-Giles or Hokkien spellings (CHEUNG,
        # CHAO, WONG) are not pinyin, so a different spelling is no evidence against
        cross = todo & (lk.isna() != rk.isna()).to_numpy()
        out[cross & (out == 0)] = np.nan
    return out


def pinyin_or_latin_agree(left_pinyin: pd.Series, right_pinyin: pd.Series, left_latin_key: pd.Series,
                          right_latin_key: pd.Series, left_joined: pd.Series, right_joined: pd.Series) -> np.ndarray:
    """name_order_agree, and 1 where the latin keys with hyphenated parts joined are equal
    (SEO-YEON LEE / LEE SEOYEON)."""
    return np.fmax(name_order_agree(left_pinyin, right_pinyin, left_latin_key, right_latin_key),
                   agreement_only(left_joined, right_joined))


def latin_agree(left_key: pd.Series, right_key: pd.Series, left_joined: pd.Series, right_joined: pd.Series) -> np.ndarray:
    """Latin names: 1 when the order-free keys agree, hyphenated parts kept or joined; NaN
    otherwise (the pinyin comparison already counts a different spelling)."""
    return np.fmax(agreement_only(left_key, right_key), agreement_only(left_joined, right_joined))


# The comparators linkage.yaml may name: name -> (function of the pairs' (left, right) column
# pairs and the LinkConfig, number of columns read).
COMPARATORS = {
    "exact": (lambda sides, cfg: exact(*sides[0]), 1),
    "agreement_only": (lambda sides, cfg: agreement_only(*sides[0]), 1),
    "id_within_edits": (lambda sides, cfg: id_within_edits(*sides[0], cfg.id_max_edits), 1),
    "name_agree": (lambda sides, cfg: name_agree(*sides[0]), 1),
    "name_order_agree": (lambda sides, cfg: name_order_agree(*sides[0], *sides[1]), 2),
    "pinyin_or_latin_agree": (lambda sides, cfg: pinyin_or_latin_agree(*sides[0], *sides[1], *sides[2]), 3),
    "latin_agree": (lambda sides, cfg: latin_agree(*sides[0], *sides[1]), 2),
    "birth_close": (lambda sides, cfg: birth_close(*sides[0]), 1),
    "sex_agree": (lambda sides, cfg: sex_agree(*sides[0]), 1),
    "region_agree": (lambda sides, cfg: region_agree(*sides[0]), 1),
}
