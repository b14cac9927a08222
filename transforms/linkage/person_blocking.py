"""Person blocking: the comparison view of every record, the blocking keys the stewards declare
in standards/linkage.yaml (settings.py) and the candidate pairs they produce."""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.names import latin_name_keys

from .common import distinct_of_sorted, factorize, factorize_once, group_sizes, sorted_unique
from .config import LinkConfig
from .person_facts import _slice, excel_damaged
from .shared_values import COLUMNS as SHARED_COLUMNS
from .shared_values import SHARED, persons_per_value

INITIALS = "abcdefghijklmnopqrstuvwxyz0123456789"   # a pinyin starts with one of these


def document_keys(df: pd.DataFrame) -> pd.Series:
    """Document type + number of records carrying another document (passport 414, travel
    permits 511/516...; the normaliser keeps it in doc_number): the pair names one document.
    Numbers are cut to the part that stays with the holder across renewals (holder_key_chars in
    standards/codes/id_document_type.csv: a HK/Macau permit H12345678 01 keeps H12345678).
    NULL where there is none."""
    from govdata.transforms.identifiers import document_holder_keys

    kind = df["id_type"].astype("string[pyarrow]")
    keys = document_holder_keys(kind.fillna(""), df["doc_number"].astype("string[pyarrow]"), _document_types())
    return keys.astype("string[pyarrow]")


@lru_cache(maxsize=1)
def _document_types() -> pd.DataFrame:
    """The stewards' document type table (code, holder_key_chars)."""
    from govdata.standards.registry import load_standards

    return load_standards().code_tables["id_document_type"]


def _last_char(names: pd.Series) -> pd.Series:
    """Last character of names of at least two characters (NULL otherwise)."""
    arr = pa.chunked_array(names.astype("string[pyarrow]").array._pa_array)
    long_enough = pc.greater_equal(pc.utf8_length(arr), 2)
    last = pc.if_else(long_enough, pc.utf8_slice_codeunits(arr, -1), pa.scalar(None, arr.type))
    return pd.Series(pd.arrays.ArrowStringArray(last), index=names.index)


def _last_char_codes(names: pd.Series) -> np.ndarray:
    """Codes of _last_char (-1: none); for names held as a Categorical (incremental.compact_text),
    computed once per distinct name rather than on every record's name as text."""
    if not isinstance(names.dtype, pd.CategoricalDtype):
        return factorize(_last_char(names))[0]
    per_name = factorize(_last_char(pd.Series(names.cat.categories)))[0]
    at = names.cat.codes.to_numpy()
    return np.where(at >= 0, per_name[np.maximum(at, 0)] if len(per_name) else -1, -1)


def _initial_code(letters: pa.Array) -> np.ndarray:
    """Position of each one-letter string in INITIALS (-1 when absent or NULL)."""
    at = pc.index_in(letters, value_set=pa.array(list(INITIALS), type=letters.type))
    return at.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def surname_initials(py_code: np.ndarray, py_uniques, names: pd.Series) -> np.ndarray:
    """Code of each record's surname initial: the first letter of its pinyin; for a name
    without pinyin (a rare character typed as * has no reading: 王*) the first character's
    pinyin, so the stand-in still shares the birth-date block with the full name; -1 when
    neither. Computed per distinct value."""
    from govdata.transforms.names import _HAN, _char_pinyin

    firsts = pa.array(np.asarray(py_uniques, dtype=object), type=pa.large_string())
    per_pinyin = _initial_code(pc.utf8_slice_codeunits(firsts, 0, 1))
    out = np.where(py_code >= 0, per_pinyin[np.maximum(py_code, 0)] if len(per_pinyin) else -1, -1)
    todo = (py_code < 0) & names.notna().to_numpy()
    if todo.any():
        name_code, name_uniques = factorize(names[todo])
        first = [n[0] if _HAN.match(n[0]) else None for n in np.asarray(name_uniques, dtype=object)]
        letters = pa.array([_char_pinyin(c)[:1] if c else None for c in first], type=pa.large_string())
        out[todo] = _initial_code(letters)[name_code]
    return out


def persons_sharing(df: pd.DataFrame, column: str) -> pd.Series:
    """How many distinct persons use each record's phone / address (shared_values.py): the
    column link_plan computes over every record of the run (so a partition or an incremental
    scope weighs a value as a full run does), else counted on these records."""
    given = df[SHARED[column]]
    if given.notna().any():
        return pd.to_numeric(given).fillna(1).astype("float64")
    table = pa.Table.from_pandas(df[[c for c in SHARED_COLUMNS if c in df.columns]], preserve_index=False)
    return pd.Series(persons_per_value(table, column), index=df.index, dtype="float64")


def _null_where(values: pd.Series, mask: np.ndarray) -> pd.Series:
    """Arrow-backed strings with NULL where mask, in one Arrow pass (a masked pandas setitem
    on Arrow strings costs far more)."""
    arr = pa.chunked_array(values.astype("string[pyarrow]").array._pa_array)
    out = pc.if_else(pa.array(mask, type=pa.bool_()), pa.scalar(None, arr.type), arr)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=values.index)


def comparison_view(df: pd.DataFrame, facts: pd.DataFrame, conflict: np.ndarray, cfg: LinkConfig,
                    codes: dict | None = None) -> pd.DataFrame:
    """Comparison view of every record (settings.PERSON_VIEW) with one integer column per
    blocking rule (NULL: no key, or a block above max_block_size). codes: factorize cache shared
    with the other steps."""
    return with_blocking_keys(compared_columns(df, facts, conflict), df, cfg, codes)


def compared_columns(df: pd.DataFrame, facts: pd.DataFrame, conflict: np.ndarray) -> pd.DataFrame:
    """The view's compared columns, each computed from its own record alone (so a view can be
    built a chunk of records at a time). A conflicting record's ID belongs to somebody else, so
    its ID-derived birth date/sex are not used."""
    trusted_id = facts["usable"].to_numpy() & ~conflict
    birth = facts["birth"].where(facts["birth"].notna() | ~pd.Series(trusted_id, index=df.index),
                                 facts["id_birth"])
    sex = df["sex"].astype("string[pyarrow]")
    sex = sex.where(sex.isin(["1", "2"]))
    sex = sex.fillna(facts["id_sex"].where(pd.Series(trusted_id, index=df.index)))
    region = _slice(df["region_code"], 0, 6)
    # a borrowed ID's region (the normaliser derives region_code from the ID) is not the
    # record's own
    from_borrowed_id = conflict & (region == _slice(df["id_number"], 0, 6)) \
        .fillna(False).to_numpy()
    view = pd.DataFrame({
        # an ID number Excel damaged (scientific notation, last digits zeroed) names nobody
        "id_number": _null_where(df["id_number"], excel_damaged(df, facts["usable"].to_numpy())),
        # a dropped middle dot (艾合买提玉素甫) is not a different name
        "name": df["name"].astype("string[pyarrow]").str.replace("·", "", regex=False),
        "pinyin": df["name_pinyin"].astype("string[pyarrow]"),
        # a foreigner's latin name without its order (SMITH JOHN = John Smith)
        "latin_key": latin_name_keys(df["name_latin"]).astype("string[pyarrow]"),
        # the same with hyphenated parts joined: SEO-YEON LEE = LEE SEOYEON
        "latin_joined": latin_name_keys(df["name_latin"].astype("string[pyarrow]").str.replace("-", "", regex=False))
        .astype("string[pyarrow]"),
        "birth": birth,
        "sex": sex,
        "phone": df["phone"].astype("string[pyarrow]"),
        "region": _null_where(region, from_borrowed_id),
        "document": document_keys(df),
        "document_type": df["id_type"].astype("string[pyarrow]").where(df["doc_number"].notna()),
        "phone_persons": persons_sharing(df, "phone"),
        "address": df["address"].astype("string[pyarrow]"),
        "address_persons": persons_sharing(df, "address"),
    }, index=df.index)
    return view


def with_blocking_keys(view: pd.DataFrame, df: pd.DataFrame | None, cfg: LinkConfig,
                       codes: dict | None = None) -> pd.DataFrame:
    """view with one integer column per blocking rule (NULL: no key, or a block above
    max_block_size), coded over all of view's records. df: the records (None: the view's own
    pinyin and phone stand in for them)."""
    if df is None:
        df = pd.DataFrame({"name_pinyin": view["pinyin"], "phone": view["phone"]}, index=view.index)
    for rule, (code, present) in blocking_keys(view, df, cfg.blocking, codes):
        size = group_sizes(code)
        keep = present & (size <= cfg.max_block_size)   # giant blocks: shared phones etc.
        # dense codes below len(view): 32 bits hold them, half the memory of a view's keys
        view[rule] = pd.arrays.IntegerArray(np.where(keep, code, 0).astype(np.int32), ~keep)
        del code, present, size, keep
    return view


def _codes(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Dense codes 0.. of integer values where present, -1 elsewhere."""
    out = np.full(len(values), -1, dtype=np.int64)
    out[present] = pd.factorize(values[present])[0]
    return out


def blocking_columns(view: pd.DataFrame, df: pd.DataFrame, codes: dict | None) -> dict:
    """Builders of the integer codes (-1: absent) a blocking rule may combine
    (settings.PERSON_BLOCKING): the view's columns, the birth date's day and year, the surname
    initial (pinyin's, or the first character's for a name without pinyin) and the last
    character of the name."""
    def day() -> np.ndarray:
        days = view["birth"].to_numpy(dtype="datetime64[D]")
        return _codes(days.astype(np.int64), ~np.isnat(days))

    def year() -> np.ndarray:
        years = view["birth"].dt.year.to_numpy(dtype=np.float64, na_value=np.nan)
        return _codes(np.nan_to_num(years).astype(np.int64), ~np.isnan(years))

    def initial() -> np.ndarray:
        py_code, py_uniques = factorize_once(codes, "name_pinyin", df["name_pinyin"])
        return surname_initials(py_code, py_uniques, view["name"])

    built = {"birth_day": day, "birth_year": year, "surname_initial": initial,
             "last_char": lambda: _last_char_codes(view["name"]),
             "pinyin": lambda: factorize_once(codes, "name_pinyin", df["name_pinyin"])[0],
             "phone": lambda: factorize_once(codes, "phone", df["phone"])[0]}
    return {**{c: (lambda c=c: factorize(view[c])[0]) for c in view.columns}, **built}


def blocking_keys(view: pd.DataFrame, df: pd.DataFrame, rules: tuple, codes: dict | None
                  ) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """(rule name, (int64 key, present)) per rule, in order: the rule's columns combined into
    one integer per record (equal keys = equal values in every column; -1 where a column is
    absent), present where every column is. A column's codes are let go after the last rule
    that uses them: a view's keys are built one rule at a time, not all held at once."""
    builders, cache = blocking_columns(view, df, codes), {}
    last_use = {c: i for i, rule in enumerate(rules) for c in rule.columns}
    for i, rule in enumerate(rules):
        for c in rule.columns:
            if c not in cache:
                cache[c] = builders[c]()
        parts = [cache[c] for c in rule.columns]
        for c in {c for c in rule.columns if last_use[c] == i}:
            del cache[c]
        present = np.all([p >= 0 for p in parts], axis=0)
        key = parts[0].copy()
        for part in parts[1:]:   # pairs of codes packed, then coded densely again
            key = _codes(key * (int(part.max(initial=0)) + 1) + part, present)
        del parts
        key[~present] = -1
        yield rule.name, (key, present)


# Pairs a block hands on at once (two int64 arrays and their index arithmetic): the pairs of
# a block are cut by the caller as they come, so memory holds a batch, not the block's pairs
PAIR_BATCH = 4_000_000


def _pairs_sharing(code: np.ndarray, present: np.ndarray, queue: np.ndarray,
                   reach: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(queued record, record) pairs whose integer keys differ by at most reach, built on
    the sorted keys: each queued record takes the slice of records in its key range. Yielded in
    batches of about PAIR_BATCH pairs (a queued record's pairs are never split)."""
    q = queue[present[queue]]
    if reach == 0:   # only records holding a queued record's key can pair: sort just those
        present = present & pd.Series(code).isin(code[q]).to_numpy()
    rows = np.flatnonzero(present)
    if not len(rows):
        return
    order = rows[np.argsort(code[rows], kind="stable")]
    keys = code[order]
    lo = np.searchsorted(keys, code[q] - reach, side="left")
    hi = np.searchsorted(keys, code[q] + reach, side="right")
    cnt = hi - lo
    ends = np.cumsum(cnt)
    cuts = np.unique(np.searchsorted(ends, np.arange(PAIR_BATCH, int(ends[-1]) if len(ends) else 0, PAIR_BATCH),
                                     side="right"))
    for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(q)]])):
        if a == b:
            continue
        c = cnt[a:b]
        total = int(c.sum())
        left = np.repeat(q[a:b], c)
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
        yield left, order[np.repeat(lo[a:b], c) + offset]


def _dense_rank(values: pd.Series, codes: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense ascending rank of each string (UTF-8 byte order, as Arrow's rank) and whether it
    is present: only the distinct values are sorted."""
    code, uniques = factorize_once(codes, "id_number", values.astype("string[pyarrow]"))
    by_value = pc.sort_indices(pa.array(uniques)).to_numpy()
    rank_of = np.empty(len(by_value), dtype=np.int64)
    rank_of[by_value] = np.arange(len(by_value), dtype=np.int64)
    present = code >= 0
    return np.where(present, rank_of[np.where(present, code, 0)] if len(rank_of) else 0, 0), present


def blocking_codes(view: pd.DataFrame, cfg: LinkConfig, codes: dict | None = None):
    """(integer key, present, reach) per block of the linkage: each blocking rule's key (reach
    0: equal keys) and the ranked ID numbers of the sorted neighbourhood (reach: half the
    window cfg.sorted_window). The ranks come first: their encoding of every ID number is the
    largest step, and the pairs that callers gather grow with each block."""
    if cfg.sorted_window < 0 or cfg.sorted_window % 2 == 0:
        raise ValueError("window is not a positive and odd integer")
    rank, present = _dense_rank(view["id_number"], codes)
    present &= view["id_number"].notna().to_numpy()   # the codes cover the raw column
    yield rank, present, (cfg.sorted_window - 1) // 2
    del rank, present
    for rule in cfg.blocking:
        yield view[rule.name].to_numpy(dtype=np.int64, na_value=0), view[rule.name].notna().to_numpy(), 0


def unique_pairs(view: pd.DataFrame, queue: np.ndarray, cfg: LinkConfig, select, codes: dict | None = None
                 ) -> np.ndarray:
    """Pair codes (left * len(view) + right), sorted and unique, of the (queued record, record)
    pairs of every block as select(left, right) keeps and orients them: block by block, so the
    pairs select drops are never all held at once."""
    n = len(view)
    gathered = [np.zeros(0, dtype=np.int64)]   # the pairs merged so far, then the batches since
    for code, present, reach in blocking_codes(view, cfg, codes):
        for batch in _pairs_sharing(code, present, queue, reach):
            left, right = select(*batch)
            gathered.append(sorted_unique(left * n + right))
            # the rules' blocks share most pairs: merged once the batches outnumber them
            if sum(map(len, gathered[1:])) > len(gathered[0]) + PAIR_BATCH:
                gathered = [_merge_unique(gathered)]
    return _merge_unique(gathered)


def _merge_unique(parts: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct values of parts, sorted in place in one copy of them (sorted_unique
    copies its input again: at 5M persons' relink scope that copy was the plan's peak). parts
    is emptied, so its arrays are let go before the sort."""
    values = np.concatenate(parts)
    parts.clear()
    values.sort()
    return distinct_of_sorted(values)


def candidate_pairs(view: pd.DataFrame, queue: np.ndarray, group: np.ndarray,
                    cfg: LinkConfig, codes: dict | None = None) -> pd.MultiIndex:
    """Pairs (queued record, any record) sharing a blocking key, not already in one group.
    A pair of two queued records is kept once (left < right). Blocks on the integer keys and
    a sorted neighbourhood (window cfg.sorted_window) over the ranked ID numbers, built with
    numpy; the same pairs, in the same (sorted) order, as recordlinkage's Index. codes:
    factorize cache shared with the other steps (its id_number codes are view's)."""
    n = len(view)
    in_queue = np.zeros(n, dtype=bool)
    in_queue[queue] = True

    def apart(l: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (l != r) & (group[l] != group[r]) & ~(in_queue[r] & (r < l))
        return l[keep], r[keep]

    pair = unique_pairs(view, queue, cfg, apart, codes)
    return pd.MultiIndex.from_arrays([pair // n, pair % n])
