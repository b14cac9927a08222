"""Person facts from the ID number: who holds an ID (usable, not contradicting its holder), the
birth date and sex it encodes, and the numbers Excel damaged."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import compare
from .common import factorize, factorize_once, group_sizes, sorted_unique, text_rank
from .survivorship import _pack

STATUSES = {"valid", "repaired", "invalid", "missing", "other_document"}  # other_document: no key (docs/CONTRACTS.md)
USABLE = ["valid", "repaired"]
PINYIN_VARIANT_SIMILARITY = 0.8   # Indel similarity above which two pinyin spell one name


def _slice(values: pd.Series, start: int, stop: int) -> pd.Series:
    """values.str[start:stop] computed in Arrow (pandas' Arrow-string slicing is per value)."""
    arr = pa.chunked_array(values.astype("string[pyarrow]").array._pa_array)
    return pd.Series(pd.arrays.ArrowStringArray(pc.utf8_slice_codeunits(arr, start, stop)),
                     index=values.index)


def _per_unique(values: pd.Series, fn) -> pd.Series:
    """fn applied once per distinct value (NULL stays NULL), then taken back per row."""
    codes, uniques = pd.factorize(values)
    if not len(uniques):   # all NULL
        return fn(pd.Series([None] * len(values), index=values.index, dtype=object))
    done = fn(pd.Series(np.asarray(uniques, dtype=object)))
    out = done.take(np.where(codes >= 0, codes, 0)).reset_index(drop=True)
    out.index = values.index
    return out.where(pd.Series(codes >= 0, index=values.index))


def truncated_twins(ids: pd.Series, usable: np.ndarray, sources: pd.Series) -> np.ndarray:
    """Usable ID numbers ending in 000, held by one source only, whose first 15 digits another
    usable ID number starts with: Excel kept 15 significant digits and the zeroed number's check
    digit happened to fit (1 in 11), so it passed as valid. Such a number is no key; its record
    links by the rest. A number several departments hold is the person's own."""
    text = ids.astype("string[pyarrow]")
    suspect = usable & text.str.endswith("000").fillna(False).to_numpy(dtype=bool)
    if not suspect.any():
        return suspect
    held = pd.Series(usable, index=ids.index)
    id_code, _ = factorize(text.where(held))
    prefix_code, _ = factorize(_slice(text, 0, 15).where(held))
    rows = np.flatnonzero(usable)
    ids_per_prefix = _distinct_per(prefix_code, id_code, rows)
    sources_per_id = _distinct_per(id_code, factorize(sources)[0], rows)
    at = np.maximum(id_code, 0)
    return suspect & (ids_per_prefix[np.maximum(prefix_code, 0)] > 1) & (sources_per_id[at] == 1)


def _distinct_per(group: np.ndarray, value: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Number of distinct values per group code, over the given rows."""
    width = int(value.max(initial=0)) + 1
    distinct = sorted_unique(group[rows] * width + value[rows])
    return np.bincount(distinct // width, minlength=int(group.max(initial=0)) + 1)


def id_facts(df: pd.DataFrame, usable: np.ndarray | None = None) -> pd.DataFrame:
    """Birth date and sex embedded in usable ID numbers (GB 11643: digits 7-14, 17th odd=male).
    usable: which ID numbers are keys, when already judged over more records (a truncated
    twin is told by the other holders of its first 15 digits)."""
    if usable is not None:
        return _facts(df, pd.Series(np.asarray(usable, dtype=bool), index=df.index))
    bad = ~df["id_number_status"].isin(STATUSES) & df["id_number_status"].notna()
    if bad.any():
        raise ValueError(f"person records: column id_number_status has unknown value "
                         f"{df.loc[bad, 'id_number_status'].iloc[0]!r} (expected "
                         f"{', '.join(sorted(STATUSES))})")
    usable = df["id_number_status"].isin(USABLE) & df["id_number"].notna()
    usable &= ~truncated_twins(df["id_number"], usable.to_numpy(dtype=bool), df["source_system"])
    return _facts(df, usable)


def _facts(df: pd.DataFrame, usable: pd.Series) -> pd.DataFrame:
    """id_facts given which ID numbers are usable."""
    ids = df["id_number"].astype("string[pyarrow]").where(usable)
    id_birth = _per_unique(_slice(ids, 6, 14),
                           lambda u: pd.to_datetime(u, format="%Y%m%d", errors="coerce"))
    seventeenth = _per_unique(_slice(ids, 16, 17),
                              lambda u: pd.to_numeric(u, errors="coerce").astype("float64"))
    seventeenth = seventeenth.astype("float64")
    # "1"/"2" taken from a two-value Arrow array (NULL without a 17th digit)
    id_sex = pa.array(["1", "2"], type=pa.large_string()).take(
        pa.array(np.where(seventeenth % 2 == 1, 0, 1), mask=seventeenth.isna().to_numpy()))
    id_sex = pd.Series(pd.arrays.ArrowStringArray(id_sex), index=df.index)
    return pd.DataFrame({"usable": usable.to_numpy(), "id_birth": id_birth, "id_sex": id_sex,
                         "birth": compare.as_datetime(df["birth_date"])},
                        index=df.index)


def holder_conflicts(df: pd.DataFrame, facts: pd.DataFrame, trust: np.ndarray,
                     codes: dict | None = None) -> np.ndarray:
    """Records whose own birth date / sex contradicts their ID, or whose name pinyin differs
    from the pinyin the ID's most trusted consistent record carries (e.g. a child's health
    record filed under a guardian's ID). codes: factorize cache shared with later steps."""
    sex = df["sex"].astype("string[pyarrow]")
    birth_bad = (facts["birth"].notna() & facts["id_birth"].notna()
                 & (facts["birth"] != facts["id_birth"]))
    sex_bad = sex.isin(["1", "2"]) & facts["id_sex"].notna() & (sex != facts["id_sex"])
    conflict = (facts["usable"] & (birth_bad | sex_bad)).to_numpy(dtype=bool)
    usable = facts["usable"].to_numpy()
    id_code = factorize_once(codes, "id_number", df["id_number"])[0]
    py_code, py_uniques = factorize_once(codes, "name_pinyin", df["name_pinyin"])
    ok = np.flatnonzero(usable & ~conflict & (py_code >= 0))
    holder = np.full(int(id_code.max()) + 2 if len(id_code) else 1, -1, dtype=np.int64)
    if len(ok):
        i, p = id_code[ok], py_code[ok]
        counts = group_sizes(i * (int(py_code.max()) + 1) + p)
        # holder's pinyin: most trusted source first, then the most frequent, then the first in
        # text order (not in the rows' order: a partition or a scope judges an ID as the whole
        # run does); the keys packed into one integer sort
        top = int(counts.max())
        packed = _pack([(i, int(id_code.max()) + 1), (trust[ok], int(trust.max()) + 1),
                        (top - counts, top), (text_rank(py_uniques)[p], int(py_code.max()) + 1)])
        order = np.lexsort(packed[::-1]) if len(packed) > 1 else \
            np.argsort(packed[0], kind="stable")
        first = np.ones(len(order), dtype=bool)
        first[1:] = i[order][1:] != i[order][:-1]
        holder[i[order][first]] = p[order][first]
    expected = np.where(id_code >= 0, holder[id_code], -1)
    pinyin_bad = usable & (py_code >= 0) & (expected >= 0) & (py_code != expected)
    if pinyin_bad.any():   # spelling variants (abudu / abudou) are the holder; other names are not
        uniques = np.asarray(py_uniques, dtype=object)
        rows = np.flatnonzero(pinyin_bad)
        own = pd.Series(uniques[py_code[rows]])
        held = pd.Series(uniques[expected[rows]])
        pinyin_bad[rows] = compare.similarity(own, held) < PINYIN_VARIANT_SIMILARITY
    return conflict | pinyin_bad


def excel_damaged(df: pd.DataFrame, usable: np.ndarray) -> np.ndarray:
    """Records whose ID number Excel damaged: the normaliser's notes excel_scientific and
    excel_truncated, and the truncated numbers that passed as valid (truncated_twins)."""
    note = df["id_number_note"].astype("string[pyarrow]")
    noted = note.str.contains("excel_", regex=False).fillna(False).to_numpy(dtype=bool)
    return noted | (df["id_number_status"].isin(USABLE).fillna(False).to_numpy(dtype=bool) & ~usable)
