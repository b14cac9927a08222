"""Stages 4a-c, link: plan the blocking partitions, link each partition, merge them per entity."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import pandas as pd

from govdata.failpoints import failpoint
from govdata.lake import read_parquet, run_path, write_parquet
from govdata.memory import release_memory
from govdata.scratch import scratch_dir
from govdata.stages.common import LINKERS, OUTPUTS, PERSON, _timed, peak_rss_mb
from govdata.stages.link_inputs import (_decisions, _previous_file, incremental_scope, link_config,
                                        partition_rows)

if TYPE_CHECKING:   # names used in annotations only
    import pyarrow as pa


@_timed
def link_plan(normalised: list[dict], run: dict) -> dict:
    """Splits each entity's records to link into blocking partitions (hand-off files in the
    lake). Incremental runs link only the scope of what changed (transforms/linkage/
    incremental.py); the other records keep their xref rows.
    Memory is bounded by the columns each step computes on, not by whole records: the counts,
    the scope and the partitions each read from the lake the columns (and the records) they need
    (LakeRecords); the records themselves then stream from the snapshots, a batch at a time,
    each row appended to its partition's file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from govdata.stages.link_records import LakeRecords
    from govdata.transforms.linkage.plan import KEYS, assign_partitions, previous_partitions
    from govdata.transforms.linkage.partition import PARTITION_COLUMNS
    from govdata.transforms.linkage.shared_values import COLUMNS as SHARED_COLUMNS, shared_counts, with_counts

    start = time.perf_counter()
    partitions = []
    with scratch_dir("govdata-plan-") as scratch:   # previous xref copies
        for kind in LINKERS:
            paths = [n["current_path"] for n in normalised if n["kind"] == kind]
            if not paths:
                continue
            source = LakeRecords(paths)
            if source.num_rows == 0:
                continue
            # counted over every record: partitions and scopes weigh a phone alike
            counts = shared_counts(source.read(SHARED_COLUMNS)) if kind == PERSON else {}
            release_memory()   # the columns counted
            source = source.with_counts(counts)
            plan = {"mode": "full", "records": source.num_rows}
            scope = None
            incremental = incremental_scope(source, kind, normalised, run, scratch)
            if incremental is not None:
                scope = incremental["scope"]
                plan = {**plan, "mode": "incremental", "model": incremental["model"],
                        "carried_path": _hand_off_file_rows(run, incremental.pop("previous"),
                                                            incremental.pop("carried_rows"), f"{kind}_carried_xref"),
                        "seeds": incremental["seeds"], "relinked": int(scope.sum())}
            # the records to link, in what the partitions read and the keys
            records = source.read([c for c in source.column_names if c in PARTITION_COLUMNS or c in KEYS], scope)
            release_memory()
            n = max(1, -(-records.num_rows // partition_rows()))
            parts = assign_partitions(records, n, _decisions(run, kind))
            # the previous xref split along the records' partitions: each task reads its slice,
            # not the whole master (a copy on disk: only its keys are read, to place each row);
            # an incremental run's new ids must also miss the carried ones: every previous id
            # is handed off once, as one column
            previous = _previous_file(run, kind, scratch)
            previous_part = None if previous is None else \
                previous_partitions(pq.read_table(previous, columns=KEYS), records, parts)
            if previous is not None and plan["mode"] == "incremental":
                plan["previous_ids_path"] = _hand_off_previous_ids(run, previous, kind)
            del records
            schema = with_counts(pa.unify_schemas(source.schemas, promote_options="permissive").empty_table(),
                                 {c: [] for c in counts}).schema
            written = _write_partitions(paths, schema, counts, scope, parts,
                                        lambda p, kind=kind: _hand_off_path(run, f"{kind}_{p}"))
            previous_paths = {} if previous is None else _hand_off_file_partitions(
                run, previous, previous_part, {p: f"{kind}_{p}_previous_xref" for p in written})
            for p, (path, rows) in sorted(written.items()):
                entry = {"kind": kind, "partition": p, "path": path, "rows": rows, "plan": plan}
                if previous is not None:
                    entry["previous_path"] = previous_paths[p]
                partitions.append(entry)
    # the DAG maps over the partitions alone: each carries the plan's seconds to link_merge
    plan_seconds = round(time.perf_counter() - start, 3)
    plan_peak = peak_rss_mb()
    return {"partitions": [{**p, "plan_seconds": plan_seconds, "plan_peak_rss_mb": plan_peak} for p in partitions]}


def _hand_off_previous_ids(run: dict, path: str, kind: str) -> str:
    """The distinct master ids of the previous xref file at path, as a one-column hand-off file
    (at 5M persons 5M short strings: what each incremental partition reads, not 14M rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    id_col = LINKERS[kind][2]
    ids = pc.unique(pq.read_table(path, columns=[id_col])[id_col].combine_chunks()).drop_null()
    return write_parquet(pa.table({id_col: ids}), _hand_off_path(run, f"{kind}_previous_ids"))


# Rows per batch when the records stream from the snapshots into their partitions: a batch and
# its split are the only whole records in memory (about 250 MB of person records).
PLAN_BATCH_ROWS = 250_000


def _hand_off_path(run: dict, name: str) -> str:
    from govdata.lake import IPC_SUFFIX

    return run_path(run["lake"], run["run_id"], "link", "input", name + IPC_SUFFIX)


# Rows of a file read at once when some of its rows are handed off (_hand_off_file_rows, _partitions).
HAND_OFF_TAKE_ROWS = 1_000_000
NO_ROWS = np.empty(0, dtype=np.int64)


def _hand_off_file_rows(run: dict, path: str, rows, name: str) -> str:
    """Hands off the rows at `rows` (positions) of the Parquet file at path, in the file's order:
    _hand_off_file_partitions with one partition."""
    import pyarrow.parquet as pq

    part_of = np.full(pq.ParquetFile(path).metadata.num_rows, -1, dtype=np.int8)
    part_of[rows] = 0
    return _hand_off_file_partitions(run, path, part_of, {0: name})[0]


def _hand_off_file_partitions(run: dict, path: str, part_of, names: dict[int, str]) -> dict[int, str]:
    """Hands off each row of the Parquet file at path to the file of its partition (part_of: per
    row, -1 for none), in the file's order, a batch at a time: partition -> its file (every
    partition in `names` gets one, even with no row). One pass over the file, whichever the
    number of partitions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from govdata.lake import open_writer
    from govdata.transforms.linkage.plan import rows_by_partition

    source = pq.ParquetFile(path)
    out = {p: _hand_off_path(run, name) for p, name in names.items()}
    writers = {p: open_writer(file, source.schema_arrow) for p, file in out.items()}
    try:
        for writer, _ in writers.values():   # even none: the file has its schema
            writer.write_table(source.schema_arrow.empty_table())
        offset = 0
        for batch in source.iter_batches(batch_size=HAND_OFF_TAKE_ROWS):
            table = pa.Table.from_batches([batch])
            for p, rows in rows_by_partition(part_of[offset:offset + batch.num_rows]).items():
                if p in writers:
                    writers[p][0].write_table(table.take(rows))
            offset += batch.num_rows
    finally:
        for writer, handle in writers.values():
            writer.close()
            handle.close()
    return out


def _write_partitions(paths: list[str], schema, counts: dict, scope, parts, path_of) -> dict[int, tuple[str, int]]:
    """Streams every record of the snapshots at paths (in order) into its partition's hand-off
    file: conformed to schema, with its shared-value counts, records outside an incremental
    scope left out. parts: the partition of each record in scope, in the same order.
    Returns partition -> (path, rows); partition 0 exists even when no record is in scope."""
    import numpy as np
    import pyarrow as pa

    from govdata.lake import dataset, iter_tables, open_writer
    from govdata.transforms.linkage.plan import _split_by_partition, conform
    from govdata.transforms.linkage.shared_values import with_counts

    rows_total = sum(dataset(path).count_rows() for path in paths)
    part_of = np.full(rows_total, -1, dtype=np.int64)   # per record, in scope or not
    if scope is None:
        part_of[:] = parts
    else:
        part_of[np.asarray(scope)] = parts
    writers: dict[int, tuple] = {}
    rows: dict[int, int] = {}

    def append(p: int, table: pa.Table) -> None:
        if p not in writers:
            writers[p] = open_writer(path_of(p), schema)
        writers[p][0].write_table(table)
        rows[p] = rows.get(p, 0) + table.num_rows

    offset = 0
    try:
        for path in paths:
            for batch in iter_tables(path, PLAN_BATCH_ROWS):
                at = slice(offset, offset + batch.num_rows)
                offset += batch.num_rows
                batch_parts = part_of[at]
                keep = batch_parts >= 0
                if not keep.any():
                    continue
                table = with_counts(conform(batch, schema),
                                    {c: v[at] for c, v in counts.items()})
                for p, piece in _split_by_partition(table.filter(pa.array(keep)), batch_parts[keep]).items():
                    append(p, piece)
        if not writers:
            append(0, schema.empty_table())
    finally:
        for writer, handle in writers.values():
            writer.close()
            handle.close()
    return {p: (path_of(p), rows[p]) for p in writers}


@_timed
def link_partition(part: dict, run: dict) -> dict:
    """Links one partition against the master data of the previous run. An incremental run
    scores with the previous run's weights, so its links are the ones a full relink makes."""
    import govdata.transforms.linkage as linkage
    from govdata.lake import IPC_SUFFIX
    from govdata.standards.registry import load_survivorship
    from govdata.transforms.keys import record_keys

    if part["rows"] == 0:
        return {**part, "paths": {}, "stats": {}}
    fn_name = LINKERS[part["kind"]][0]
    records = read_parquet(part["path"], arrow_strings=True)
    plan = part.get("plan", {})
    # the partition's slice of the previous xref (link_plan writes one whenever a previous
    # master exists); incremental: every previous master id too, so a new id never takes a
    # carried one
    previous = read_parquet(part["previous_path"], arrow_strings=True) if part.get("previous_path") else None
    ids_path = plan.get("previous_ids_path")
    previous_ids = read_parquet(ids_path, arrow_strings=True).iloc[:, 0] if ids_path else None
    decisions = _decisions(run, part["kind"])
    if decisions is not None and len(decisions):
        keys = pd.Index(record_keys(records).unique())   # hashed once, not per isin
        decisions = decisions[record_keys(decisions, "left_").isin(keys) & record_keys(decisions, "right_").isin(keys)]
    config = link_config(part["kind"], plan.get("model"))   # an incremental plan's previous weights
    result = getattr(linkage, fn_name)(records, previous_xref=previous, previous_ids=previous_ids, decisions=decisions,
                                       survivorship=load_survivorship(), run_id=run["run_id"], config=config)
    stem = f"{part['kind']}_{part['partition']}"
    paths = {name: write_parquet(getattr(result, name), run_path(run["lake"], run["run_id"], "link", "parts",
                                                                  f"{stem}_{name}{IPC_SUFFIX}"))
             for name in OUTPUTS}
    failpoint("link")
    return {**part, "paths": paths, "stats": json.loads(json.dumps(result.stats, default=str))}


@_timed
def link_merge(parts: list[dict], run: dict) -> dict:
    """One xref / golden / history / review / evidence file per entity from the partitions,
    streamed: each file is written a batch at a time, partition after partition (conformed to
    the schema their files unify to), so memory holds a batch and the partitions' distinct
    master ids, not the partitions. Only master IDs shared across partitions are rewritten. An
    incremental run appends the carried xref rows of the records it did not relink."""
    from concurrent.futures import ThreadPoolExecutor

    from govdata.transforms.linkage.merge import _sum_stats, merged_model

    out: dict = {"paths": {}, "stats": {}}
    for kind, (_, _, id_col) in LINKERS.items():
        planned = [p for p in parts if p["kind"] == kind]
        if not planned:
            continue
        plan = planned[0].get("plan", {"mode": "full"})
        mine = [p for p in planned if p["paths"]]
        pieces: dict = {"xref": []}
        ids = []   # each partition's distinct master ids
        if mine:
            pieces = {name: [_file_piece(p["paths"][name]) for p in mine] for name in OUTPUTS}
            ids = [_distinct_ids(p["paths"]["xref"], id_col) for p in mine]
            _separate_shared(mine, pieces, ids, kind, id_col, run["run_id"])
        if plan.get("carried_path"):
            carried = plan["carried_path"]
            clash = _carried_clash(carried, id_col, ids)
            if clash:   # the scope holds whole previous clusters: a clash is a bug, not data
                raise RuntimeError(f"{kind}: {clash} relinked master id(s) also held by carried records")
            # as the first partition's xref (the carried rows come last)
            pieces["xref"].append(_carried_piece(carried, pieces["xref"][0].schema if pieces["xref"] else None))
        with ThreadPoolExecutor(2) as pool:   # Parquet encoding releases the GIL: both cores write
            written = pool.map(lambda name: _write_merged(pieces[name], run_path(
                run["lake"], run["run_id"], "link", f"{kind}_{name}.parquet")), list(pieces))
            out["paths"].update({f"{kind}_{name}": path for name, path in zip(list(pieces), written)})
        stats = [p["stats"] for p in mine]
        if plan.get("mode") == "incremental":   # the review questions about these records were re-asked
            out.setdefault("relinked_inputs", {})[kind] = [p["path"] for p in mine]
        out["stats"][kind] = {"partitions": len(mine), **_sum_stats(stats), "mode": plan.get("mode", "full"),
                              "records_relinked": sum(p["rows"] for p in planned),
                              "records_carried": (plan.get("records", 0) - sum(p["rows"] for p in planned)),
                              "model": merged_model(stats, plan.get("model"))}
    out["partition_seconds"] = [p.get("seconds", 0) for p in parts]
    out["plan_seconds"] = parts[0].get("plan_seconds", 0) if parts else 0
    # the stage's peak memory is its largest task's (link_merge's own is added by _timed)
    out["inputs_peak_rss_mb"] = max([p.get("peak_rss_mb", 0) for p in parts]
                                    + [parts[0].get("plan_peak_rss_mb", 0) if parts else 0])
    return out


# Rows per table when link_merge streams a partition's file (or the carried xref) into the merged one
MERGE_BATCH_ROWS = 250_000


class _Piece(NamedTuple):
    """One part of a merged output: its schema and rows (from the file's footer, before any is
    read) and its tables, read when written."""
    schema: "pa.Schema"
    rows: int
    tables: Callable[[], Iterable["pa.Table"]]


def _file_tables(path: str, columns: list[str] | None = None) -> Iterator["pa.Table"]:
    """A lake file a batch at a time (an Arrow IPC file: whole)."""
    from govdata.lake import ARROW_SUFFIX, iter_tables, read_arrow

    if path.endswith(ARROW_SUFFIX):
        yield read_arrow(path, columns)
    else:
        yield from iter_tables(path, MERGE_BATCH_ROWS, columns)


def _file_piece(path: str) -> _Piece:
    from govdata.lake import ARROW_SUFFIX, parquet_rows, parquet_schema, read_arrow

    if path.endswith(ARROW_SUFFIX):
        table = read_arrow(path)
        return _Piece(table.schema, table.num_rows, lambda: [table])
    return _Piece(parquet_schema(path), parquet_rows(path), lambda: _file_tables(path))


def _carried_piece(path: str, schema: "pa.Schema | None") -> _Piece:
    """The carried xref a batch at a time, each cast to schema (when given)."""
    piece = _file_piece(path)
    return _Piece(schema or piece.schema, piece.rows,
                  lambda: (t.cast(schema) if schema else t for t in _file_tables(path)))


def _table_piece(table: "pa.Table") -> _Piece:
    return _Piece(table.schema, table.num_rows, lambda: [table])


def _write_merged(pieces: list[_Piece], path: str) -> str:
    """The pieces' rows in order in one lake file, as pa.concat_tables(promote_options=
    "permissive") of the pieces that have rows (of the first piece when none has) would give
    them: same schema (metadata from the first), same rows, written a table at a time."""
    import pyarrow as pa

    from govdata.lake import TableWriter

    schema = pa.unify_schemas([p.schema for p in pieces if p.rows] or [pieces[0].schema],
                              promote_options="permissive")
    with TableWriter(path, schema) as writer:
        for piece in pieces:
            if not piece.rows:
                continue
            for table in piece.tables():   # promoted to the unified schema as concat_tables does
                writer.write(pa.concat_tables([schema.empty_table(), table], promote_options="permissive"))
    return path


def _distinct_ids(path: str, id_col: str) -> "pa.Array":
    """The distinct master ids (null included) of a partition's xref, from its id column alone."""
    import pyarrow.compute as pc

    from govdata.lake import read_arrow

    return pc.unique(read_arrow(path, [id_col])[id_col])


def _separate_shared(mine: list[dict], pieces: dict, ids: list, kind: str, id_col: str, run_id: str) -> None:
    """The rare case of a master id found in several partitions (separate_shared_ids, pandas):
    only the xrefs (and golden records) of the partitions holding such an id are loaded, and
    replaced in pieces and ids by their rewritten tables; the moves are added to the history."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from govdata.lake import read_arrow
    from govdata.transforms.linkage.merge import _ids_in_several, separate_shared_ids

    claimed = _ids_in_several([pa.table({id_col: x}) for x in ids], id_col)
    if not claimed:
        return
    claimed = pa.array(claimed, pa.large_string())
    sharing = [i for i, x in enumerate(ids)
               if pc.any(pc.is_in(x.cast(pa.large_string()), value_set=claimed)).as_py()]
    held = pa.chunked_array([x.cast(pa.large_string()) for i, x in enumerate(ids) if i not in sharing],
                            type=pa.large_string())
    xrefs = [read_parquet(mine[i]["paths"]["xref"], arrow_strings=True) for i in sharing]
    xrefs, moved = separate_shared_ids(xrefs, id_col, "P" if kind == PERSON else "E", run_id, held=held)
    for i, x in zip(sharing, xrefs):
        table = pa.Table.from_pandas(x, preserve_index=False)
        pieces["xref"][i] = _table_piece(table)
        ids[i] = pc.unique(table[id_col])
    moved["_part"] = [sharing[j] for j in moved["_part"]]
    for i in sorted(set(moved["_part"])):   # the golden record follows its records
        golden = read_arrow(mine[i]["paths"]["golden"]).to_pandas()
        renames = dict(zip(moved.loc[moved["_part"] == i, "old_id"], moved.loc[moved["_part"] == i, "new_id"]))
        golden[id_col] = golden[id_col].replace(renames)
        pieces["golden"][i] = _table_piece(pa.Table.from_pandas(golden, preserve_index=False))
    extra = moved.drop(columns="_part").assign(entity=kind)
    pieces["history"].append(_table_piece(pa.Table.from_pandas(extra, preserve_index=False)))


def _carried_clash(path: str, id_col: str, ids: list) -> int:
    """How many distinct master ids the carried xref at path shares with the relinked
    partitions' ids (Arrow set lookups, the carried ids a batch at a time)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    relinked = pa.concat_arrays([x.cast(pa.large_string()) for x in ids]) if ids else pa.array([], pa.large_string())
    clashes = []
    for table in _file_tables(path, [id_col]):
        carried = table[id_col].cast(pa.large_string())
        clashes += pc.filter(carried, pc.is_in(carried, value_set=relinked)).chunks
    return len(pc.unique(pa.chunked_array(clashes, type=pa.large_string())))
