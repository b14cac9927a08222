"""Pure merging of linked partitions: master ids shared across partitions, summed stats, merged weights."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from govdata.transforms.keys import record_keys

if TYPE_CHECKING:   # names used in annotations only
    import pyarrow as pa


def _ids_in_several(xrefs: "list[pd.DataFrame | pa.Table]", id_col: str) -> list[str]:
    """The master ids found in more than one partition's xref (distinct per partition, then
    counted, in Arrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(xrefs) < 2:
        return []
    columns = [x[id_col] if isinstance(x, pa.Table) else pa.chunked_array([pa.array(x[id_col])]) for x in xrefs]
    distinct = [pc.unique(c.cast(pa.large_string())).drop_null() for c in columns]
    counts = pc.value_counts(pa.chunked_array(distinct, type=pa.large_string()))
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist()


def separate_shared_ids(xrefs: list[pd.DataFrame], id_col: str, prefix: str, run_id: str,
                        held: "pa.ChunkedArray | None" = None) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """A master ID claimed in two partitions (a person's records split by a wrong birth year)
    stays with the partition holding most of its records; the others get a new stable ID.
    held: the ids of the partitions not passed (none claimed): a new ID takes none of them either."""
    import pyarrow.compute as pc

    from govdata.transforms.linkage.common import hash_id

    claimed = _ids_in_several(xrefs, id_col)
    history = []
    if not len(claimed):
        return xrefs, pd.DataFrame(history)
    candidates = [x[x[id_col].isin(claimed)] for x in xrefs]
    sizes = pd.concat([c.groupby(id_col).size().rename(i) for i, c in enumerate(candidates)], axis=1).fillna(0)
    shared = sizes[(sizes > 0).sum(axis=1) > 1]
    moves = {}   # partition -> {old id: new id}
    for master_id, row in shared.iterrows():
        keeper = int(row.to_numpy().argmax())
        for i in row.index[(row > 0).to_numpy()]:
            if i != keeper:
                moves.setdefault(i, {})[master_id] = None
    # a new id never equals an id some partition holds (the hash of the moved part's smallest key
    # can be the very id it leaves, when that key was the cluster's smallest): such a clash takes
    # the next salt, as assign_stable_ids does
    taken = set().union(*(set(x[id_col].dropna().unique()) for x in xrefs))
    for i, renames in sorted(moves.items()):   # smallest member key per moved id: one pass per partition
        members = candidates[i][candidates[i][id_col].isin(list(renames))]
        smallest = record_keys(members).groupby(members[id_col].to_numpy()).min()
        for master_id in sorted(renames):
            key, salt = smallest[master_id], 0
            new_id = hash_id(prefix, key)
            while new_id in taken or (held is not None and pc.any(pc.equal(held, new_id)).as_py()):
                salt += 1
                new_id = hash_id(prefix, f"{key}\x1f{salt}")
            taken.add(new_id)
            renames[master_id] = new_id
        x = xrefs[i]
        moved = x[id_col].isin(list(renames))
        xrefs[i] = x.assign(**{id_col: x[id_col].where(~moved, x[id_col].map(renames))})
    for master_id, row in shared.iterrows():   # history in the order the ids were visited
        keeper = int(row.to_numpy().argmax())
        for i in row.index[(row > 0).to_numpy()]:
            if i != keeper:
                history.append({"old_id": master_id, "new_id": moves[i][master_id], "entity": "",
                                "reason": "partition_split", "run_id": run_id, "_part": i})
    return xrefs, pd.DataFrame(history)


def merged_model(stats: list[dict], previous: dict | None) -> dict | None:
    """The weights a later incremental run scores with: the pair-weighted mean of the
    partitions' m and u (an incremental run keeps the model it was given)."""
    if previous is not None:
        return previous
    fitted = [s for s in stats if s.get("m") and s.get("u")]
    if not fitted:   # deterministic linkage (enterprises): nothing to score with
        return {"m": {}, "u": {}, "source": "none"}
    pairs = [max(int(s.get("pairs_compared", 0)), 1) for s in fitted]
    mean = lambda name: {f: round(sum(s[name][f] * w for s, w in zip(fitted, pairs)) / sum(pairs), 6)  # noqa: E731
                         for f in fitted[0][name]}
    sources = sorted({str(s.get("weights", "prior")) for s in fitted})
    return {"m": mean("m"), "u": mean("u"), "source": "+".join(sources)}


def _sum_stats(stats: list[dict]) -> dict:
    """Counts add up over partitions; seconds too (CPU spent, not wall time)."""
    total: dict = {}
    for s in stats:
        for k, v in s.items():
            if k in ("m", "u"):   # probabilities: see merged_model
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[k] = total.get(k, 0) + v
            elif isinstance(v, dict):
                total[k] = _sum_stats([total.get(k, {}), v])
    return total
