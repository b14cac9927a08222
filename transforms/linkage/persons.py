"""Person linkage: deterministic on valid/repaired ID numbers, Fellegi–Sunter (recordlinkage)
for records without a usable ID and for records that contradict their ID's holder,
constrained clustering, stable person_ids, golden records."""
from __future__ import annotations

import json
from functools import lru_cache
from time import perf_counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.names import latin_name_keys

from . import compare
from .common import (ConstrainedUnion, assign_stable_ids, decision_pairs, factorize,
                     factorize_once, group_sizes, pair_id, prepare_records, recode, singleton_groups)
from .config import LinkConfig, LinkResult
from .fellegi_sunter import estimate_mu, field_weights
from .shared_values import COLUMNS as SHARED_COLUMNS
from .shared_values import SHARED, persons_per_value
from .survivorship import _pack, entity_rules, golden_records, trust_rank

PERSON_COLS = ["id_number", "id_number_status", "id_number_note", "id_type", "doc_number", "name",
               "name_latin", "name_pinyin", "sex", "birth_date", "ethnicity", "phone", "address",
               "region_code", "updated_at", "phone_persons", "address_persons"]
GOLDEN_ELEMENTS = ["id_number", "name", "name_pinyin", "sex", "birth_date", "ethnicity",
                   "phone", "address", "region_code"]
STATUSES = {"valid", "repaired", "invalid", "missing", "other_document"}  # other_document: no key (docs/CONTRACTS.md)
USABLE = ["valid", "repaired"]
PINYIN_VARIANT_SIMILARITY = 0.8   # Indel similarity above which two pinyin spell one name
# b_birth packs (birth day, surname initial code) into one int64 as day * slots + initial:
# room for 64 initials (pinyin starts with one of 26 letters); more would only widen blocks.
INITIAL_SLOTS = 64
# distinct_sources keeps one bit per source in an int64 mask, clear of the sign bit (and one
# spare): with more sources than this the same-source check is skipped, not an error.
MAX_MASKED_SOURCES = 62
FIELDS = ["id", "document", "name", "pinyin", "birth", "sex", "phone", "address", "region"]
COMPARED = ["id_number", "document", "name", "pinyin", "latin_key", "latin_joined", "birth", "sex", "phone", "region",
            "phone_persons", "address", "address_persons"]   # view columns
BLOCKS = ["b_birth", "b_pinyin_year", "b_phone", "b_document", "b_latin", "b_latin_joined", "b_birth_last",
          "b_address"]
SCALED = {"phone": "phone_persons", "address": "address_persons"}   # comparison -> persons sharing the value
INITIALS = "abcdefghijklmnopqrstuvwxyz0123456789"   # a pinyin starts with one of these
RULE_TEXT = np.array(["id", "repaired_id", "probabilistic", "steward", "singleton"], dtype=object)
ID, REPAIRED_ID, PROBABILISTIC, STEWARD, SINGLETON = range(len(RULE_TEXT))


# ---------------------------------------------------------------- facts from the ID number
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
    distinct = np.unique(group[rows] * width + value[rows])
    return np.bincount(distinct // width, minlength=int(group.max(initial=0)) + 1)


def id_facts(df: pd.DataFrame) -> pd.DataFrame:
    """Birth date and sex embedded in usable ID numbers (GB 11643: digits 7-14, 17th odd=male)."""
    bad = ~df["id_number_status"].isin(STATUSES) & df["id_number_status"].notna()
    if bad.any():
        raise ValueError(f"person records: column id_number_status has unknown value "
                         f"{df.loc[bad, 'id_number_status'].iloc[0]!r} (expected "
                         f"{', '.join(sorted(STATUSES))})")
    usable = df["id_number_status"].isin(USABLE) & df["id_number"].notna()
    usable &= ~truncated_twins(df["id_number"], usable.to_numpy(dtype=bool), df["source_system"])
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
        # holder's pinyin: most trusted source first, then the most frequent, then smallest
        # code; the keys packed into one integer sort
        top = int(counts.max())
        packed = _pack([(i, int(id_code.max()) + 1), (trust[ok], int(trust.max()) + 1),
                        (top - counts, top), (p, int(py_code.max()) + 1)])
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


# ---------------------------------------------------------------- blocking keys
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


def excel_damaged(df: pd.DataFrame, usable: np.ndarray) -> np.ndarray:
    """Records whose ID number Excel damaged: the normaliser's notes excel_scientific and
    excel_truncated, and the truncated numbers that passed as valid (truncated_twins)."""
    note = df["id_number_note"].astype("string[pyarrow]")
    noted = note.str.contains("excel_", regex=False).fillna(False).to_numpy(dtype=bool)
    return noted | (df["id_number_status"].isin(USABLE).fillna(False).to_numpy(dtype=bool) & ~usable)


def _last_char(names: pd.Series) -> pd.Series:
    """Last character of names of at least two characters (NULL otherwise)."""
    arr = pa.chunked_array(names.astype("string[pyarrow]").array._pa_array)
    long_enough = pc.greater_equal(pc.utf8_length(arr), 2)
    last = pc.if_else(long_enough, pc.utf8_slice_codeunits(arr, -1), pa.scalar(None, arr.type))
    return pd.Series(pd.arrays.ArrowStringArray(last), index=names.index)


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


# ---------------------------------------------------------------- probabilistic pass
def _null_where(values: pd.Series, mask: np.ndarray) -> pd.Series:
    """Arrow-backed strings with NULL where mask, in one Arrow pass (a masked pandas setitem
    on Arrow strings costs far more)."""
    arr = pa.chunked_array(values.astype("string[pyarrow]").array._pa_array)
    out = pc.if_else(pa.array(mask, type=pa.bool_()), pa.scalar(None, arr.type), arr)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=values.index)


def _blocking_frame(df: pd.DataFrame, facts: pd.DataFrame, conflict: np.ndarray,
                    max_block: int, codes: dict | None = None) -> pd.DataFrame:
    """Comparison view of every record. A conflicting record's ID belongs to somebody else,
    so its ID-derived birth date/sex are not used. codes: factorize cache shared with the
    other steps."""
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
        "phone_persons": persons_sharing(df, "phone"),
        "address": df["address"].astype("string[pyarrow]"),
        "address_persons": persons_sharing(df, "address"),
    }, index=df.index)
    # integer blocking keys: merges on ints are far cheaper than on strings
    days = view["birth"].to_numpy(dtype="datetime64[D]")
    has_birth = ~np.isnat(days)
    day_no = days.astype(np.int64)
    py_code, py_uniques = factorize_once(codes, "name_pinyin", df["name_pinyin"])
    year = view["birth"].dt.year.to_numpy(dtype=np.float64, na_value=np.nan)
    initial = surname_initials(py_code, py_uniques, view["name"])
    last, _ = factorize(_last_char(view["name"]))
    latin, _ = factorize(view["latin_key"])
    latin_joined, _ = factorize(view["latin_joined"])
    document, _ = factorize(view["document"])
    phone_code = factorize_once(codes, "phone", df["phone"])[0]
    address, _ = factorize(view["address"])
    keys = {"b_birth": (day_no * INITIAL_SLOTS + initial, has_birth & (initial >= 0)),
            "b_pinyin_year": (py_code * 10000 + np.nan_to_num(year).astype(np.int64),
                              (py_code >= 0) & has_birth),
            "b_phone": (phone_code, phone_code >= 0),
            # another document (passport, travel permit): its type + number
            "b_document": (document, document >= 0),
            # a foreigner's latin name in any order, case or hyphenation (full latin names are
            # rare: no birth date needed, which a service-hall applicant may lack)
            "b_latin": (latin, latin >= 0),
            "b_latin_joined": (latin_joined, latin_joined >= 0),
            # birth date + last character: a stand-in for a rare surname (*明 / 䶮明) still meets
            "b_birth_last": (day_no * (int(last.max(initial=0)) + 1) + last, has_birth & (last >= 0)),
            # a household's address: records without birth date or phone (a service-hall applicant)
            "b_address": (address, address >= 0)}
    for col, (code, present) in keys.items():
        size = group_sizes(np.where(present, code, -1))
        keep = present & (size <= max_block)   # giant blocks: shared phones etc.
        view[col] = pd.arrays.IntegerArray(np.where(keep, code, 0), ~keep)
    return view


def _pairs_sharing(code: np.ndarray, present: np.ndarray, queue: np.ndarray,
                   reach: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(queued record, record) pairs whose integer keys differ by at most reach, built on
    the sorted keys: each queued record takes the slice of records in its key range."""
    q = queue[present[queue]]
    if reach == 0:   # only records holding a queued record's key can pair: sort just those
        present = present & pd.Series(code).isin(code[q]).to_numpy()
    rows = np.flatnonzero(present)
    if not len(rows):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = rows[np.argsort(code[rows], kind="stable")]
    keys = code[order]
    lo = np.searchsorted(keys, code[q] - reach, side="left")
    hi = np.searchsorted(keys, code[q] + reach, side="right")
    cnt = hi - lo
    total = int(cnt.sum())
    left = np.repeat(q, cnt)
    offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    right = order[np.repeat(lo, cnt) + offset]
    return left, right


def _dense_rank(values: pd.Series, codes: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense ascending rank of each string (UTF-8 byte order, as Arrow's rank) and whether it
    is present: only the distinct values are sorted."""
    code, uniques = factorize_once(codes, "id_number", values.astype("string[pyarrow]"))
    by_value = pc.sort_indices(pa.array(uniques)).to_numpy()
    rank_of = np.empty(len(by_value), dtype=np.int64)
    rank_of[by_value] = np.arange(len(by_value), dtype=np.int64)
    present = code >= 0
    return np.where(present, rank_of[np.where(present, code, 0)] if len(rank_of) else 0, 0), present


def candidate_pairs(view: pd.DataFrame, queue: np.ndarray, group: np.ndarray,
                    cfg: LinkConfig, codes: dict | None = None) -> pd.MultiIndex:
    """Pairs (queued record, any record) sharing a blocking key, not already in one group.
    A pair of two queued records is kept once (left < right). Blocks on the integer keys and
    a sorted neighbourhood (window cfg.sorted_window) over the ranked ID numbers, built with
    numpy; the same pairs, in the same (sorted) order, as recordlinkage's Index. codes:
    factorize cache shared with the other steps (its id_number codes are view's)."""
    n = len(view)
    lefts, rights = [], []
    for col in BLOCKS:
        present = view[col].notna().to_numpy()
        code = view[col].to_numpy(dtype=np.int64, na_value=0)
        l, r = _pairs_sharing(code, present, queue)
        lefts.append(l)
        rights.append(r)
    if cfg.sorted_window < 0 or cfg.sorted_window % 2 == 0:
        raise ValueError("window is not a positive and odd integer")
    rank, present = _dense_rank(view["id_number"], codes)
    present &= view["id_number"].notna().to_numpy()   # the codes cover the raw column
    l, r = _pairs_sharing(rank, present, queue, (cfg.sorted_window - 1) // 2)
    lefts.append(l)
    rights.append(r)
    l, r = np.concatenate(lefts), np.concatenate(rights)
    in_queue = np.zeros(n, dtype=bool)
    in_queue[queue] = True
    keep = (l != r) & (group[l] != group[r]) & ~(in_queue[r] & (r < l))
    pair = np.unique(l[keep] * n + r[keep])   # dropped before the sort: fewer to sort
    return pd.MultiIndex.from_arrays([pair // n, pair % n])


def _rows(view: pd.DataFrame, at: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """view.iloc[at] of the given columns on a fresh RangeIndex, taken column by column
    (the blocking keys are not needed, and a frame-wide take costs more)."""
    return pd.DataFrame({c: view[c].array.take(at) for c in columns})


def compare_pairs(view: pd.DataFrame, pairs: pd.MultiIndex, conflict: np.ndarray,
                  cfg: LinkConfig) -> pd.DataFrame:
    l, r = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
    L, R = _rows(view, l, COMPARED), _rows(view, r, COMPARED)
    id_agree = compare.id_within_edits(L["id_number"], R["id_number"], cfg.id_max_edits)
    # a borrowed ID (conflict) proves a link when it agrees, but proves nothing when it differs
    borrowed = conflict[l] | conflict[r]
    id_agree = np.where(borrowed & (id_agree == 0), np.nan, id_agree)
    feats = pd.DataFrame({
        "id": id_agree,
        "document": compare.document_agree(L["document"], R["document"]),
        "name": compare.name_agree(L["name"], R["name"]),   # 1, WEAK (a rare character's stand-in), 0
        # latin names: equal order-free keys (hyphens kept or joined) agree like equal pinyin;
        # foreign full names recur (EMILY DAVIS), so they weigh no more than a Chinese name
        "pinyin": np.fmax(compare.name_order_agree(L["pinyin"], R["pinyin"], L["latin_key"], R["latin_key"]),
                          compare.agreement_only(L["latin_joined"], R["latin_joined"])),
        "birth": compare.birth_close(L["birth"], R["birth"]),
        "sex": compare.sex_agree(L["sex"], R["sex"]),
        "phone": compare.exact(L["phone"], R["phone"]),
        "address": compare.agreement_only(L["address"], R["address"]),
        "region": compare.region_agree(L["region"], R["region"]),
    })
    feats.index = pairs
    return feats


def shared_value_weights(weight: np.ndarray, agree: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """Agreement weight with u scaled by the persons using the value (shared_values.py):
    log2(m / (u * k)) = log2(m / u) - log2(k), never below 0; disagreement as it was."""
    k = np.maximum(np.nan_to_num(persons.astype(np.float64), nan=1.0), 1.0)
    scaled = np.maximum(weight - np.log2(k), 0.0)
    return np.where(agree == 1, scaled, weight)


# ---------------------------------------------------------------- public entry point
def link_persons(records: pd.DataFrame, *, previous_xref: pd.DataFrame | None = None,
                 decisions: pd.DataFrame | None = None, survivorship: dict, run_id: str,
                 config: LinkConfig | None = None) -> LinkResult:
    cfg = config or LinkConfig()
    seconds: dict[str, float] = {}
    clock = perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = perf_counter()
        seconds[step] = round(now - clock, 4)
        clock = now

    spec = entity_rules(survivorship, "person")
    df = prepare_records(records, PERSON_COLS, "person records")
    n = len(df)
    trust = trust_rank(df["source_system"], list(spec["trust_order"]))
    key_to_pos = pd.Series(np.arange(n), index=df["_key"].to_numpy()) \
        if decisions is not None and len(decisions) else pd.Series(dtype=np.int64)
    steward_match, steward_non = decision_pairs(decisions, key_to_pos)
    facts = id_facts(df)
    codes: dict = {}   # factorize per column, shared by the steps

    # 1 deterministic: one group per held ID number
    conflict = holder_conflicts(df, facts, trust, codes)
    usable = facts["usable"].to_numpy()
    id_text = df["id_number"].fillna("").to_numpy(dtype=object) if len(steward_non) else None
    same_id = steward_non[(id_text[steward_non[:, 0]] == id_text[steward_non[:, 1]]) &
                          usable[steward_non[:, 0]] & usable[steward_non[:, 1]]] \
        if len(steward_non) else steward_non
    if len(same_id):   # a steward split an ID group: the less trusted record leaves it
        pick = np.where(trust[same_id[:, 0]] > trust[same_id[:, 1]], same_id[:, 0], same_id[:, 1])
        conflict[pick] = True
    held = usable & ~conflict
    group = singleton_groups(n)
    held_code, held_ids = recode(codes["id_number"][0], held)
    group[held] = held_code[held]
    lap("deterministic")

    # 2 probabilistic: queued records against everything sharing a blocking key
    queue = np.flatnonzero(~held)
    view = _blocking_frame(df, facts, conflict, cfg.max_block_size, codes)
    if len(queue):
        pairs = candidate_pairs(view, queue, group, cfg, codes)
    else:
        pairs = pd.MultiIndex.from_arrays([np.zeros(0, dtype=np.int64)] * 2)
    lap("blocking")
    feats = compare_pairs(view, pairs, conflict, cfg) if len(pairs) else \
        pd.DataFrame(columns=FIELDS, index=pairs, dtype=float)
    lap("comparing")
    weak = (feats["name"] == compare.WEAK).to_numpy() if len(feats) else np.zeros(0, dtype=bool)
    model_feats = feats.assign(name=feats["name"].mask(weak)) if weak.any() else feats   # ECM sees 1/0 only
    m, u, weight_source = estimate_mu(model_feats, cfg.m_prior, cfg.u_prior, cfg.estimate_weights,
                                      cfg.min_pairs_for_ecm)
    weights = field_weights(model_feats, m, u)
    if weak.any():   # weak agreement: half the agreement weight, never a disagreement
        weights.loc[weak, "name"] = compare.WEAK * np.log2(m["name"] / u["name"])
    for field, persons in SCALED.items():   # a family's phone or home: weak evidence
        if len(feats):
            weights[field] = shared_value_weights(weights[field].to_numpy(), feats[field].to_numpy(),
                                                  view[persons].to_numpy()[pairs.get_level_values(0)])
    score = weights.sum(axis=1).to_numpy()
    lap("classifying")

    # 3 constrained clustering: steward matches, then links in descending score
    cannot: dict[int, set[int]] = {}
    for a, b in steward_non:
        cannot.setdefault(int(a), set()).add(int(b))
        cannot.setdefault(int(b), set()).add(int(a))
    src_code = pd.factorize(df["source_system"])[0]
    if src_code.max(initial=0) < MAX_MASKED_SOURCES and cfg.distinct_sources:
        source_mask = np.zeros(2 * n, dtype=np.int64)
        np.bitwise_or.at(source_mask, group, np.left_shift(1, src_code).astype(np.int64))
    else:
        source_mask = None
    uf = ConstrainedUnion(len(held_ids), cannot, group, source_mask)
    for a, b in steward_match:
        uf.union(int(group[a]), int(group[b]), force=True)
    l = pairs.get_level_values(0).to_numpy()
    r = pairs.get_level_values(1).to_numpy()
    order = np.argsort(-score, kind="stable")
    # the same ID or document lets a department's second record join (it filed one person twice)
    id_agrees = ((feats["id"] == 1) | (feats["document"] == 1)).to_numpy() if len(feats) \
        else np.zeros(0, dtype=bool)
    accepted = np.zeros(len(score), dtype=bool)
    refused = np.zeros(len(score), dtype=bool)
    tried = order[score[order] >= cfg.match_threshold]
    reasons = [uf.union(a, b, distinct_sources=not agree) for a, b, agree in   # Python ints
               zip(group[l[tried]].tolist(), group[r[tried]].tolist(), id_agrees[tried].tolist())]
    accepted[tried] = [reason is None for reason in reasons]
    refused[tried] = [reason in ("different_id", "same_source") for reason in reasons]
    cluster = uf.labels(group)
    lap("clustering")

    # 4 rules, scores, stable ids
    cluster_sizes = np.bincount(cluster)   # cluster labels are group numbers < 2n
    size = cluster_sizes[cluster]
    link_score = pd.concat([pd.Series(score[accepted], index=l[accepted]),
                            pd.Series(score[accepted], index=r[accepted])])
    link_score = link_score[~held[link_score.index]].groupby(level=0).max()
    # rules as codes into RULE_TEXT: the strings are made once, for the xref column
    repaired = (df["id_number_status"] == "repaired").fillna(False).to_numpy(dtype=bool)
    rule = np.where(held, np.where(repaired, REPAIRED_ID, ID), SINGLETON)
    rule[link_score.index.to_numpy()] = PROBABILISTIC
    if len(steward_match):   # steward links that held (a non_match elsewhere may veto)
        kept = steward_match[cluster[steward_match[:, 0]] == cluster[steward_match[:, 1]]]
        rule[np.unique(kept.ravel())] = STEWARD
    rule[size <= 1] = SINGLETON
    match_score = pd.Series(np.nan, index=range(n))
    match_score[link_score.index] = link_score.to_numpy()
    match_score = match_score.where(rule == PROBABILISTIC)
    ids, history = assign_stable_ids(df["_key"], cluster, df, previous_xref, "person_id", "P",
                                     "person", run_id)
    xref = pd.DataFrame({"source_system": df["source_system"],
                         "source_record_id": df["source_record_id"],
                         "person_id": ids,
                         "match_rule": pd.Series(pd.arrays.StringArray(RULE_TEXT[rule])),
                         "match_score": match_score.round(4).astype("Float64")})
    lap("ids")

    # 5 golden records: the ID comes only from records that hold it
    person_ids = np.asarray(ids.array)   # the object array behind the strings, no copy
    gold_in = pd.DataFrame({c: df[c] for c in ["source_system", "source_record_id", "updated_at"]
                            + GOLDEN_ELEMENTS})
    gold_in["person_id"] = person_ids
    gold_in["id_number"] = _null_where(df["id_number"], ~held)
    gold_in["birth_date"] = facts["birth"]
    golden = golden_records(gold_in, "person_id", GOLDEN_ELEMENTS, spec,
                            _golden_codes(cluster, person_ids, codes, held_code, held_ids))
    golden["birth_date"] = golden["birth_date"].dt.date.astype(object).where(
        golden["birth_date"].notna(), None)
    lap("golden")

    keys = df["_key"]
    evidence = _evidence(df, person_ids, l[accepted], r[accepted], score[accepted],
                         weights[accepted], feats[accepted])
    in_review = (score >= cfg.review_threshold) & ~accepted & \
        ((score < cfg.match_threshold) | refused) & (cluster[l] != cluster[r])
    review = _review(df, keys, l[in_review], r[in_review], score[in_review], weights[in_review],
                     refused[in_review], cluster, decisions_keys(steward_match, steward_non, keys))
    lap("review")

    stats = {
        "records": n, "clusters": int(np.count_nonzero(cluster_sizes)),
        "match_rule": {k: int(v) for k, v in xref["match_rule"].value_counts().items()},
        "queued_for_probabilistic": int(len(queue)), "conflicts": int(conflict.sum()),
        "pairs_compared": int(len(pairs)), "links_accepted": int(accepted.sum()),
        "links_refused_cannot_link": int(refused.sum()), "review": int(len(review)),
        "weights": weight_source, "m": m, "u": u, "seconds": seconds,
    }
    return LinkResult(xref=xref, golden=golden, history=history, review=review,
                      evidence=evidence, stats=stats)


def _golden_codes(cluster: np.ndarray, person_ids: np.ndarray, codes: dict,
                  held_code: np.ndarray, held_ids: np.ndarray) -> dict:
    """Codes golden_records would otherwise hash again: person_id codes are the clusters'
    (one id per cluster), the held ID numbers', and the shared pinyin and phone codes."""
    gid = pd.factorize(cluster)[0]
    first = np.flatnonzero(~pd.Series(cluster).duplicated().to_numpy())   # in gid order
    return {"person_id": (gid, person_ids[first]), "id_number": (held_code, held_ids),
            "name_pinyin": codes["name_pinyin"], "phone": codes["phone"]}


def _at(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """values.to_numpy()[rows], converting only the rows taken."""
    return values.iloc[rows].to_numpy()


def decisions_keys(match: np.ndarray, non: np.ndarray, keys: pd.Series) -> set[tuple[str, str]]:
    pairs = np.vstack([match.reshape(-1, 2), non.reshape(-1, 2)])
    return {tuple(sorted(pair)) for pair in _at(keys, pairs.ravel()).reshape(-1, 2)}


def _evidence(df, ids, l, r, score, weights, feats) -> pd.DataFrame:
    """ids: person id per record (numpy)."""
    out = pd.DataFrame({
        "left_source_system": _at(df["source_system"], l),
        "left_source_record_id": _at(df["source_record_id"], l),
        "right_source_system": _at(df["source_system"], r),
        "right_source_record_id": _at(df["source_record_id"], r),
        "person_id": ids[l],
        "score": np.round(score, 4)})
    for f in FIELDS:
        out[f"w_{f}"] = np.round(weights[f].to_numpy(), 4)
        out[f"agree_{f}"] = feats[f].to_numpy()
    return out.astype({c: "string" for c in out.columns[:5]})


def _review(df, keys, l, r, score, weights, refused, cluster, decided) -> pd.DataFrame:
    cols = ["pair_id", "entity", "left_source_system", "left_source_record_id",
            "right_source_system", "right_source_record_id", "score", "evidence", "reason",
            "status"]
    cand = pd.DataFrame({"l": l, "r": r, "score": score, "refused": refused,
                         "target": cluster[r], "i": np.arange(len(l))})
    # one question per (record, other cluster): the best pair shows the case
    cand = cand.sort_values(["l", "target", "score"], ascending=[True, True, False])
    cand = cand.drop_duplicates(["l", "target"])
    if decided:
        lk, rk = _at(keys, cand["l"].to_numpy()), _at(keys, cand["r"].to_numpy())
        cand = cand[[tuple(sorted(p)) not in decided for p in zip(lk, rk)]]
    if cand.empty:
        return pd.DataFrame(columns=cols).astype({c: "string" for c in cols if c != "score"})
    w = weights.iloc[cand["i"].to_numpy()]
    evidence = [json.dumps({f: round(float(v), 3) for f, v in zip(w.columns, row)})
                for row in w.to_numpy()]
    lk, rk = pd.Series(_at(keys, cand["l"].to_numpy())), pd.Series(_at(keys, cand["r"].to_numpy()))
    out = pd.DataFrame({
        "pair_id": pair_id(lk, rk).to_numpy(), "entity": "person",
        "left_source_system": _at(df["source_system"], cand["l"].to_numpy()),
        "left_source_record_id": _at(df["source_record_id"], cand["l"].to_numpy()),
        "right_source_system": _at(df["source_system"], cand["r"].to_numpy()),
        "right_source_record_id": _at(df["source_record_id"], cand["r"].to_numpy()),
        "score": np.round(cand["score"].to_numpy(), 4), "evidence": evidence,
        "reason": np.where(cand["refused"], "conflict", "uncertain"), "status": "open"})
    return out.astype({c: "string" for c in cols if c != "score"}).reset_index(drop=True)
