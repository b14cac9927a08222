"""Incremental linking: the records a run has to link again.

A new or changed record can only change the clusters it could join: those of the records it
shares a blocking key or an identifier with. So the relink scope is, in order:
1. the previous clusters of the seeds (new and changed records, records whose cluster lost a
   member, records a steward decided on) — a cluster is always relinked whole;
2. every record that could pair with a record of step 1 (persons: sharing one of the
   probabilistic pass's blocking keys or the sorted neighbourhood on the ID number, with one
   side not held by a valid ID — two held records are never compared — and scoring, with the
   previous run's weights, at least the review threshold: a pair below it neither links nor
   is reviewed; or holding the same ID number) or sharing an identifier token (enterprises: USCC, organisation code, tax and registration numbers, name + legal
   representative) with a record of step 1;
3. the previous clusters of all of those (enterprises: steps 2 and 3 repeated until the
   scope stops growing).
Everything else keeps its xref row. With the previous run's weights a relink of the scope
gives what a full relink gives (tests/e2e/test_incremental.py checks it on the
generator's data).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.memory import release_memory
from govdata.transforms.names import latin_name_keys

from .common import categorical_text, prepare_records, sorted_unique
from .config import LinkConfig
from .enterprises import ENTERPRISE_COLS, identifier_keys
from .partition import plain_text, text_column
from .person_blocking import compared_columns, document_keys, unique_pairs, with_blocking_keys
from .person_facts import holder_conflicts, id_facts
from .persons import PERSON_COLS, compare_pairs, score_pairs
from .records import Records
from .shared_values import SHARED
from .survivorship import trust_rank

log = logging.getLogger(__name__)

# the columns the scope is computed from (prepare_records fills the others with NULL)
SCOPE_COLUMNS = {"person": ["source_system", "source_record_id", "id_number", "id_number_status", "id_number_note",
                            "id_type", "doc_number", "name", "name_latin", "name_pinyin", "sex", "birth_date",
                            "phone", "address", "region_code", "phone_persons", "address_persons"],
                 "enterprise": ["source_system", "source_record_id", "uscc", "uscc_status", "org_code",
                                "tax_no", "reg_no", "name_core", "legal_rep_name", "region_code", "address"]}
# the columns that decide whether a record is held by its ID number (id_holding)
HOLDING_COLUMNS = ["source_system", "source_record_id", "id_number", "id_number_status", "sex", "birth_date",
                   "name_pinyin"]
ENTERPRISE_TOKENS = {"uscc": "uscc", "org": "org", "tax_org": "org", "tax": "tax", "reg": "reg",
                     "name_key": "name", "name_any_region": "name", "rep_address": "name", "operator": "name"}   # column → token family (an org code matches either)


def whole_clusters(mask: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """mask grown to every record of a previous cluster it touches (cluster -1: none)."""
    touched = sorted_unique(cluster[mask & (cluster >= 0)])
    return mask | np.isin(cluster, touched)


def id_holding(records: pd.DataFrame, trust_order: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(usable, conflict) per record: whether its ID number is a usable key and whether the
    record contradicts the ID's holder (person_facts). Exact when records hold every record
    carrying any of their ID numbers (holder_conflicts weighs them all)."""
    df = prepare_records(records, [], "person records")
    facts = id_facts(df)
    return facts["usable"].to_numpy(), holder_conflicts(df, facts, trust_rank(df["source_system"], trust_order))


def person_neighbours(records: Records, rows: np.ndarray, mask: np.ndarray, usable: np.ndarray,
                      conflict: np.ndarray, cfg: LinkConfig) -> np.ndarray:
    """Among records' rows (a mask), those that could link with a masked record in the linkage,
    or meet it in the review queue (the masked ones included): sharing a blocking key where one
    side goes to the probabilistic pass (two records held by their ID numbers are never
    compared) and scoring, with cfg's weights, at least the review or match threshold. mask,
    usable, conflict: per row (id_holding's, judged with the rows' ID holders)."""
    view = _comparison_view(records, rows, usable, conflict, cfg)
    pair = scope_pairs(view, np.flatnonzero(mask), usable & ~conflict, cfg)
    view = view.drop(columns=[rule.name for rule in cfg.blocking])   # the keys, before the scoring's memory
    release_memory()
    out = mask.copy()
    out[partners_scoring(view, pair, conflict, cfg)] = True
    return out


# Records whose compared columns are computed at once: the records' frame and its facts are
# held for a chunk, not for every reachable record (at 5M persons 5.9M of them took 3 GB more
# than their view)
VIEW_CHUNK = 1_000_000


def _comparison_view(records: Records, rows: np.ndarray, usable: np.ndarray, conflict: np.ndarray,
                     cfg: LinkConfig) -> pd.DataFrame:
    """The comparison view of records' rows (a mask; usable, conflict: per row), its compared
    columns built a chunk of records at a time, read as they are needed (no other record is in
    memory), and its blocking keys coded over all of them. Shared phones and addresses are
    weighed by records' count columns (link_plan's, over the whole run)."""
    columns = SCOPE_COLUMNS["person"]
    parts, start = [], 0
    for chunk in records.chunks(rows, columns, VIEW_CHUNK) if rows.any() else [records.read(columns, rows)]:
        df = prepare_records(_frame(chunk, None, columns), PERSON_COLS, "person records")
        del chunk
        cut = slice(start, start + len(df))
        parts.append(compared_columns(df, id_facts(df, usable[cut]), conflict[cut]))
        start += len(df)
        del df
        release_memory()   # the chunk's frame and facts
    view = pd.concat(parts, ignore_index=True)
    del parts
    for column in view.columns:   # one Arrow chunk per column: a take across chunks costs 2.4x
        if isinstance(view[column].dtype, pd.StringDtype):
            view[column] = compact_text(view[column].array._pa_array.combine_chunks())
    return with_blocking_keys(view, None, cfg)


# A text column of the view is held as codes into its distinct values when those and the codes
# take at most this share of its text
COMPACT_SHARE = 0.6


def compact_text(values: pa.Array):
    """values (Arrow strings) as pandas: a Categorical over their distinct values when the text
    repeats (of the 5.9M records a 5M-person rerun's scope compared: addresses 230 -> 64 MB,
    regions 83 -> 6 MB, names, pinyin, sexes, documents; 0.5 GB in all), else Arrow-backed
    strings in one chunk. The comparisons take a pair batch's rows as codes (persons._rows)."""
    encoded = pc.dictionary_encode(values)
    if encoded.dictionary.nbytes + 4 * len(values) > COMPACT_SHARE * values.nbytes:
        return pd.arrays.ArrowStringArray(pa.chunked_array([values]))
    return categorical_text(values, encoded)


# Candidate pairs scored at once: memory holds a batch's compared columns, whatever the
# blocks' sizes (the pairs themselves are two integers each). At 5M persons a million took
# 1.5 GB, a quarter million 0.9 GB, in the same time.
SCOPE_BATCH_PAIRS = 250_000


def scope_pairs(view: pd.DataFrame, queue: np.ndarray, held: np.ndarray, cfg: LinkConfig) -> np.ndarray:
    """Pair codes (unique_pairs) of the queued records' candidate pairs (candidate_pairs' blocks)
    with one side not held, facing the way the linkage builds them (the record not held first;
    two such records in position order). Each block's pairs are cut as they are made: a held
    queued record pairs with every block mate, and at 5M persons those pairs were most of 13 GB."""
    def one_side_not_held(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (a != b) & ~(held[a] & held[b])
        a, b = a[keep], b[keep]
        flip = held[a] | (~held[b] & (b < a))
        return np.where(flip, b, a), np.where(flip, a, b)

    return unique_pairs(view, queue, cfg, one_side_not_held)


def partners_scoring(view: pd.DataFrame, pair: np.ndarray, conflict: np.ndarray, cfg: LinkConfig) -> np.ndarray:
    """Positions of both records of each pair (codes over view) scoring at least
    min(review_threshold, match_threshold): a pair below both neither links nor goes to review,
    so it cannot change a relink. Scored with cfg's m and u as given (link_plan passes the
    previous run's), SCOPE_BATCH_PAIRS at a time."""
    n = len(view)
    floor = min(cfg.review_threshold, cfg.match_threshold)
    cfg = dataclasses.replace(cfg, estimate_weights=False)   # the given weights, whatever the batch
    found = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(pair), SCOPE_BATCH_PAIRS):
        batch = pair[start:start + SCOPE_BATCH_PAIRS]
        pairs = pd.MultiIndex.from_arrays([batch // n, batch % n])
        weights = score_pairs(compare_pairs(view, pairs, conflict, cfg), view, cfg)[0]
        hit = batch[weights.sum(axis=1).to_numpy() >= floor]
        found += [hit // n, hit % n]
    return sorted_unique(np.concatenate(found))


def enterprise_tokens(records: pd.DataFrame) -> pd.Series:
    """Identifier tokens ("org\x1f<code>", …) indexed by record position, one row per token."""
    keys = identifier_keys(prepare_records(records, ENTERPRISE_COLS, "enterprise records"))
    return pd.concat([family + "\x1f" + keys[col].dropna() for col, family in ENTERPRISE_TOKENS.items()])


def enterprise_neighbours(tokens: pd.Series, mask: np.ndarray) -> np.ndarray:
    """Records sharing an identifier token with a masked record (the masked ones included)."""
    at = tokens.index.to_numpy()
    hit = tokens.isin(tokens[mask[at]].unique()).to_numpy()
    out = mask.copy()
    out[at[hit]] = True
    return out


def _arrow_string_dtype(typ: pa.DataType):
    """to_pandas types_mapper: Arrow strings stay Arrow-backed (no Python str objects)."""
    return pd.StringDtype("pyarrow") if pa.types.is_string(typ) or pa.types.is_large_string(typ) else None


def _any_in(values: list[pa.ChunkedArray], mask: pa.Array) -> pa.ChunkedArray:
    """Rows where any of the value columns holds a value some masked row holds in any of them."""
    wanted = pc.unique(pa.chunked_array([v.filter(mask).combine_chunks() for v in values]).combine_chunks()).drop_null()
    hit = pc.is_in(values[0], value_set=wanted)
    for v in values[1:]:
        hit = pc.or_(hit, pc.is_in(v, value_set=wanted))
    return hit


def _id_neighbours(ids: pa.ChunkedArray, distinct: pa.Array, mask: pa.Array, reach: int) -> pa.ChunkedArray:
    """Rows whose ID number is within reach distinct IDs (distinct: sorted_distinct(ids)) of a
    masked row's ID: the sorted-neighbourhood block."""
    at = pc.index_in(ids.filter(mask), value_set=distinct).drop_null().to_numpy()
    near = (at[:, None] + np.arange(-reach, reach + 1)[None, :]).ravel()
    near = sorted_unique(near[(near >= 0) & (near < len(distinct))])
    return pc.is_in(ids, value_set=distinct.take(pa.array(near, pa.int64())))


def sorted_distinct(values: pa.ChunkedArray) -> pa.Array:
    """The distinct non-NULL values, sorted."""
    distinct = pc.unique(values.drop_null())
    return distinct.take(pc.sort_indices(distinct))


def _yyyymmdd(dates: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dates as YYYYMMDD text, the form inside an ID number (a cast and a replace: strftime
    formats value by value)."""
    if not pa.types.is_date32(dates.type):
        dates = dates.cast(pa.date32())
    return pc.replace_substring(dates.cast(pa.large_string()), "-", "")


def _other_key_builders(read, own, from_id) -> list:
    """Builders of the blocking keys of the shipped declaration (standards/linkage.yaml) beyond
    birth + initial, pinyin + year, phone, address: the other document, the latin name keys and
    birth date + last character (reached adds the birth date alone where a name has no pinyin).
    read: columns of every record (reached's); own, from_id: functions giving the birth dates as
    YYYYMMDD (own, and inside the ID)."""
    bar = pa.scalar("|", pa.large_string())

    def document() -> list[pa.ChunkedArray]:
        return [_keys_where(read, "doc_number", ["id_type", "doc_number"], document_keys)]

    def latin(joined: bool) -> list[pa.ChunkedArray]:
        def keys(frame: pd.DataFrame) -> pd.Series:
            raw = frame["name_latin"].astype(object)
            return latin_name_keys(raw.str.replace("-", "", regex=False) if joined else raw)
        return [_keys_where(read, "name_latin", ["name_latin"], keys)]

    def last_character() -> list[pa.ChunkedArray]:
        last = pc.utf8_slice_codeunits(pc.replace_substring(text_column(read(["name"]), "name"), "\u00b7", ""), -1)
        return [pc.binary_join_element_wise(own(), last, bar), pc.binary_join_element_wise(from_id(), last, bar)]

    return [document, lambda: latin(False), lambda: latin(True), last_character]


def _keys_where(read, needed: str, columns: list[str], keys) -> pa.ChunkedArray:
    """keys(a frame of columns, read: reached's) over the records whose column `needed` holds a
    value, NULL for the others: few records carry a document or a latin name (at 5M persons
    every record's document columns as Python objects took 1 GB more)."""
    table = read(columns)
    n = table.num_rows
    if needed not in table.column_names:
        return pa.chunked_array([pa.nulls(n, pa.large_string())])
    rows = np.flatnonzero(pc.is_valid(table[needed]).to_numpy(zero_copy_only=False))
    some = table.take(pa.array(rows))
    frame = pd.DataFrame({c: pd.Series(text_column(some, c).to_pylist(), dtype="string") for c in columns})
    values = pa.array(keys(frame).to_numpy(dtype=object, na_value=None), pa.large_string()) if len(rows) else \
        pa.array([], pa.large_string())
    at = np.full(n, len(rows), dtype=np.int64)   # the NULL after the values
    at[rows] = np.arange(len(rows))
    return pa.chunked_array([pa.concat_arrays([values, pa.nulls(1, pa.large_string())]).take(pa.array(at))])


def reached(table: pa.Table, masks: list[np.ndarray], cfg: LinkConfig, read=None) -> list[np.ndarray]:
    """Per mask, a superset of the records that could share a person blocking key with a masked
    record, from the raw columns (cheap, in Arrow): the same birth date (own or inside the ID)
    and surname initial (the birth date alone where a name has no pinyin: its initial comes from
    the name's first character), the same pinyin and birth year, the same phone, an ID within
    the sorted-neighbourhood window. The keys are built once for all the masks, one key at a
    time, each from the columns again (all of them at once held 1.9 GB at 5M persons; the birth
    dates and pinyin they share, 0.8 GB). read: a function giving columns of every record beyond
    the ID number, birth date and pinyin, read for their key and let go (default: table's)."""
    if read is None:
        def read(columns: list[str]) -> pa.Table:
            return table.select([c for c in columns if c in table.column_names])
    ms = [pa.array(np.asarray(mask, dtype=bool)) for mask in masks]
    hits = list(ms)
    ids = text_column(table, "id_number")
    bar = pa.scalar("|", pa.large_string())

    def own() -> pa.ChunkedArray:
        return _yyyymmdd(table["birth_date"]) if "birth_date" in table.column_names else text_column(table, "birth_date")

    def from_id() -> pa.ChunkedArray:
        return pc.utf8_slice_codeunits(ids, 6, 14)

    def pinyin() -> pa.ChunkedArray:
        return text_column(table, "name_pinyin")

    def day() -> list[pa.ChunkedArray]:
        initial = pc.utf8_slice_codeunits(pinyin(), 0, 1)
        return [pc.binary_join_element_wise(birth(), initial, bar) for birth in (own, from_id)]

    def year() -> list[pa.ChunkedArray]:
        return [pc.binary_join_element_wise(pinyin(), pc.utf8_slice_codeunits(birth(), 0, 4), bar)
                for birth in (own, from_id)]

    def sharing(values: list[pa.ChunkedArray], m: pa.Array) -> pa.ChunkedArray:
        return pc.fill_null(_any_in(values, m), False)

    for build in [day, year, lambda: [text_column(read(["phone"]), "phone")],
                  lambda: [text_column(read(["address"]), "address")], *_other_key_builders(read, own, from_id)]:
        values = build()
        hits = [pc.or_(hit, sharing(values, m)) for hit, m in zip(hits, ms)]
        del values
        release_memory()   # the key's text
    # the birth date alone where one side has no pinyin
    no_pinyin = pc.is_null(pinyin()).combine_chunks()
    births = [own(), from_id()]
    hits = [pc.or_(hit, pc.or_(sharing(births, pc.and_(m, no_pinyin)), pc.and_(sharing(births, m), no_pinyin)))
            for hit, m in zip(hits, ms)]
    del births
    release_memory()
    distinct = sorted_distinct(ids)
    window = (cfg.sorted_window - 1) // 2
    return [pc.or_(hit, pc.fill_null(_id_neighbours(ids, distinct, m, window), False)).to_numpy().astype(bool)
            for hit, m in zip(hits, ms)]


def _sharing_id(ids: pa.ChunkedArray, mask: np.ndarray) -> np.ndarray:
    """mask grown by every record holding one of its ID numbers."""
    hit = pc.fill_null(_any_in([ids], pa.array(np.asarray(mask, dtype=bool))), False)
    return np.asarray(mask, dtype=bool) | hit.to_numpy().astype(bool)


def id_holders(table: pa.Table, mask: np.ndarray) -> np.ndarray:
    """mask grown by every record holding one of its ID numbers or an ID that shares one's first
    15 digits: what id_holding needs to judge the masked records exactly (who holds an ID,
    and which truncated numbers have a twin)."""
    ids = text_column(table, "id_number")
    prefixes = pc.fill_null(_any_in([pc.utf8_slice_codeunits(ids, 0, 15)], pa.array(np.asarray(mask, dtype=bool))),
                            False)
    return _sharing_id(ids, mask) | prefixes.to_numpy().astype(bool)


# Records id_holding judges at once. What it weighs (an ID's holders, the numbers sharing its
# first 15 digits) never crosses a group of ID numbers with the same first 15 digits, so the
# records are judged a share of those groups at a time (at 5M persons 9.1M at once took 3.6 GB).
HOLDING_SHARE = 1_000_000


def _held(records: pa.Table, mask: np.ndarray, trust_order: list[str]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(held, rows, usable, conflict): id_holding over mask's records and their ID holders (rows:
    the positions judged), exact for the masked ones; held: per record, judged and held by its ID."""
    rows = np.flatnonzero(id_holders(records, mask))
    usable, conflict = np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
    for share in _id_prefix_shares(records, rows, HOLDING_SHARE):
        judged = np.zeros(len(mask), dtype=bool)
        judged[rows[share]] = True
        usable[share], conflict[share] = id_holding(_frame(records, judged, HOLDING_COLUMNS), trust_order)
        release_memory()   # the share's frame and facts
    held = np.zeros(len(mask), dtype=bool)
    held[rows] = usable & ~conflict
    return held, rows, usable, conflict


def _id_prefix_shares(table: pa.Table, rows: np.ndarray, size: int) -> list[np.ndarray]:
    """Positions into rows (table's), in order, split into about len(rows) / size shares by the
    first 15 digits of their ID numbers: all rows with the same first 15 digits in one share
    (rows without an ID number in the first)."""
    shares = -(-len(rows) // size)
    if shares <= 1:
        return [np.arange(len(rows))]
    prefixes = pc.utf8_slice_codeunits(text_column(table, "id_number").take(pa.array(rows)), 0, 15)
    codes = pc.fill_null(pc.dictionary_encode(prefixes.combine_chunks()).indices, 0).to_numpy(zero_copy_only=False)
    share_of = codes % shares
    return [np.flatnonzero(share_of == s) for s in range(shares)]


def _frame(records: pa.Table, rows: np.ndarray | None, columns: list[str]) -> pd.DataFrame:
    """The given rows (mask; None: all) and columns of records as pandas, strings Arrow-backed."""
    table = records.select([c for c in columns if c in records.column_names])
    if rows is not None:
        table = table.filter(pa.array(rows))
    return plain_text(table).to_pandas(types_mapper=_arrow_string_dtype)


def person_scope(records: Records, scope: np.ndarray, cfg: LinkConfig, trust_order: list[str]) -> np.ndarray:
    """scope grown by the records that could pair with one of its records (person_neighbours) or
    hold one of its ID numbers. Two held records are never compared, so a record of the scope
    held by its ID reaches only the records not held: whether a record is held is judged first
    for the scope, then for every record it reaches (id_holding, from seven columns), and the
    comparison view is built over the reachable records only (at 5M persons a view over all
    10M candidates took 10 GB). The blocking keys are built once for both kinds of seed.
    Every record's columns are read only while the reach is found; the view then reads the
    reachable records a chunk at a time."""
    if not set(SHARED.values()) <= set(records.column_names):
        raise ValueError("person_scope: the records lack phone_persons / address_persons "
                         "(with_shared_counts: link_plan counts them over every record of the run)")
    table = records.read(HOLDING_COLUMNS)
    held = _held(table, scope, trust_order)[0]
    free_seeds, held_seeds = reached(table, [scope & ~held, scope & held], cfg, records.read)
    near = scope | free_seeds | held_seeds
    release_memory()   # the blocking keys of every record (1.7 GB at 5M persons)
    held, rows, usable, conflict = _held(table, near, trust_order)
    sharing = _sharing_id(text_column(table, "id_number"), scope)
    del table
    reach = scope | free_seeds | (held_seeds & ~held)
    del free_seeds, held_seeds
    release_memory()   # the holders' frame and every record's columns
    log.info("relink scope: %d records; %d candidates, %d of them reachable", int(scope.sum()), int(near.sum()),
             int(reach.sum()))
    inside = np.searchsorted(rows, np.flatnonzero(reach))   # reach's rows among those judged
    found = person_neighbours(records, reach, scope[reach], usable[inside], conflict[inside], cfg)
    out = scope.copy()
    out[np.flatnonzero(reach)[found]] = True
    return out | sharing


def relink_scope(records: Records, kind: str, seeds: np.ndarray, previous_cluster: np.ndarray,
                 cfg: LinkConfig, trust_order: list[str]) -> np.ndarray:
    """Boolean mask over records (positional; read through Records, so the scope holds only the
    columns and rows it works on): the records to link again."""
    if len(seeds) != records.num_rows or len(previous_cluster) != records.num_rows:
        raise ValueError("relink_scope: seeds and previous_cluster must align with records")
    scope = whole_clusters(np.asarray(seeds, dtype=bool), previous_cluster)
    if not scope.any():
        return scope
    if kind == "person":
        scope = person_scope(records, scope, cfg, trust_order)
    elif kind == "enterprise":
        # identifiers that point at two masters prove nothing: the scope must hold every
        # holder of a token it touches, so grow it to a fixpoint (tokens are cheap)
        tokens = enterprise_tokens(_frame(records.read(SCOPE_COLUMNS[kind]), None, SCOPE_COLUMNS[kind]))
        while True:
            grown = whole_clusters(enterprise_neighbours(tokens, scope), previous_cluster)
            if grown.sum() == scope.sum():
                break
            scope = grown
    else:
        raise ValueError(f"relink_scope: unknown kind {kind!r} (expected person or enterprise)")
    return whole_clusters(scope, previous_cluster)
