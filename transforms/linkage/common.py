"""Pieces shared by person and enterprise linkage: record keys, constrained clustering,
stable master IDs, steward decisions."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.keys import KEYS, SEP, join_keys, record_keys

KEY_COLS = KEYS   # the old name, kept for importers
DECISION_COLS = ["left_source_system", "left_source_record_id", "right_source_system",
                 "right_source_record_id", "decision", "decided_by", "decided_at"]


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")


def _arrow_strings(values: pd.Series) -> pd.Series:
    """values as string[pyarrow]. Python-backed string columns hold only str or NA, so Arrow
    builds them directly (pandas' astype re-validates every value first)."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
        arr = pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
        return pd.Series(pd.arrays.ArrowStringArray(arr), index=values.index, name=values.name)
    return values.astype("string[pyarrow]")


def _arrow_chunk(values) -> pa.Array | None:
    """The Arrow string data behind an Arrow-backed string Series/array as one array, or None."""
    arr = values.array if isinstance(values, (pd.Series, pd.Index)) else values
    dtype = getattr(arr, "dtype", None)
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
            or isinstance(dtype, pd.ArrowDtype) and (pa.types.is_string(dtype.pyarrow_dtype)
                                                    or pa.types.is_large_string(dtype.pyarrow_dtype))):
        return None
    chunked = arr._pa_array
    return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()


def categorical_text(values: pa.Array, encoded: pa.DictionaryArray | None = None) -> pd.Categorical:
    """Arrow strings as a Categorical whose categories are Arrow-backed strings."""
    encoded = pc.dictionary_encode(values) if encoded is None else encoded
    categories = pd.Index(pd.arrays.ArrowStringArray(encoded.dictionary.cast(pa.large_string())))
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique(values) of integers, found by sorting: since numpy 2.3 a plain np.unique
    collects the values in a hash set, which once they number millions is ~100x slower than a
    sort (4M distinct pair codes: 7.2 s against 0.05 s)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iub":
        return np.unique(values)
    return distinct_of_sorted(np.sort(values))


def distinct_of_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array, in order."""
    if len(values) < 2:
        return values
    distinct = np.empty(len(values), dtype=bool)
    distinct[0] = True
    np.not_equal(values[1:], values[:-1], out=distinct[1:])
    return values[distinct]


def factorize(values) -> tuple[np.ndarray, object]:
    """pd.factorize(values): int64 codes in order of first appearance (-1 for NULL) and the
    uniques. Arrow strings are dictionary-encoded in Arrow (pandas also wraps the uniques in
    an Index, which costs more than the encoding itself)."""
    arr = _arrow_chunk(values)
    if arr is None:
        codes, uniques = pd.factorize(values)
        return codes.astype(np.int64, copy=False), uniques
    enc = pc.dictionary_encode(arr)
    indices = enc.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    codes = indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, pd.arrays.ArrowStringArray(enc.dictionary.cast(pa.large_string()))


def text_rank(uniques) -> np.ndarray:
    """Per code of factorize's uniques (distinct texts), its place in the texts' sort order:
    a tie broken on it does not depend on the order the rows came in."""
    arr = uniques._pa_array.combine_chunks() if isinstance(uniques, pd.arrays.ArrowStringArray) \
        else pa.array(np.asarray(uniques, dtype=object), pa.large_string())
    if not len(arr):
        return np.zeros(0, dtype=np.int64)
    return pc.rank(arr, sort_keys="ascending", tiebreaker="first").to_numpy().astype(np.int64) - 1


def factorize_once(cache: dict | None, name: str, values) -> tuple[np.ndarray, object]:
    """factorize(values), kept in cache under name: a column several linkage steps encode
    (conflicts, blocking, golden records) is hashed once. cache None: no sharing."""
    if cache is None:
        return factorize(values)
    if name not in cache:
        cache[name] = factorize(values)
    return cache[name]


def recode(codes: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the values under mask alone, in their order of first appearance (-1 off
    the mask), from codes of the whole column: factorize(values.where(mask)) on integers,
    no strings hashed again. Also returns the whole-column code of each new code."""
    out = np.full(len(codes), -1, dtype=np.int64)
    mask = mask & (codes >= 0)
    sub, old = pd.factorize(codes[mask])
    out[mask] = sub
    return out, old.astype(np.int64, copy=False)


def group_sizes(keys: np.ndarray) -> np.ndarray:
    """How many rows share each row's key: a hash factorize and a bincount, no sort."""
    codes = pd.factorize(keys)[0]
    return np.bincount(codes)[codes]


def prepare_records(records: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    """Positional index, every expected column present (absent optional ones as NA),
    and a clear error on duplicate record keys."""
    require_columns(records, KEY_COLS, what)
    out = records.reset_index(drop=True)   # a new frame: columns below are replaced, not edited
    for col in columns:
        if col not in out.columns:
            out[col] = pd.NA
    # Arrow-backed strings: vectorised comparisons, factorize and .str methods in C++
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = _arrow_strings(out[col])
    src, rid = _arrow_chunk(out["source_system"]), _arrow_chunk(out["source_record_id"])
    if src is not None and rid is not None and src.type == rid.type:   # one Arrow pass
        key = pd.Series(pd.arrays.ArrowStringArray(join_keys(src, rid)), index=out.index)
    else:
        key = out["source_system"] + SEP + out["source_record_id"]
    # distinct non-NULL joined keys prove distinct (source, id) pairs; anything else is
    # checked column by column
    joined = _arrow_chunk(key)
    if joined is None or joined.null_count or len(pc.unique(joined)) != len(joined):
        dup = out.duplicated(KEY_COLS, keep=False)
        if dup.any():
            first = out.loc[dup, KEY_COLS].iloc[0]
            raise ValueError(f"{what}: duplicate record key ({first.source_system}, "
                             f"{first.source_record_id}); {int(dup.sum())} rows share keys")
    out["_key"] = key
    return out


def singleton_groups(n: int) -> np.ndarray:
    """Each record's starting group before any link: record i alone in group n + i. ID groups
    are numbered 0..(distinct IDs - 1) < n, so the two ranges never meet (ConstrainedUnion
    takes a group below its n_id_groups for one holding an ID)."""
    return np.arange(n, dtype=np.int64) + n


class ConstrainedUnion:
    """Union-find over initial groups that refuses merges joining two different held
    identifiers (cannot-link) or a pair a steward called non-match; steward matches force."""

    def __init__(self, n_id_groups: int, cannot: dict[int, set[int]],
                 group_of_record: np.ndarray, source_mask: np.ndarray | None = None):
        """Groups 0..n_id_groups-1 each hold one identifier (their own number); the others
        hold none."""
        self.parent: dict[int, int] = {}
        self.n_id_groups = n_id_groups
        self.ids: dict[int, frozenset] = {}      # merged roots -> identifier groups held
        self.cannot = cannot                     # record -> records it must not join
        self.group_of = group_of_record
        self.members_nm: dict[int, set[int]] = {}  # root -> constrained records inside
        self.source_mask = source_mask              # group -> bit per source_system
        self.masks: dict[int, int] = {}             # merged roots -> sources inside
        for rec in cannot:
            self.members_nm.setdefault(int(group_of_record[rec]), set()).add(rec)

    def find(self, g: int) -> int:
        root = g
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(g, g) != root:
            self.parent[g], g = root, self.parent[g]
        return root

    def held(self, root: int) -> frozenset:
        if root in self.ids:
            return self.ids[root]
        return frozenset([root]) if root < self.n_id_groups else frozenset()

    def blocked(self, ra: int, rb: int) -> str | None:
        ia, ib = self.held(ra), self.held(rb)
        if ia and ib and ia != ib:
            return "different_id"
        na, nb = self.members_nm.get(ra, set()), self.members_nm.get(rb, set())
        if na and nb and any(self.cannot[x] & nb for x in na):
            return "steward_non_match"
        return None

    def mask(self, root: int) -> int:
        if root in self.masks:
            return self.masks[root]
        return int(self.source_mask[root]) if self.source_mask is not None else 0

    def union(self, a_group: int, b_group: int, force: bool = False,
              distinct_sources: bool = False) -> str | None:
        """Merge; returns None on success or the reason it was refused. distinct_sources:
        refuse when both sides already hold a record of the same source (a department
        rarely files one person twice without the ID telling so)."""
        ra, rb = self.find(a_group), self.find(b_group)
        if ra == rb:
            return None
        reason = self.blocked(ra, rb)
        if reason is None and distinct_sources and self.mask(ra) & self.mask(rb):
            reason = "same_source"
        if reason == "steward_non_match" or (reason and not force):
            return reason
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.ids[ra] = self.held(ra) | self.held(rb)
        self.ids.pop(rb, None)
        if self.source_mask is not None:
            self.masks[ra] = self.mask(ra) | self.mask(rb)
            self.masks.pop(rb, None)
        if rb in self.members_nm:
            self.members_nm.setdefault(ra, set()).update(self.members_nm.pop(rb))
        return None

    def labels(self, groups: np.ndarray) -> np.ndarray:
        """Root per group, vectorised: only groups that were merged need a lookup."""
        out = np.asarray(groups, dtype=np.int64).copy()
        if self.parent:
            moved = np.fromiter(self.parent.keys(), dtype=np.int64)
            root = np.array([self.find(int(g)) for g in moved], dtype=np.int64)
            lookup = pd.Series(root, index=moved)
            hit = np.isin(out, moved)
            out[hit] = lookup.reindex(out[hit]).to_numpy()
        return out


def _argsort_text(values: pd.Series) -> np.ndarray:
    """Stable ascending order of strings, sorted in Arrow (code point order, as Python's)."""
    arr = pa.chunked_array(pd.Series(values).astype("string[pyarrow]").array._pa_array)
    return pc.sort_indices(arr).to_numpy()


def hash_id(prefix: str, key: str) -> str:
    return prefix + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12].upper()


def assign_stable_ids(keys: pd.Series, cluster: np.ndarray, records: pd.DataFrame,
                      previous_xref: pd.DataFrame | None, id_col: str, prefix: str,
                      entity: str, run_id: str, previous_ids: pd.Series | None = None
                      ) -> tuple[pd.Series, pd.DataFrame]:
    """Master ID per record. A cluster keeps the previous ID most of its records held
    (ties: smallest ID; an ID claimed by several clusters stays with the largest share);
    others get prefix + hash of their smallest member key, so a full relink is repeatable.
    A new ID is never a previous one: previous_ids names them all when previous_xref holds only
    these records' rows (default: previous_xref's ids).
    Returns (ids aligned to records, master_id_history rows)."""
    cluster = np.asarray(cluster, dtype=np.int64)
    all_prev = previous_ids
    if previous_xref is not None and len(previous_xref):
        require_columns(previous_xref, KEY_COLS + [id_col], "previous_xref")
        all_prev = previous_xref[id_col] if previous_ids is None else previous_ids
        pcode, puniq = factorize(_previous_ids(keys, previous_xref, id_col))   # unordered
    else:
        pcode, puniq = np.full(len(cluster), -1, dtype=np.int64), []
    # clusters by smallest member key (string groupby-min is slow: sort the keys once; a
    # cluster's first appearance in key order is its smallest key)
    by_key = _argsort_text(keys)
    in_key_order = cluster[by_key]
    first = np.flatnonzero(~pd.Series(in_key_order).duplicated().to_numpy())
    ranked = pd.Index(in_key_order[first])   # position = rank by smallest member key
    # records per (cluster, previous id), on integer codes
    held = pcode >= 0
    width = max(len(puniq), 1)
    combo, n = np.unique(cluster[held] * width + pcode[held], return_counts=True)
    sb_cluster, sb_prev = combo // width, combo % width
    sb_rank = ranked.get_indexer(sb_cluster)
    # each cluster's favourite previous id: most records, then the smallest id
    order = np.lexsort((_tie_rank(sb_cluster, sb_prev, n, puniq), -n, sb_cluster))
    fav = order[np.r_[True, sb_cluster[order][1:] != sb_cluster[order][:-1]]] if len(order) else order
    # an id claimed by several clusters stays with the biggest share (tie: smallest member)
    order = np.lexsort((sb_rank[fav], -n[fav], sb_prev[fav]))
    ranked_fav = fav[order]
    winners = ranked_fav[np.r_[True, sb_prev[ranked_fav][1:] != sb_prev[ranked_fav][:-1]]] \
        if len(ranked_fav) else ranked_fav
    puniq = np.asarray(puniq, dtype=object)
    kept_clusters, kept_ids = sb_cluster[winners], puniq[sb_prev[winners]]
    # the other clusters, in the order of their smallest member key
    is_new = np.ones(len(ranked), dtype=bool)
    is_new[ranked.get_indexer(kept_clusters)] = False
    new_at = np.flatnonzero(is_new)
    new_clusters = ranked.to_numpy()[new_at]
    new_keys = pd.Series(keys).iloc[by_key[first[new_at]]].to_numpy(dtype=object)
    if _has_equal_neighbours(keys, by_key):   # equal keys: order as a stable text sort does
        in_label_order = np.argsort(new_clusters, kind="stable")
        text_order = in_label_order[_argsort_text(pd.Series(new_keys[in_label_order]))]
        new_clusters, new_keys = new_clusters[text_order], new_keys[text_order]
    fresh = _fresh_ids(prefix, new_keys, all_prev)
    labels = pd.Index(np.concatenate([kept_clusters, new_clusters]))
    final = np.concatenate([kept_ids, np.asarray(fresh, dtype=object)]) if len(fresh) else kept_ids
    # one string per cluster, taken per record (validating 1 string per record costs more)
    ids = pd.Series(pd.array(final, dtype="string").take(labels.get_indexer(cluster)),
                    index=range(len(cluster)), name="cluster")
    history = _history(sb_cluster, sb_prev, puniq, winners, final[labels.get_indexer(sb_cluster)],
                       entity, run_id)
    return ids, history


def _tie_rank(sb_cluster: np.ndarray, sb_prev: np.ndarray, n: np.ndarray, puniq) -> np.ndarray:
    """Per (cluster, previous id) row, a key ordering the ids by text where it matters: among
    a cluster's ids tied on the most records. Only those few ids are sorted, not them all.
    Rows come cluster by cluster (np.unique order)."""
    rank = np.zeros(len(sb_prev), dtype=np.int64)
    if not len(sb_prev):
        return rank
    start = np.r_[True, sb_cluster[1:] != sb_cluster[:-1]]
    seg = np.cumsum(start) - 1
    top = n == np.maximum.reduceat(n, np.flatnonzero(start))[seg]
    tied = top & (np.bincount(seg[top], minlength=int(seg[-1]) + 1)[seg] > 1)
    if tied.any():
        codes = sorted_unique(sb_prev[tied])
        by_text = pc.sort_indices(pa.array(puniq.take(codes))).to_numpy()
        text_rank = np.empty(len(codes), dtype=np.int64)
        text_rank[by_text] = np.arange(len(codes))
        rank[tied] = text_rank[np.searchsorted(codes, sb_prev[tied])]
    return rank


def _has_equal_neighbours(keys: pd.Series, order: np.ndarray) -> bool:
    """Whether two keys are equal (they are adjacent in sorted order)."""
    if len(order) < 2:
        return False
    text = pa.chunked_array(pd.Series(keys).astype("string[pyarrow]").array._pa_array).take(order)
    return bool(pc.any(pc.equal(text[1:], text[:-1])).as_py())


def _fresh_ids(prefix: str, keys: np.ndarray, all_prev: pd.Series | None) -> list[str]:
    """prefix + hash of each key (in key order), never a previous master id (the ids kept are
    previous ids) nor an id given before it: a clash takes the next salt, key\x1f1, \x1f2…
    Salted in rounds over the clashing keys only, looked up in Arrow (an incremental partition
    knows every previous id: millions, never a Python set)."""
    fresh = np.array([hash_id(prefix, k) for k in keys], dtype=object)
    if not len(fresh):
        return []
    prev = None if all_prev is None else \
        pa.chunked_array(_arrow_strings(all_prev).array._pa_array).cast(pa.large_string()).combine_chunks()
    salt = np.zeros(len(fresh), dtype=np.int64)
    while True:
        ids = pa.array(fresh, type=pa.large_string())
        clash = pd.Series(fresh).duplicated().to_numpy()   # a later key than its twin
        if prev is not None:
            clash |= pc.is_in(ids, value_set=prev).to_numpy(zero_copy_only=False)
        if not clash.any():
            return fresh.tolist()
        salt[clash] += 1
        fresh[clash] = [hash_id(prefix, f"{k}\x1f{n}") for k, n in zip(keys[clash], salt[clash])]


def _previous_ids(keys: pd.Series, previous_xref: pd.DataFrame, id_col: str) -> pd.Series:
    """Each record's master id in the previous xref (NULL for a record new to the master),
    matched on the record key in Arrow."""
    prev = {c: _arrow_strings(previous_xref[c]) for c in KEY_COLS + [id_col]}
    text = lambda s: pa.chunked_array(pa.array(s.array)).cast(pa.string())  # noqa: E731
    prev_key = join_keys(text(prev["source_system"]), text(prev["source_record_id"]))
    own = text(pd.Series(keys).astype("string[pyarrow]"))
    at = pc.index_in(own, value_set=prev_key.combine_chunks())
    ids = pa.chunked_array(pa.array(prev[id_col].array)).take(at)
    return pd.Series(pd.arrays.ArrowStringArray(ids), dtype="string[pyarrow]")


def _history(sb_cluster: np.ndarray, sb_prev: np.ndarray, puniq: np.ndarray,
             winners: np.ndarray, new_id: np.ndarray, entity: str, run_id: str) -> pd.DataFrame:
    """Rows (cluster, previous id code) whose cluster's id (new_id) is not that previous id:
    a previous id that survives elsewhere was split off, one that no cluster kept was merged.
    Worked out on codes (a new id is never a previous one); strings only for the moved."""
    cols = ["old_id", "new_id", "entity", "reason", "run_id"]
    if not len(sb_cluster):
        return pd.DataFrame(columns=cols, dtype="string")
    kept = np.full(int(sb_cluster.max()) + 1, -1, dtype=np.int64)   # cluster -> previous id code kept
    kept[sb_cluster[winners]] = sb_prev[winners]
    survives = np.zeros(len(puniq), dtype=bool)
    survives[sb_prev[winners]] = True
    moved = kept[sb_cluster] != sb_prev
    old = sb_prev[moved]
    out = pd.DataFrame({"old_id": puniq[old], "new_id": new_id[moved], "entity": entity,
                        "reason": np.where(survives[old], "split", "merge"), "run_id": run_id})
    return out.drop_duplicates().sort_values(["old_id", "new_id"]).reset_index(drop=True).astype("string")


def decision_pairs(decisions: pd.DataFrame | None, key_to_pos: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Positions (left, right) of steward 'match' and 'non_match' pairs present in this run.
    The latest decision per pair wins; pairs with a record not in this run are ignored."""
    empty = np.zeros((0, 2), dtype=np.int64)
    if decisions is None or decisions.empty:
        return empty, empty
    require_columns(decisions, DECISION_COLS[:5], "decisions")
    d = decisions.copy()
    bad = ~d["decision"].isin(["match", "non_match"])
    if bad.any():
        raise ValueError(f"decisions: column decision has {int(bad.sum())} value(s) other than "
                         f"'match'/'non_match', e.g. {d.loc[bad, 'decision'].iloc[0]!r}")
    lk, rk = record_keys(d, "left_"), record_keys(d, "right_")
    d["a"], d["b"] = np.minimum(lk, rk), np.maximum(lk, rk)
    if "decided_at" in d.columns:
        d = d.sort_values("decided_at", kind="stable")
    d = d.drop_duplicates(["a", "b"], keep="last")
    d["pa"], d["pb"] = d["a"].map(key_to_pos), d["b"].map(key_to_pos)
    d = d.dropna(subset=["pa", "pb"])
    as_pairs = lambda m: d.loc[m, ["pa", "pb"]].to_numpy(dtype=np.int64).reshape(-1, 2)
    return as_pairs(d["decision"] == "match"), as_pairs(d["decision"] == "non_match")


def pair_id(left_key: pd.Series, right_key: pd.Series) -> pd.Series:
    a, b = np.minimum(left_key, right_key), np.maximum(left_key, right_key)
    return pd.Series([hashlib.sha1(f"{x}\x1e{y}".encode()).hexdigest()[:16] for x, y in zip(a, b)],
                     index=left_key.index, dtype="string")
