"""Golden records: one value per element per master ID, chosen by the stewards' rules in
standards/survivorship.yaml, with lineage (element -> source_system that supplied it)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.keys import record_keys

from .common import factorize, group_sizes

RULES = ("trust_order", "most_recent", "most_frequent")


def entity_rules(survivorship: dict, entity: str) -> dict:
    """The entity's section ({trust_order, default, tiebreak, elements}); accepts the whole
    parsed YAML or just the section."""
    spec = survivorship.get(entity, survivorship) if isinstance(survivorship, dict) else None
    if not isinstance(spec, dict) or "trust_order" not in spec:
        raise ValueError(f"survivorship: no '{entity}' section with a trust_order list")
    for key in ("default", "tiebreak"):
        if spec.get(key, "trust_order") not in RULES:
            raise ValueError(f"survivorship.{entity}.{key}: unknown rule {spec.get(key)!r}; "
                             f"expected one of {', '.join(RULES)}")
    for element, rule in (spec.get("elements") or {}).items():
        if rule not in RULES:
            raise ValueError(f"survivorship.{entity}.elements.{element}: unknown rule {rule!r}; "
                             f"expected one of {', '.join(RULES)}")
    return spec


def trust_rank(source_system: pd.Series, trust_order: list[str]) -> np.ndarray:
    """0 for the most trusted source; sources not listed rank after all listed ones."""
    rank = {s: i for i, s in enumerate(trust_order)}
    codes, uniques = factorize(source_system)   # a handful of sources: look each up once
    by_code = [rank.get(v, len(trust_order)) for v in np.asarray(uniques, dtype=object)]
    return np.asarray(by_code + [len(trust_order)], dtype=np.int64)[codes]


def _dense_codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Dense code per row in ascending value order (-1 for NULL) and the number of codes.
    Arrow strings are ranked in Arrow (UTF-8 byte order is code point order); datetimes
    and numbers by their integer view; anything else via a sorted factorize."""
    present = values.notna().to_numpy()
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow" or \
            isinstance(dtype, pd.ArrowDtype) and (pa.types.is_string(dtype.pyarrow_dtype)
                                                 or pa.types.is_large_string(dtype.pyarrow_dtype)):
        arr = pa.chunked_array(values.array._pa_array)
        rank = pc.rank(arr, sort_keys="ascending",
                       tiebreaker="dense").to_numpy().astype(np.int64) - 1
        codes = np.where(present, rank, -1)
    elif np.issubdtype(getattr(dtype, "type", object), np.datetime64) and \
            isinstance(dtype, np.dtype):
        raw = values.to_numpy().view(np.int64)
        uniq, inverse = np.unique(raw[present], return_inverse=True)
        codes = np.full(len(values), -1, dtype=np.int64)
        codes[present] = inverse
    else:
        codes = pd.factorize(values.astype(str).where(values.notna()) if dtype == object
                             else values, sort=True)[0].astype(np.int64)
    return codes, int(codes.max()) + 1 if len(codes) else 0


def _pack(keys: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """Non-negative int keys with their ranges, most significant first, packed into as few
    int64 sort keys as fit (same order as sorting by the keys one after another)."""
    packed, cur, span = [], None, 1
    for key, size in keys:
        size = max(int(size), 1)
        if cur is not None and span * size < 2 ** 62:
            cur, span = cur * size + key, span * size
        else:
            if cur is not None:
                packed.append(cur)
            cur, span = key.astype(np.int64, copy=True), size
    packed.append(cur)
    return packed


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Unordered integer code per row (-1 for NULL): a hash factorize, no string sort."""
    codes, uniques = factorize(values)
    return codes, len(uniques)


NEIGHBOUR_SCAN = 16   # masters up to this many rows: values counted by comparing neighbours


def _counts_within(gid: np.ndarray, val: np.ndarray, n_vals: int, n_groups: int,
                   grouped: bool) -> np.ndarray:
    """Per row: rows sharing its (master id, value). grouped: rows come master by master;
    when every master is small, each row is compared with its next few neighbours (a few
    vector passes, no hashing); otherwise (master id, value) pairs are hashed."""
    counts = np.ones(len(gid), dtype=np.int64)
    sizes = np.bincount(gid, minlength=n_groups)
    widest = int(sizes.max()) if len(sizes) else 0
    if grouped and widest <= NEIGHBOUR_SCAN:
        for d in range(1, widest):
            same = (gid[d:] == gid[:-d]) & (val[d:] == val[:-d])
            counts[d:] += same
            counts[:-d] += same
        return counts
    multi = sizes[gid] > 1   # a master with a single row counts 1 without hashing
    counts[multi] = group_sizes(gid[multi] * max(n_vals, 1) + val[multi])
    return counts


def pick_rows(work: dict, element: str, rule: str, tiebreak: str, n_groups: int
              ) -> np.ndarray:
    """Row position of the winning value per master id (-1: no value). NULLs never win.
    Ties after rule and tiebreak: trust, then the smallest value, then the smallest record key.
    One sort over packed integer keys (master id, rule, tiebreak, trust); only the few masters
    whose best rows still differ in value or source are settled by value and key order."""
    val_code, n_vals = work["codes"][element]
    winner = np.full(n_groups, -1, dtype=np.int64)
    by_gid = work.get("by_gid")
    in_gid_order = by_gid is not None and len(by_gid) > 0 and work["gid"][by_gid[0]] >= 0
    if in_gid_order:   # master id order, then row order; per-row facts compressed, not gathered
        vals = val_code[by_gid]
        keep = vals >= 0
        rows = by_gid[keep]
        at = lambda name: _gid_ordered(work, name)[keep]  # noqa: E731
        val = vals[keep]
    else:
        rows = np.flatnonzero(val_code >= 0)
        at = lambda name: _fact(work, name)[rows]  # noqa: E731
        val = val_code[rows]
    if not len(rows):
        return winner
    gid, trust, n_trust = at("gid"), at("trust"), work["n_trust"]
    keys = {"trust_order": (trust, n_trust)}
    if "most_recent" in (rule, tiebreak):
        keys["most_recent"] = (at("recency"), work["recency_rank"][1])   # 0 = latest
    if "most_frequent" in (rule, tiebreak):
        counts = _counts_within(gid, val, n_vals, n_groups, in_gid_order)
        top = int(counts.max())
        keys["most_frequent"] = (top - counts, top)
    within = _pack([keys[rule], keys[tiebreak], (trust, n_trust)])
    if in_gid_order and len(within) == 1:
        return _pick_sorted(work, element, rows, gid, val, at("source"), within[0], winner)
    rows_sorted = np.argsort(rows, kind="stable")   # the general path wants row order
    rows, gid, val = rows[rows_sorted], gid[rows_sorted], val[rows_sorted]
    trust = trust[rows_sorted]
    keys = {k: (v[rows_sorted], size) for k, (v, size) in keys.items()}
    packed = _pack([(gid, n_groups), keys[rule], keys[tiebreak], (trust, n_trust)])
    order = np.lexsort(packed[::-1]) if len(packed) > 1 else np.argsort(packed[0], kind="stable")
    g = gid[order]
    start = np.ones(len(order), dtype=bool)
    start[1:] = g[1:] != g[:-1]
    change = start.copy()
    for key in packed:
        k = key[order]
        change[1:] |= k[1:] != k[:-1]
    run = np.cumsum(change)
    grp = np.cumsum(start) - 1
    starts = np.flatnonzero(start)
    top = run == run[starts][grp]                 # rows tied with the group's best
    v, src = val[order], work["source"][rows][order]
    open_ = top & ((v != v[starts][grp]) | (src != src[starts][grp]))
    winner[g[start]] = rows[order][start]
    if open_.any():
        sub = np.flatnonzero(top & np.isin(grp, grp[open_]))
        _settle(work, element, rows[order][sub], grp[sub], g[sub], winner)
    return winner


def _fact(work: dict, name: str) -> np.ndarray:
    """A per-row fact of the golden run: gid, trust, source or recency (0 = latest)."""
    return work["recency_rank"][0] if name == "recency" else work[name]


def _gid_ordered(work: dict, name: str) -> np.ndarray:
    """_fact in by_gid order, gathered once per golden run and shared by every element."""
    cache = work.setdefault("in_gid_order", {})
    if name not in cache:
        cache[name] = _fact(work, name)[work["by_gid"]]
    return cache[name]


def _pick_sorted(work: dict, element: str, rows: np.ndarray, gid: np.ndarray, val: np.ndarray,
                 src: np.ndarray, rank: np.ndarray, winner: np.ndarray) -> np.ndarray:
    """pick_rows on rows already in (master id, row) order with one packed rank per row
    (rule, tiebreak, trust): the best rank per master id by a segment minimum, no sort.
    Among rows sharing the best rank the first row wins unless their values or sources
    differ; those masters are settled by value, then record key."""
    start = np.ones(len(rows), dtype=bool)
    start[1:] = gid[1:] != gid[:-1]
    starts = np.flatnonzero(start)
    grp = np.cumsum(start) - 1
    best = np.minimum.reduceat(rank, starts)
    top = rank == best[grp]
    top_at = np.flatnonzero(top)
    first = np.ones(len(top_at), dtype=bool)
    first[1:] = grp[top_at][1:] != grp[top_at][:-1]
    win = top_at[first]                       # one per master id, in master id order
    winner[gid[win]] = rows[win]
    open_ = top & ((val != val[win][grp]) | (src != src[win][grp]))
    if open_.any():
        sub = np.flatnonzero(top & np.isin(grp, grp[open_]))
        _settle(work, element, rows[sub], grp[sub], gid[sub], winner)
    return winner


def _settle(work: dict, element: str, at: np.ndarray, groups: np.ndarray, slots: np.ndarray,
            winner: np.ndarray) -> None:
    """Rows `at` tie on rank within their group: the smallest value wins, then the smallest
    record key; the winner of each group goes to winner[slot]."""
    vrank = _dense_codes(work["frame"][element].iloc[at])[0]
    key = work["key"]().iloc[at]
    krank = pc.rank(pa.chunked_array(key.array._pa_array), sort_keys="ascending",
                    tiebreaker="first").to_numpy().astype(np.int64)
    o = np.lexsort((krank, vrank, groups))
    gs = groups[o]
    first = np.ones(len(o), dtype=bool)
    first[1:] = gs[1:] != gs[:-1]
    winner[slots[o][first]] = at[o][first]


def _lineage(elements: list[str], sources: dict[str, tuple[np.ndarray, list]]) -> np.ndarray:
    """JSON object element -> source per golden row (keys sorted). sources: element ->
    (source code per golden row, -1 for none; source names). Built once per distinct
    combination of sources, then taken per row."""
    ordered = sorted(elements)
    if not ordered:
        return np.array([], dtype=object)
    names = sources[ordered[0]][1]
    base = len(names) + 1
    combo = np.zeros(len(sources[ordered[0]][0]), dtype=np.int64)
    if base ** len(ordered) < 2 ** 62:
        for element in ordered:
            combo = combo * base + (sources[element][0] + 1)
        codes, uniq = pd.factorize(combo)
        digits = [(uniq // base ** (len(ordered) - 1 - i)) % base - 1 for i in range(len(ordered))]
    else:   # too many sources to pack: one combination per row
        codes = np.arange(len(combo))
        digits = [sources[e][0] for e in ordered]
    text = []
    for j in range(len(digits[0])):
        parts = [f'"{e}": {json.dumps(str(names[d[j]]))}' for e, d in zip(ordered, digits)
                 if d[j] >= 0]
        text.append("{" + ", ".join(parts) + "}")
    return np.asarray(text, dtype=object)[codes]


def _take_or_null(values: pd.Series, rows: np.ndarray, has: np.ndarray) -> pd.Series:
    """values at rows, NULL where not has, on a fresh RangeIndex. Arrow-backed columns take
    with null indices in Arrow (a pandas where on Arrow strings is a costly setitem)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        taken = pa.chunked_array(values.array._pa_array).take(pa.array(rows, mask=~has))
        return pd.Series(pd.arrays.ArrowStringArray(taken))
    return values.iloc[np.where(has, rows, 0)].reset_index(drop=True).where(pd.Series(has))


def golden_records(df: pd.DataFrame, id_col: str, elements: list[str], spec: dict,
                   codes: dict | None = None) -> pd.DataFrame:
    """One row per master id: survived elements, record_count, source_count, lineage JSON.
    codes: factorize results (codes, uniques) the caller already holds for columns of df
    (the same values), so they are not hashed again."""
    trust_order = list(spec["trust_order"])
    default, tiebreak = spec.get("default", "trust_order"), spec.get("tiebreak", "most_frequent")
    rules = spec.get("elements") or {}
    codes = codes or {}
    gid, uniques = codes[id_col] if id_col in codes else factorize(df[id_col])
    source_code, source_names = pd.factorize(df["source_system"])
    source_names = list(np.asarray(source_names, dtype=object))
    # record key: the smallest wins a full tie (built and ranked only where such a tie occurs)
    key_cache: list = []

    def key() -> pd.Series:
        if not key_cache:
            key_cache.append(record_keys(df, dtype="string[pyarrow]"))
        return key_cache[0]

    rank = {s: i for i, s in enumerate(trust_order)}
    trust = np.asarray([rank.get(s, len(trust_order)) for s in source_names] + [len(trust_order)],
                       dtype=np.int64)[source_code]
    work = {"gid": gid, "trust": trust, "n_trust": int(trust.max()) + 1 if len(trust) else 1,
            "source": source_code.astype(np.int64), "key": key,
            "frame": df, "codes": {}, "by_gid": np.argsort(gid, kind="stable")}
    used = {rules.get(e, default) for e in elements} | {tiebreak}
    if "most_recent" in used:
        if "updated_at" in df.columns:
            ts = pd.to_datetime(df["updated_at"], errors="coerce")
            rec = ts.to_numpy().view(np.int64).copy()
            rec[ts.isna().to_numpy()] = np.iinfo(np.int64).min
        else:
            rec = np.full(len(df), np.iinfo(np.int64).min, dtype=np.int64)
        uniq_rec, inverse = np.unique(-(rec.astype(np.float64)), return_inverse=True)
        work["recency_rank"] = (inverse.astype(np.int64), len(uniq_rec))
    n_groups = len(uniques)
    out = {id_col: pd.Series(uniques, dtype="string")}
    sources = {}
    for element in elements:
        work["codes"][element] = (codes[element][0], len(codes[element][1])) \
            if element in codes else _codes(df[element])
        win = pick_rows(work, element, rules.get(element, default), tiebreak, n_groups)
        has = win >= 0
        out[element] = _take_or_null(df[element], win, has)
        sources[element] = (np.where(has, source_code[np.where(has, win, 0)], -1),
                            list(source_names))
    frame = pd.DataFrame(out)
    frame["record_count"] = np.bincount(gid, minlength=n_groups).astype("int64")
    source_count = np.zeros(n_groups, dtype=np.int64)
    for s in range(len(source_names)):
        source_count += np.bincount(gid[source_code == s], minlength=n_groups) > 0
    frame["source_count"] = source_count
    frame["lineage"] = pd.Series(_lineage(elements, sources), dtype="string")
    return frame[[id_col] + elements + ["record_count", "source_count", "lineage"]]
