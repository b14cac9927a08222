"""Stages 4a-c, link: plan the blocking partitions, link each partition, merge them per entity."""
from __future__ import annotations

import json
import time

import pandas as pd

from govdata.failpoints import failpoint
from govdata.lake import read_parquet, run_path, write_parquet
from govdata.stages.common import LINKERS, OUTPUTS, PERSON, _timed, peak_rss_mb
from govdata.stages.link_inputs import (_decisions, _previous, _previous_arrow, incremental_scope, link_config,
                                        partition_rows)


@_timed
def link_plan(normalised: list[dict], run: dict) -> dict:
    """Splits each entity's records to link into blocking partitions (hand-off files in the
    lake). Incremental runs link only the scope of what changed (transforms/linkage/
    incremental.py); the other records keep their xref rows.
    Memory is bounded by the columns the plan computes on, not by whole records: partitions,
    shared-value counts and the scope are computed over every record in those columns only
    (plan_columns); the records themselves then stream from the snapshots, a batch at a time,
    each row appended to its partition's file."""
    import pyarrow as pa

    from govdata.lake import dataset, read_arrow
    from govdata.transforms.linkage.plan import KEYS, _split_by_partition, assign_partitions, plan_columns, \
        previous_partitions
    from govdata.transforms.linkage.shared_values import shared_counts, with_counts

    start = time.perf_counter()
    partitions = []
    for kind, (_, xref_table, id_col) in LINKERS.items():
        paths = [n["current_path"] for n in normalised if n["kind"] == kind]
        if not paths:
            continue
        schemas = [dataset(path).schema for path in paths]
        records = pa.concat_tables([read_arrow(path, plan_columns(schema.names)) for path, schema in zip(paths, schemas)],
                                   promote_options="permissive")
        if records.num_rows == 0:
            continue
        # counted over every record: partitions and scopes weigh a phone alike
        counts = shared_counts(records) if kind == PERSON else {}
        records = with_counts(records, counts)
        plan = {"mode": "full", "records": records.num_rows}
        scope = None
        incremental = incremental_scope(records, kind, normalised, run)
        if incremental is not None:
            scope = incremental["scope"]
            records = records.filter(pa.array(scope))
            plan = {**plan, "mode": "incremental", "model": incremental["model"],
                    "carried_path": _hand_off(run, incremental["carried"], f"{kind}_carried_xref"),
                    "seeds": incremental["seeds"], "relinked": int(scope.sum())}
        n = max(1, -(-records.num_rows // partition_rows()))
        parts = assign_partitions(records, n, _decisions(run, kind))
        # a full run splits the previous xref along the records' partitions: each task reads
        # its slice, not the whole master (an incremental task needs every previous id)
        previous = _previous_arrow(run, xref_table, KEYS + [id_col, "match_rule", "match_score"]) \
            if plan["mode"] == "full" else None
        previous_chunks = {}
        if previous is not None and previous.num_rows:
            part_of = previous_partitions(previous, records, parts)
            kept = part_of >= 0
            previous_chunks = _split_by_partition(previous.filter(pa.array(kept)), part_of[kept])
        del records
        schema = with_counts(pa.unify_schemas(schemas, promote_options="permissive").empty_table(),
                             {c: [] for c in counts}).schema
        written = _write_partitions(paths, schema, counts, scope, parts,
                                    lambda p, kind=kind: _hand_off_path(run, f"{kind}_{p}"))
        for p, (path, rows) in sorted(written.items()):
            entry = {"kind": kind, "partition": p, "path": path, "rows": rows, "plan": plan}
            if previous is not None:
                entry["previous_path"] = _hand_off(run, previous_chunks.get(p, previous.slice(0, 0)),
                                                   f"{kind}_{p}_previous_xref")
            partitions.append(entry)
    # the DAG maps over the partitions alone: each carries the plan's seconds to link_merge
    plan_seconds = round(time.perf_counter() - start, 3)
    plan_peak = peak_rss_mb()
    return {"partitions": [{**p, "plan_seconds": plan_seconds, "plan_peak_rss_mb": plan_peak} for p in partitions]}


# Rows per batch when the records stream from the snapshots into their partitions: a batch and
# its split are the only whole records in memory (about 250 MB of person records).
PLAN_BATCH_ROWS = 250_000


def _hand_off_path(run: dict, name: str) -> str:
    from govdata.lake import IPC_SUFFIX

    return run_path(run["lake"], run["run_id"], "link", "input", name + IPC_SUFFIX)


def _hand_off(run: dict, table, name: str) -> str:
    return write_parquet(table, _hand_off_path(run, name))


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
    import dataclasses

    import govdata.transforms.linkage as linkage
    from govdata.lake import IPC_SUFFIX
    from govdata.standards.registry import load_survivorship
    from govdata.transforms.keys import record_keys

    if part["rows"] == 0:
        return {**part, "paths": {}, "stats": {}}
    fn_name, xref_table, _ = LINKERS[part["kind"]]
    records = read_parquet(part["path"], arrow_strings=True)
    incremental = part.get("plan", {}).get("mode") == "incremental"
    # a full run: the partition's slice of the previous xref (link_plan writes one whenever a
    # previous master exists); incremental: every previous master id stays known, so a new id
    # never takes a carried one
    if incremental:
        previous = _previous(run, xref_table)
    else:
        previous = read_parquet(part["previous_path"], arrow_strings=True) if part.get("previous_path") else None
    decisions = _decisions(run, part["kind"])
    if decisions is not None and len(decisions):
        keys = pd.Index(record_keys(records).unique())   # hashed once, not per isin
        decisions = decisions[record_keys(decisions, "left_").isin(keys) & record_keys(decisions, "right_").isin(keys)]
    config = link_config(part["kind"])
    if incremental:
        model = part["plan"]["model"]
        config = dataclasses.replace(config, estimate_weights=False, m_prior={**config.m_prior, **model["m"]},
                                     u_prior={**config.u_prior, **model["u"]})
    result = getattr(linkage, fn_name)(records, previous_xref=previous, decisions=decisions,
                                       survivorship=load_survivorship(), run_id=run["run_id"], config=config)
    stem = f"{part['kind']}_{part['partition']}"
    paths = {name: write_parquet(getattr(result, name), run_path(run["lake"], run["run_id"], "link", "parts",
                                                                  f"{stem}_{name}{IPC_SUFFIX}"))
             for name in OUTPUTS}
    failpoint("link")
    return {**part, "paths": paths, "stats": json.loads(json.dumps(result.stats, default=str))}


@_timed
def link_merge(parts: list[dict], run: dict) -> dict:
    """One xref / golden / history / review / evidence file per entity from the partitions
    (concatenated in Arrow; only master IDs shared across partitions are rewritten). An
    incremental run adds the carried xref rows of the records it did not relink."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from govdata.lake import read_arrow, to_pandas
    from govdata.transforms.linkage.merge import _ids_in_several, _sum_stats, merged_model, separate_shared_ids

    out: dict = {"paths": {}, "stats": {}}
    for kind, (_, _, id_col) in LINKERS.items():
        planned = [p for p in parts if p["kind"] == kind]
        if not planned:
            continue
        plan = planned[0].get("plan", {"mode": "full"})
        mine = [p for p in planned if p["paths"]]
        tables: dict = {"xref": []}
        if mine:
            tables["xref"] = [read_arrow(p["paths"]["xref"]) for p in mine]
            moved = pd.DataFrame()
            if _ids_in_several(tables["xref"], id_col):   # rare: pandas only then
                xrefs = [to_pandas(x, arrow_strings=True) for x in tables["xref"]]
                xrefs, moved = separate_shared_ids(xrefs, id_col, "P" if kind == PERSON else "E", run["run_id"])
                tables["xref"] = [pa.Table.from_pandas(x, preserve_index=False) for x in xrefs]
            for name in OUTPUTS[1:]:
                tables[name] = [read_arrow(p["paths"][name]) for p in mine]
            for i in set(moved.get("_part", [])):   # the golden record follows its records
                golden = tables["golden"][i].to_pandas()
                renames = dict(zip(moved.loc[moved["_part"] == i, "old_id"], moved.loc[moved["_part"] == i, "new_id"]))
                golden[id_col] = golden[id_col].replace(renames)
                tables["golden"][i] = pa.Table.from_pandas(golden, preserve_index=False)
            if not moved.empty:
                extra = moved.drop(columns="_part").assign(entity=kind)
                tables["history"].append(pa.Table.from_pandas(extra, preserve_index=False))
        if plan.get("carried_path"):
            carried = read_arrow(plan["carried_path"])
            relinked = set(pa.concat_tables(tables["xref"], promote_options="permissive")[id_col].to_pylist()) \
                if tables["xref"] else set()
            clash = relinked & set(carried[id_col].to_pylist())
            if clash:   # the scope holds whole previous clusters: a clash is a bug, not data
                raise RuntimeError(f"{kind}: {len(clash)} relinked master id(s) also held by carried records")
            tables["xref"].append(carried.cast(tables["xref"][0].schema) if tables["xref"] else carried)
        merged = {name: pa.concat_tables([t for t in pieces if t.num_rows] or pieces[:1], promote_options="permissive")
                  for name, pieces in tables.items()}
        with ThreadPoolExecutor(2) as pool:   # Parquet encoding releases the GIL: both cores write
            written = pool.map(lambda name: write_parquet(merged[name], run_path(
                run["lake"], run["run_id"], "link", f"{kind}_{name}.parquet")), list(merged))
            out["paths"].update({f"{kind}_{name}": path for name, path in zip(list(merged), written)})
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
