"""The pipeline's stages as plain functions: XCom-sized dicts in, XCom-sized dicts out.

The Airflow DAG (dags/govdata_pipeline.py) only wires these together, and the CLI runs that
same DAG, so there is one code path. Large data moves between stages as Parquet files in the
lake; the dicts carry paths and counts only.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from govdata.failpoints import failpoint
from govdata.lake import exists, private_umask, read_parquet, run_path, safe_run_id, write_parquet

if TYPE_CHECKING:   # names used in annotations only
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)

PERSON, ENTERPRISE = "person", "enterprise"


class QualityGateError(RuntimeError):
    """A critical data-quality expectation failed: nothing of this run may be loaded."""


def _timed(fn):
    """Adds the stage's wall time to its result dict (shown in the run report)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        private_umask()   # every file a stage creates is the owner's only (docs/SECURITY.md)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        result["seconds"] = round(time.perf_counter() - start, 3)
        _progress(fn.__name__, result)
        return result

    return wrapper


def _progress(stage: str, result: dict) -> None:
    """One line per finished stage on the console of `govdata run` (the DAG log has the rest)."""
    if not os.environ.get("GOVDATA_PROGRESS"):
        return
    what = result.get("source") or ""
    rows = result.get("rows_in", result.get("rows"))
    detail = f"{rows:,} rows" if isinstance(rows, int) else ""
    print(f"  ✓ {stage:<9} {what:<12} {detail:>14}  {result['seconds']:.1f}s", file=sys.stderr, flush=True)


def _source(path: str):
    from standards.sources import load_source

    return load_source(Path(path))


# 0 plan -------------------------------------------------------------------------------------
def plan_run(sources_dir: str, lake: str, warehouse_url: str, run_id: str, full_refresh: bool = False) -> dict:
    """Preflight before any work (govdata/preflight.py): every source YAML, connection, table and
    mapped column, the warehouse URL and its reachability. All problems are raised together as
    one ConfigError (never retried)."""
    from govdata.preflight import preflight

    report = preflight(sources_dir, warehouse_url, lake, resolve_airflow_connections=True)
    report.raise_for_problems()
    sources = report.sources
    return {
        "run_id": run_id,
        "run_key": safe_run_id(run_id),
        "lake": lake,
        "warehouse_url": warehouse_url,
        "full_refresh": bool(full_refresh),
        "started_at": datetime.now(timezone.utc).isoformat(),
        "sources": [{"name": s.name, "path": str(s.path), "kind": s.kind} for s in sources],
    }


# 1 extract ----------------------------------------------------------------------------------
@_timed
def extract(source: dict, run: dict) -> dict:
    from govdata.extract import extract_source
    from warehouse.state import read_state

    config = _source(source["path"])
    state = read_state(run["warehouse_url"], config.name) or {}
    incremental = bool(config.incremental) and not run["full_refresh"]
    watermark = state.get("watermark") if incremental else None
    result = extract_source(config, run_path(run["lake"], run["run_id"], "raw", f"{config.name}.parquet"), watermark)
    log.info("extracted %s rows from %s", result.rows, config.name)
    failpoint("extract")
    return {**source, **result.as_xcom(), "previous_watermark": watermark, "incremental": incremental,
            "previous_snapshot": state.get("snapshot_path")}


# 2 normalise --------------------------------------------------------------------------------
@_timed
def normalise(extracted: dict, run: dict) -> dict:
    from standards.registry import load_standards
    from transforms.normalise import check_reconciliation, normalise_source

    config = _source(extracted["path"])
    raw = read_parquet(extracted["raw_path"])
    result = normalise_source(raw, config, load_standards())
    std_path = write_parquet(result.standardised, run_path(run["lake"], run["run_id"], "std", f"{config.name}.parquet"))
    q_path = write_parquet(result.quarantine, run_path(run["lake"], run["run_id"], "quarantine", f"{config.name}.parquet"))
    failpoint("normalise")
    # The gate `rows in = loaded + rejected`, counted again from what was written (each rejected
    # row has its own quarantine id): a ReconciliationError stops the run before anything loads.
    rejected = int(result.quarantine.loc[result.quarantine["row_rejected"], "source_record_id"].nunique())
    check_reconciliation(config.name, {"rows_in": len(raw), "rows_standardised": len(result.standardised),
                                       "rows_rejected": rejected})
    log.info("source %s reconciled: %d rows in = %d standardised + %d rejected", config.name, len(raw),
             len(result.standardised), rejected)
    current_path, deleted_path, n_deleted, changed_path, n_changed = _advance_snapshot(
        config.name, extracted, raw, result.standardised, run)
    return {
        "source": config.name,
        "kind": config.kind,
        "path": extracted["path"],
        "std_path": std_path,
        "quarantine_path": q_path,
        "rows_in": len(raw),
        "rows_standardised": len(result.standardised),
        "rows_rejected": rejected,
        "values_quarantined": int((~result.quarantine["row_rejected"]).sum()),
        "quarantine_reasons": result.quarantine["reason_code"].value_counts().to_dict(),
        "watermark": extracted.get("watermark"),
        "current_path": current_path,
        "deleted_path": deleted_path,
        "rows_deleted_at_source": n_deleted,
        "changed_path": changed_path,
        "rows_changed": n_changed,
    }


def _advance_snapshot(name: str, extracted: dict, raw: pd.DataFrame, std: pd.DataFrame, run: dict):
    """This run's view of every live record of the source (see govdata/snapshot.py)."""
    from govdata.extract import RECORD_ID
    from govdata.snapshot import changed_ids, merge_snapshot

    previous_path = extracted.get("previous_snapshot")
    none = pd.Series([], dtype="string", name="source_record_id").to_frame()
    if extracted.get("incremental") and raw.empty and previous_path and exists(previous_path):
        # nothing extracted: the previous snapshot is this run's too, kept by reference
        return (previous_path, write_parquet(none, run_path(run["lake"], run["run_id"], "deleted", f"{name}.parquet")),
                0, write_parquet(none, run_path(run["lake"], run["run_id"], "changed", f"{name}.parquet")), 0)
    previous = read_parquet(previous_path) if previous_path and exists(previous_path) else None
    if previous_path and previous is None and extracted.get("incremental"):
        raise FileNotFoundError(f"source {name}: previous snapshot {previous_path} is gone; run with full_refresh")
    current, deleted = merge_snapshot(previous, std, raw[RECORD_ID], extracted.get("incremental", False))
    current_path = write_parquet(current, run_path(run["lake"], run["run_id"], "current", f"{name}.parquet"))
    deleted_path = write_parquet(deleted.to_frame(), run_path(run["lake"], run["run_id"], "deleted", f"{name}.parquet"))
    changed = changed_ids(previous, std)
    changed_path = write_parquet(changed.to_frame(), run_path(run["lake"], run["run_id"], "changed", f"{name}.parquet"))
    return current_path, deleted_path, len(deleted), changed_path, len(changed)

# 3 validate ---------------------------------------------------------------------------------
@_timed
def validate(normalised: list[dict], run: dict) -> dict:
    from expectations.run import validate_standardised
    from standards.registry import load_standards

    frames = {n["source"]: read_parquet(n["current_path"]) for n in normalised}
    sources = [_source(n["path"]) for n in normalised]
    counts = {n["source"]: {"raw_rows": n["rows_in"], "rejected_rows": n["rows_rejected"]} for n in normalised}
    docs_dir = Path(run_path(run["lake"], run["run_id"], "report", "data_docs"))
    outcome = validate_standardised(frames, sources, load_standards(), counts, run["run_id"], docs_dir)
    dq_path = write_parquet(outcome.results, run_path(run["lake"], run["run_id"], "dq", "dq_result.parquet"))
    if outcome.critical_failed:
        raise QualityGateError("critical data-quality checks failed: " + "; ".join(outcome.failures))
    return {
        "dq_path": dq_path,
        "checks": len(outcome.results),
        "failed": int((~outcome.results["success"].astype(bool)).sum()) if len(outcome.results) else 0,
        "docs_index": str(outcome.docs_index) if outcome.docs_index else None,
    }


# 4 link -------------------------------------------------------------------------------------
LINKERS = {PERSON: ("link_persons", "xref_person", "person_id"),
           ENTERPRISE: ("link_enterprises", "xref_enterprise", "enterprise_id")}
OUTPUTS = ("xref", "golden", "history", "review", "evidence")
KEYS = ["source_system", "source_record_id"]


def link_config(kind: str):
    """LinkConfig with the stewards' thresholds from standards/linkage.yaml."""
    import yaml

    from standards.registry import load_standards
    from transforms.linkage import LinkConfig

    settings = yaml.safe_load((Path(load_standards().root) / "linkage.yaml").read_text(encoding="utf-8")) or {}
    known = set(LinkConfig.__dataclass_fields__)
    options = settings.get(kind) or {}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"standards/linkage.yaml: {kind}: unknown setting(s) {sorted(unknown)}; expected {sorted(known)}")
    return LinkConfig(**options)


def partition_rows() -> int:
    """Records per linkage partition: the unit one mapped Airflow task links in memory."""
    return int(os.environ.get("GOVDATA_LINK_PARTITION_ROWS", "500000"))


def _previous(run: dict, table: str) -> pd.DataFrame | None:
    from warehouse.load import read_table

    frame = read_table(run["warehouse_url"], table)
    if frame is not None and "is_deleted" in frame:
        frame = frame[~frame["is_deleted"].fillna(False).astype(bool)]
    return frame


def _decisions(run: dict, kind: str) -> pd.DataFrame | None:
    from warehouse.load import read_table

    decisions = read_table(run["warehouse_url"], "review_decision")
    return decisions[decisions["entity"] == kind] if decisions is not None else None


def _keys(frame: pd.DataFrame, prefix: str = "") -> pd.Series:
    return frame[f"{prefix}source_system"].astype(str) + "\x1f" + frame[f"{prefix}source_record_id"].astype(str)


def assign_partitions(records: "pd.DataFrame | pa.Table", n: int, decisions: pd.DataFrame | None):
    """Blocking partition per record (int64 numpy); a steward's match pulls both records into
    the same partition."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from transforms.linkage.partition import partition_numbers

    table = records if isinstance(records, pa.Table) else pa.Table.from_pandas(records, preserve_index=False)
    parts = partition_numbers(table, n)
    if decisions is not None and len(decisions) and n > 1:
        matches = decisions[decisions["decision"] == "match"]
        keys = _arrow_keys(table)
        left = pc.index_in(pa.array(_keys(matches, "left_").tolist(), pa.string()), value_set=keys)
        right = pc.index_in(pa.array(_keys(matches, "right_").tolist(), pa.string()), value_set=keys)
        both = pc.and_(pc.is_valid(left), pc.is_valid(right))
        parts[right.filter(both).to_numpy()] = parts[left.filter(both).to_numpy()]
    return parts


# An incremental scope above this share of the records costs about what a full relink does
INCREMENTAL_MAX_SHARE = 0.5


def previous_model(run: dict, kind: str) -> dict | None:
    """The Fellegi–Sunter weights of the latest loaded run ({m, u, source}), from etl_run."""
    from warehouse.load import read_table

    runs = read_table(run["warehouse_url"], "etl_run")
    if runs is None or runs.empty:
        return None
    for counts in runs.sort_values("finished_at", ascending=False)["counts"]:
        model = (json.loads(counts or "{}").get("linkage") or {}).get(kind, {}).get("model")
        if model:
            return model
    return None


def _arrow_keys(table):
    """source_system + \\x1f + source_record_id per row, built in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(table["source_system"].cast(pa.string()),
                                       table["source_record_id"].cast(pa.string()), "\x1f")


def _changed_ids(path: str):
    import pyarrow as pa

    from govdata.lake import read_arrow

    return read_arrow(path, columns=["source_record_id"]).column(0).cast(pa.string())


def incremental_scope(records: "pa.Table", kind: str, normalised: list[dict], run: dict) -> dict | None:
    """{scope mask, carried xref, model, seeds} for linking only what changed, or None when
    this run links everything (full_refresh, no previous master, no previous weights, or a
    change touching most records)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from standards.registry import load_survivorship
    from transforms.linkage.incremental import relink_scope
    from transforms.linkage.survivorship import entity_rules

    _, xref_table, id_col = LINKERS[kind]
    if run.get("full_refresh"):
        return None
    prev, model = _previous_arrow(run, xref_table, KEYS + [id_col, "match_rule", "match_score"]), \
        previous_model(run, kind)
    if prev is None or prev.num_rows == 0 or model is None:
        return None
    keys = _arrow_keys(records)
    rows = key_positions(records, prev)
    at = pa.array(rows, mask=rows < 0)                  # each record's previous xref row
    record_master = prev[id_col].take(at)
    changed = [pc.binary_join_element_wise(n["source"], _changed_ids(n["changed_path"]), "\x1f").combine_chunks()
               for n in normalised if n["kind"] == kind and n.get("changed_path")]
    decisions = _decisions(run, kind)
    decided = [] if decisions is None else \
        [pa.array(_keys(decisions, "left_").tolist() + _keys(decisions, "right_").tolist(), pa.string())]
    # masters that lost a record (deleted at the source, or now rejected) are relinked whole:
    # the previous rows no record of this run points at
    still = np.zeros(prev.num_rows, dtype=bool)
    still[rows[rows >= 0]] = True
    lost = pc.unique(prev[id_col].filter(pa.array(~still)))
    seeds = pc.or_(pc.is_null(record_master), pc.is_in(record_master, value_set=lost))
    for known in changed + decided:
        seeds = pc.or_(seeds, pc.is_in(keys, value_set=known))
    seeds = seeds.to_numpy(zero_copy_only=False)
    cluster = pc.dictionary_encode(record_master).combine_chunks().indices   # codes by first appearance
    cluster = cluster.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    spec = entity_rules(load_survivorship(), kind)
    scope = relink_scope(records, kind, seeds, cluster, link_config(kind), list(spec["trust_order"]))
    if scope.sum() > INCREMENTAL_MAX_SHARE * records.num_rows:
        log.info("%s: %d of %d records to relink: linking all", kind, int(scope.sum()), records.num_rows)
        return None
    carried = prev.take(at.filter(pa.array(~scope)))
    return {"scope": np.asarray(scope), "carried": carried, "model": model, "seeds": int(seeds.sum())}


def _previous_arrow(run: dict, table: str, columns: list[str]) -> "pa.Table | None":
    """The live rows of a previous xref table, as Arrow."""
    import pyarrow.compute as pc

    from warehouse.load import read_arrow_table

    previous = read_arrow_table(run["warehouse_url"], table, columns + ["is_deleted"])
    if previous is None:
        return None
    return previous.filter(pc.invert(pc.fill_null(previous["is_deleted"], False))).select(columns)


def key_positions(left: "pa.Table", right: "pa.Table") -> "np.ndarray":
    """For each row of left, the row of right with the same (source_system, source_record_id),
    -1 where none. A hash join in DuckDB: millions of rows, both cores, and no concatenated
    key strings."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    lhs = left.select(KEYS).append_column("l_row", pa.array(np.arange(left.num_rows), pa.int64()))
    rhs = right.select(KEYS).append_column("r_row", pa.array(np.arange(right.num_rows), pa.int64()))
    with duckdb.connect() as con:
        con.register("lhs", lhs)
        con.register("rhs", rhs)
        rel = con.sql("SELECT l_row, r_row FROM lhs JOIN rhs USING (source_system, source_record_id)")
        found = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    out = np.full(left.num_rows, -1, dtype=np.int64)
    out[found["l_row"].to_numpy()] = found["r_row"].to_numpy()
    return out


def previous_partitions(previous: "pa.Table", records: "pa.Table", parts) -> "np.ndarray":
    """The partition of each previous xref row's record in this run (-1: not linked this run)."""
    import numpy as np

    at = key_positions(previous, records)
    return np.where(at >= 0, np.asarray(parts)[np.maximum(at, 0)], -1)


def _split_by_partition(table: "pa.Table", parts) -> dict:
    """partition → its rows, in their original order: one stable sort and a take, then
    zero-copy slices (filtering once per partition rescans every row)."""
    import numpy as np

    order = np.argsort(parts, kind="stable")
    ordered, sorted_parts = table.take(order), parts[order]
    values, starts = np.unique(sorted_parts, return_index=True)
    ends = np.append(starts[1:], len(sorted_parts))
    return {int(p): ordered.slice(a, b - a) for p, a, b in zip(values, starts, ends)}


@_timed
def link_plan(normalised: list[dict], run: dict) -> dict:
    """Splits each entity's records to link into blocking partitions (Arrow IPC files in the
    lake). Incremental runs link only the scope of what changed (transforms/linkage/
    incremental.py); the other records keep their xref rows. Records stay in Arrow."""
    import pyarrow as pa

    from govdata.lake import IPC_SUFFIX, read_arrow, write_parquet

    def hand_off(table, name: str) -> str:
        return write_parquet(table, run_path(run["lake"], run["run_id"], "link", "input", name + IPC_SUFFIX))

    start = time.perf_counter()
    partitions = []
    for kind, (_, xref_table, id_col) in LINKERS.items():
        tables = [read_arrow(n["current_path"]) for n in normalised if n["kind"] == kind]
        if not tables:
            continue
        records = pa.concat_tables(tables, promote_options="permissive")
        if records.num_rows == 0:
            continue
        plan = {"mode": "full", "records": records.num_rows}
        incremental = incremental_scope(records, kind, normalised, run)
        if incremental is not None:
            scope = incremental["scope"]
            records = records.filter(pa.array(scope))
            plan = {**plan, "mode": "incremental", "model": incremental["model"],
                    "carried_path": hand_off(incremental["carried"], f"{kind}_carried_xref"),
                    "seeds": incremental["seeds"], "relinked": int(scope.sum())}
        n = max(1, -(-records.num_rows // partition_rows()))
        parts = assign_partitions(records, n, _decisions(run, kind))
        chunks = _split_by_partition(records, parts) or {0: records}
        # a full run splits the previous xref along the records' partitions: each task reads
        # its slice, not the whole master (an incremental task needs every previous id)
        previous = _previous_arrow(run, xref_table, KEYS + [id_col, "match_rule", "match_score"]) \
            if plan["mode"] == "full" else None
        previous_chunks = {}
        if previous is not None and previous.num_rows:
            part_of = previous_partitions(previous, records, parts)
            kept = part_of >= 0
            previous_chunks = _split_by_partition(previous.filter(pa.array(kept)), part_of[kept])
        for p, chunk in sorted(chunks.items()):
            entry = {"kind": kind, "partition": p, "path": hand_off(chunk, f"{kind}_{p}"), "rows": chunk.num_rows,
                     "plan": plan}
            if previous is not None:
                entry["previous_path"] = hand_off(previous_chunks.get(p, previous.slice(0, 0)),
                                                  f"{kind}_{p}_previous_xref")
            partitions.append(entry)
    # the DAG maps over the partitions alone: each carries the plan's seconds to link_merge
    plan_seconds = round(time.perf_counter() - start, 3)
    return {"partitions": [{**p, "plan_seconds": plan_seconds} for p in partitions]}


@_timed
def link_partition(part: dict, run: dict) -> dict:
    """Links one partition against the master data of the previous run. An incremental run
    scores with the previous run's weights, so its links are the ones a full relink makes."""
    import dataclasses

    import transforms.linkage as linkage
    from govdata.lake import IPC_SUFFIX
    from standards.registry import load_survivorship

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
        keys = pd.Index(_keys(records).unique())   # hashed once, not per isin
        decisions = decisions[_keys(decisions, "left_").isin(keys) & _keys(decisions, "right_").isin(keys)]
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


def separate_shared_ids(xrefs: list[pd.DataFrame], id_col: str, prefix: str, run_id: str
                        ) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """A master ID claimed in two partitions (a person's records split by a wrong birth year)
    stays with the partition holding most of its records; the others get a new stable ID."""
    from transforms.linkage.common import hash_id

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
    for i, renames in moves.items():   # smallest member key per moved id: one pass per partition
        members = candidates[i][candidates[i][id_col].isin(list(renames))]
        smallest = _keys(members).groupby(members[id_col].to_numpy()).min()
        for master_id in renames:
            renames[master_id] = hash_id(prefix, smallest[master_id])
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


@_timed
def link_merge(parts: list[dict], run: dict) -> dict:
    """One xref / golden / history / review / evidence file per entity from the partitions
    (concatenated in Arrow; only master IDs shared across partitions are rewritten). An
    incremental run adds the carried xref rows of the records it did not relink."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from govdata.lake import read_arrow, to_pandas

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
    return out


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


# 5 load -------------------------------------------------------------------------------------
@_timed
def load(normalised: list[dict], validated: dict, linked: dict, run: dict) -> dict:
    from govdata.settings import get_settings
    from standards.registry import load_standards
    from warehouse.build import build_tables
    from warehouse.load import load_tables

    link_frames = {name: read_parquet(path) for name, path in linked["paths"].items()}
    std = {n["source"]: read_parquet(n["current_path"]) for n in normalised}
    quarantine = pd.concat([read_parquet(n["quarantine_path"]) for n in normalised], ignore_index=True)
    tables = build_tables(link_frames, std, quarantine, load_standards(), get_settings().token_key(), run["run_id"],
                          previous=previous_owner_state(run["warehouse_url"]))
    for table in ("xref_person", "xref_enterprise"):
        marked = _deleted_xref(normalised, table, run)
        if not marked.empty and table in tables:
            tables[table] = pd.concat([tables[table], marked[tables[table].columns]], ignore_index=True)
    stale = closed_reviews(run, tables.get("review_queue"), linked)
    if not stale.empty:
        tables["review_queue"] = pd.concat([f for f in (tables.get("review_queue"), stale) if f is not None],
                                           ignore_index=True)
    tables["dq_result"] = read_parquet(validated["dq_path"])
    tables["etl_state"] = etl_state_rows(normalised, run)
    tables["etl_run"] = etl_run_row(normalised, linked, run)
    failpoint("load")
    counts = load_tables(run["warehouse_url"], tables, run["run_id"],
                         scopes={"quarantine": quarantine_scope(normalised, run)})
    return {"tables": {k: int(v) for k, v in counts.items()},
            "owner_changes": owner_change_summary(tables.get("fact_owner_change"))}


def previous_owner_state(url: str) -> dict[str, pd.DataFrame]:
    """What build_tables needs to keep facts with their owners: identifier_owner, and each fact
    table's keys, token and owners as loaded before this run."""
    from warehouse.build import FACT_OWNERS
    from warehouse.load import read_arrow_table

    out = {}
    wanted = {"identifier_owner": None, **{t: ["source_system", "source_record_id", *cols]
                                           for t, cols in FACT_OWNERS.items()}}
    for table, columns in wanted.items():
        arrow = read_arrow_table(url, table, columns)
        if arrow is not None and arrow.num_rows:
            out[table] = arrow.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
    return out


def quarantine_scope(normalised: list[dict], run: dict) -> pd.DataFrame:
    """The source records whose quarantine rows this run replaces: every record of a source read
    in full (a row with no record id), else the records extracted (standardised or rejected)
    and those deleted at the source. Quarantine so holds each live record's current rows."""
    frames = []
    for n in normalised:
        if run.get("full_refresh") or not _source(n["path"]).incremental:
            frames.append(pd.DataFrame({"source_record_id": pd.array([pd.NA], dtype="string")}))
        else:
            ids = [read_parquet(n[p], columns=["source_record_id"]).astype("string")
                   for p in ("std_path", "quarantine_path", "deleted_path") if n.get(p) and exists(n[p])]
            ids = [f for f in ids if len(f)] or [pd.DataFrame({"source_record_id": pd.Series(dtype="string")})]
            frames.append(pd.concat(ids, ignore_index=True).dropna().drop_duplicates())
        frames[-1] = frames[-1].assign(source_system=n["source"])
    if not frames:
        return pd.DataFrame({"source_system": pd.Series(dtype="string"), "source_record_id": pd.Series(dtype="string")})
    return pd.concat(frames, ignore_index=True)[["source_system", "source_record_id"]].astype("string")


def owner_change_summary(changes: pd.DataFrame | None, examples: int = 5) -> dict:
    """For the run report: facts whose person or enterprise moved, by table and reason, and a few
    examples (masked identifiers, master ids)."""
    if changes is None or changes.empty:
        return {"count": 0, "by_table": {}, "by_reason": {}, "examples": []}
    cols = ["fact_table", "source_system", "source_record_id", "role", "identifier_masked", "old_owner", "new_owner",
            "reason"]
    first = changes.sort_values(["fact_table", "source_system", "source_record_id", "role"]).head(examples)
    return {"count": int(len(changes)),
            "by_table": {k: int(v) for k, v in changes["fact_table"].value_counts().sort_index().items()},
            "by_reason": {k: int(v) for k, v in changes["reason"].value_counts().sort_index().items()},
            "examples": [{c: (None if pd.isna(r[c]) else str(r[c])) for c in cols} for _, r in first.iterrows()]}


def stale_reviews(previous: pd.DataFrame, fresh_ids: pd.Series, decided_ids: set, relinked: pd.Series | None,
                  run_id: str) -> pd.DataFrame:
    """Open review pairs this run did not ask again, closed: 'decided' when a steward decided
    the pair, else 'superseded' (the records changed or now link with certainty). A full run
    re-asks every question; an incremental run only those about records it relinked."""
    open_ = previous[(previous["status"].fillna("open") == "open") & ~previous["pair_id"].isin(fresh_ids)]
    if relinked is not None:
        open_ = open_[_keys(open_, "left_").isin(relinked) | _keys(open_, "right_").isin(relinked)]
    status = open_["pair_id"].isin(decided_ids).map({True: "decided", False: "superseded"})
    return open_.assign(status=status.astype("string"), run_id=run_id)


def closed_reviews(run: dict, fresh: pd.DataFrame | None, linked: dict) -> pd.DataFrame:
    from transforms.linkage.common import pair_id
    from warehouse.load import read_table

    previous = read_table(run["warehouse_url"], "review_queue")
    decisions = read_table(run["warehouse_url"], "review_decision")
    if previous is None or previous.empty:
        return pd.DataFrame()
    decided = set() if decisions is None or decisions.empty else \
        set(pair_id(_keys(decisions, "left_"), _keys(decisions, "right_")))
    fresh_ids = fresh["pair_id"] if fresh is not None else pd.Series(dtype="string")
    frames = []
    for kind in LINKERS:
        if kind not in linked.get("stats", {}):
            continue
        inputs = linked.get("relinked_inputs", {}).get(kind)
        relinked = None if inputs is None else pd.concat(
            [_keys(read_parquet(path, columns=KEYS)) for path in inputs] or [pd.Series(dtype="string")])
        frames.append(stale_reviews(previous[previous["entity"] == kind], fresh_ids, decided, relinked, run["run_id"]))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _deleted_xref(normalised: list[dict], table: str, run: dict) -> pd.DataFrame:
    from govdata.snapshot import deleted_xref_rows
    from warehouse.load import read_table

    with_deletions = [n for n in normalised if n.get("rows_deleted_at_source")]
    if not with_deletions:
        return pd.DataFrame()
    previous = read_table(run["warehouse_url"], table)
    frames = [deleted_xref_rows(previous, n["source"], read_parquet(n["deleted_path"])["source_record_id"], run["run_id"])
              for n in with_deletions]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def etl_state_rows(normalised: list[dict], run: dict) -> pd.DataFrame:
    """Watermarks and snapshots advance only with a successful load (same transaction)."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    return pd.DataFrame(
        {
            "source_system": [n["source"] for n in normalised],
            "watermark": [n.get("watermark") for n in normalised],
            "rows_extracted": [n["rows_in"] for n in normalised],
            "state": [json.dumps({"snapshot_path": n["current_path"]}) for n in normalised],
            "run_id": run["run_id"],
            "updated_at": now,
        }
    )


def etl_run_row(normalised: list[dict], linked: dict, run: dict) -> pd.DataFrame:
    counts = {
        "rows_in": sum(n["rows_in"] for n in normalised),
        "rows_standardised": sum(n["rows_standardised"] for n in normalised),
        "rows_rejected": sum(n["rows_rejected"] for n in normalised),
        "linkage": linked.get("stats", {}),
    }
    return pd.DataFrame(
        {
            "run_id": [run["run_id"]],
            "started_at": [pd.Timestamp(run["started_at"]).tz_convert(None)],
            "finished_at": [pd.Timestamp.now(tz="UTC").tz_localize(None)],
            "status": ["success"],
            "counts": [json.dumps(counts, ensure_ascii=False, default=str)],
        }
    )


def write_manifest(run: dict, extracted: list[dict], normalised: list[dict], validated: dict, linked: dict,
                   loaded: dict) -> str:
    """Everything the marts-and-report DAG needs about a loaded run, as one JSON file in the lake."""
    import fsspec

    path = run_path(run["lake"], run["run_id"], "manifest.json")
    manifest = {"run": run, "extracted": extracted, "normalised": normalised, "validated": validated,
                "linked": linked, "loaded": loaded}
    with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as fh:
        json.dump(manifest, fh, ensure_ascii=False, default=str)
    return path


def read_manifest(path: str) -> dict:
    import fsspec

    with fsspec.open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)


# 6 warehouse checks, marts -------------------------------------------------------------------
@_timed
def check_warehouse(manifest: dict) -> dict:
    """Key uniqueness and xref → master integrity on the loaded warehouse, kept in dq_result."""
    from expectations.warehouse import validate_warehouse
    from warehouse.load import load_tables

    run = manifest["run"]
    outcome = validate_warehouse(run["warehouse_url"], run["run_id"])
    load_tables(run["warehouse_url"], {"dq_result": outcome.results}, run["run_id"])
    if outcome.critical_failed:
        raise QualityGateError("warehouse checks failed: " + "; ".join(outcome.failures))
    return {"checks": len(outcome.results), "failed": int((~outcome.results["success"].astype(bool)).sum())}


# 6 marts ------------------------------------------------------------------------------------
@_timed
def marts(manifest: dict) -> dict:
    from warehouse.load import refresh_marts

    return {"marts": refresh_marts(manifest["run"]["warehouse_url"])}


# 6 findings ---------------------------------------------------------------------------------
@_timed
def findings(manifest: dict, marted: dict) -> dict:
    """The findings report (report/findings.html, from the marts) and the stewards' review page
    (report/review.html); GOVDATA_LANG picks the language (zh-CN by default)."""
    from govdata.findings import write_findings
    from govdata.review_page import write_review_page

    written = write_findings(manifest)
    review = write_review_page(manifest)
    return {"findings_path": written["findings_path"], "review_path": review["review_path"],
            "review_pairs": review["pairs"]}


# 7 report -----------------------------------------------------------------------------------
@_timed
def report(manifest: dict, marted: dict) -> dict:
    from govdata.report import write_run_report
    from govdata.retention import finish_run

    run = manifest["run"]
    path = run_path(run["lake"], run["run_id"], "report", "index.html")
    retention = finish_run(manifest)   # hand-offs of this run, run folders beyond GOVDATA_LAKE_KEEP_RUNS
    summary = write_run_report(path, run=run, extracted=manifest["extracted"], normalised=manifest["normalised"],
                               validated=manifest["validated"], linked=manifest["linked"],
                               loaded=manifest["loaded"], marted=marted, retention=retention)
    return {"report_path": path, "summary": summary}
