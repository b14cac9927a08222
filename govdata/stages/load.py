"""Stage 5, load: the warehouse tables of a run in one transaction, and the run's manifest for the marts DAG."""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping

import pandas as pd

from govdata.failpoints import failpoint
from govdata.lake import exists, parquet_rows, read_parquet, run_path
from govdata.memory import release_memory
from govdata.scratch import scratch_dir
from govdata.stages.common import LINKERS, _source, _timed


@_timed
def load(normalised: list[dict], validated: dict, linked: dict, run: dict) -> dict:
    """Builds the warehouse tables one at a time (warehouse.build), each input read from the lake
    when needed; every table becomes Arrow at once and the big ones are staged as lake Parquet
    (warehouse.staging.Stager), so no process holds the run's tables together. The persons' and
    enterprises' tables are built here, the owners' and facts' in a forked process beside them.
    The load streams each process's tables into the warehouse as soon as they are built, all in
    one commit."""
    from govdata.forking import beside_items
    from govdata.settings import get_settings
    from govdata.standards.registry import load_standards
    from govdata.warehouse.build import iter_entity_tables
    from govdata.warehouse.load import backend_of, open_load
    from govdata.warehouse.staging import Stager

    url, run_id = run["warehouse_url"], run["run_id"]
    folder, sort = run_path(run["lake"], run_id, "load"), backend_of(url) == "postgresql"
    stager = Stager(folder, sort=sort)
    quarantine = pd.concat([read_parquet(n["quarantine_path"]) for n in normalised], ignore_index=True)
    link, key, reviewed, marked_tables, workers = LinkFrames(linked["paths"]), get_settings().token_key(), False, set(), {}
    # the previous state is scratch of this task, on local disk (the lake may be remote)
    cleanup = contextlib.ExitStack()
    scratch = cleanup.enter_context(scratch_dir("govdata-previous-"))

    def owners_and_facts() -> Iterator[tuple]:
        """The owners, facts and small dimensions, staged in a folder of their own (every table
        a file: only names and paths go to the task), each sent as ("table", name, staged) once
        complete; last ("done", fact_owner_change, peak RSS)."""
        from govdata.memory import peak_rss_mb
        from govdata.warehouse.build import owner_fact_tables, xref_paths

        staged, changes = Stager(f"{folder}/owners", sort=sort, min_rows=0), None
        for name, last_part in completed_tables(
                owner_fact_tables(link, SourceFrames(normalised), quarantine, load_standards(), key, run_id,
                                  xref_paths(link), previous=previous), staged):
            if name == "fact_owner_change":
                changes = last_part   # built in one part; the run report summarises it
            yield "table", name, staged.tables.get(name)   # None: nothing to load
        yield "done", changes, peak_rss_mb()

    try:
        previous = previous_owner_state(url, scratch)
        # The owners and facts need of the link outputs only the xref files: they are built in a
        # forked process beside the persons' and enterprises' tables (the task's second core).
        with beside_items(owners_and_facts) as owners_facts:
            for name, frame in iter_entity_tables(link, key, run_id, report=workers):
                if name in ("xref_person", "xref_enterprise") and name not in marked_tables:
                    marked_tables.add(name)   # an xref comes in chunks: its deleted records' rows once
                    marked = _deleted_xref(normalised, name, run)
                    if not marked.empty:
                        frame = pd.concat([frame, marked[frame.columns]], ignore_index=True)
                elif name == "review_queue":
                    frame, reviewed = _with_closed_reviews(run, frame, linked), True
                stager.add(name, frame)
                del frame
            if not reviewed:
                stager.add("review_queue", _with_closed_reviews(run, None, linked))
            stager.add("dq_result", read_parquet(validated["dq_path"]))
            stager.add("etl_state", etl_state_rows(normalised, run))
            stager.add("etl_run", etl_run_row(normalised, linked, run))
            stager.add("link_model", link_model_rows(linked, run))
            release_memory()   # the build's freed memory back to the OS before DuckDB's merges take theirs
            # Opened once this process has read the warehouse (it holds the file with one
            # configuration at a time): these tables are merged while the owners and facts are
            # built, and each of those as soon as the forked process has it complete. The merges
            # yield the CPU to that process: it is the load's longest part.
            with open_load(url, run_id, scopes={"quarantine": quarantine_scope(normalised, run)},
                           yield_cpu=True) as warehouse:
                for name, table in stager.tables.items():
                    warehouse.add(name, table)
                for kind, first, second in owners_facts:
                    if kind == "table":
                        warehouse.add(first, second)
                    else:
                        changes, child_peak_rss_mb = first, second
                failpoint("load")
                counts = warehouse.commit()
    finally:
        stager.remove_files()   # the owners' folder with it; after the merges (open_load's exit waits for them)
        cleanup.close()
    return {"tables": {k: int(v) for k, v in counts.items()}, "owner_changes": owner_change_summary(changes),
            # tokens and ciphertexts on forked workers, the owners and facts in a forked process
            "workers_peak_rss_mb": max(workers.get("workers_peak_rss_mb", 0), child_peak_rss_mb)}


def completed_tables(tables: Iterable[tuple[str, object]], stager) -> Iterator[tuple[str, object]]:
    """Adds each (name, frame) to `stager`; yields (name, the frame) of each table once its
    last part is added (the tables come one after another, a table's parts together). A table
    that comes back after another began is an error: its first parts would be loaded alone."""
    current, done = None, set()
    last = None
    for name, frame in tables:
        if name != current:
            if current is not None:
                done.add(current)
                yield current, last
            if name in done:
                raise RuntimeError(f"the load's table {name} was built in two separate parts")
            current = name
        stager.add(name, frame)
        last = frame
        del frame
    if current is not None:
        yield current, last


def _with_closed_reviews(run: dict, fresh: pd.DataFrame | None, linked: dict) -> pd.DataFrame | None:
    """This run's review pairs plus the open pairs it closes (closed_reviews)."""
    stale = closed_reviews(run, fresh, linked)
    if stale.empty:
        return fresh
    return pd.concat([f for f in (fresh, stale) if f is not None], ignore_index=True)


class LinkFrames(Mapping):
    """The link stage's outputs, each read from the lake when asked for (not kept: `fresh`)."""

    fresh = True
    USED = ("xref", "golden", "history", "review")   # evidence is for the review page, not the warehouse

    def __init__(self, paths: dict[str, str]):
        self.paths = {k: v for k, v in paths.items() if k.rsplit("_", 1)[-1] in self.USED}

    def __getitem__(self, name: str) -> pd.DataFrame:
        return read_parquet(self.paths[name])

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


class SourceFrames(Mapping):
    """The standardised snapshots (current_path) per source, read when asked for: person and
    enterprise sources only in the columns the warehouse build uses (HOLDER_COLUMNS), the
    others whole. `kinds` lets the build skip sources of another kind unread."""

    fresh = True

    def __init__(self, normalised: list[dict]):
        self.paths = {n["source"]: n["current_path"] for n in normalised}
        self.kinds = {n["source"]: n.get("kind") for n in normalised}

    def read(self, source: str, columns: list[str] | None = None) -> pd.DataFrame:
        from govdata.lake import present_columns

        path = self.paths[source]
        return read_parquet(path, columns=None if columns is None else present_columns(path, columns))

    def __getitem__(self, source: str) -> pd.DataFrame:
        kind = self.kinds.get(source)
        from govdata.warehouse.owners import HOLDER_COLUMNS   # what the build reads of a person or enterprise

        return self.read(source, HOLDER_COLUMNS if kind in ("person", "enterprise") else None)

    def shape(self, source: str) -> tuple[int, str | None]:
        kinds = read_parquet(self.paths[source], columns=["kind"]) if "kind" in self._names(source) else None
        rows = len(kinds) if kinds is not None else parquet_rows(self.paths[source])
        return rows, (kinds["kind"].iloc[0] if kinds is not None and rows else None)

    def _names(self, source: str) -> set[str]:
        return set(self.columns(source))

    def columns(self, source: str) -> list[str]:
        """The snapshot's column names, from its footer."""
        from govdata.lake import dataset

        return list(dataset(self.paths[source]).schema.names)

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def previous_owner_state(url: str, folder: str) -> dict[str, str]:
    """What build_tables needs to keep facts with their owners: identifier_owner, and each fact
    table's keys, token and owners as loaded before this run, each copied to a Parquet file in
    `folder` (table -> path; a table absent or empty is left out). On disk, not in memory: at 5M
    persons they are 13M rows, which the task and its forked process both held."""
    from govdata.warehouse.owners import PREVIOUS_COLUMNS
    from govdata.warehouse.state import export_parquet

    os.makedirs(folder, exist_ok=True)
    out = {}
    for table, columns in PREVIOUS_COLUMNS.items():
        path = export_parquet(url, table, f"{folder}/{table}.parquet", columns)
        if path is not None:
            out[table] = path
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
    return {"count": len(changes),
            "by_table": {k: int(v) for k, v in changes["fact_table"].value_counts().sort_index().items()},
            "by_reason": {k: int(v) for k, v in changes["reason"].value_counts().sort_index().items()},
            "examples": [{c: (None if pd.isna(r[c]) else str(r[c])) for c in cols} for _, r in first.iterrows()]}


def stale_reviews(previous: pd.DataFrame, fresh_ids: pd.Series, decided_ids: set, relinked: pd.Series | None,
                  run_id: str) -> pd.DataFrame:
    """Open review pairs this run did not ask again, closed: 'decided' when a steward decided
    the pair, else 'superseded' (the records changed or now link with certainty). A full run
    re-asks every question; an incremental run only those about records it relinked."""
    from govdata.transforms.keys import record_keys

    open_ = previous[(previous["status"].fillna("open") == "open") & ~previous["pair_id"].isin(fresh_ids)]
    if relinked is not None:
        open_ = open_[record_keys(open_, "left_").isin(relinked) | record_keys(open_, "right_").isin(relinked)]
    status = open_["pair_id"].isin(decided_ids).map({True: "decided", False: "superseded"})
    return open_.assign(status=status.astype("string"), run_id=run_id)


def closed_reviews(run: dict, fresh: pd.DataFrame | None, linked: dict) -> pd.DataFrame:
    from govdata.transforms.keys import KEYS, record_keys
    from govdata.transforms.linkage.common import pair_id
    from govdata.warehouse.load import read_table

    previous = read_table(run["warehouse_url"], "review_queue")
    decisions = read_table(run["warehouse_url"], "review_decision")
    if previous is None or previous.empty:
        return pd.DataFrame()
    decided = set() if decisions is None or decisions.empty else \
        set(pair_id(record_keys(decisions, "left_"), record_keys(decisions, "right_")))
    fresh_ids = fresh["pair_id"] if fresh is not None else pd.Series(dtype="string")
    frames = []
    for kind in LINKERS:
        if kind not in linked.get("stats", {}):
            continue
        inputs = linked.get("relinked_inputs", {}).get(kind)
        relinked = None if inputs is None else pd.concat(
            [record_keys(read_parquet(path, columns=KEYS)) for path in inputs] or [pd.Series(dtype="string")])
        frames.append(stale_reviews(previous[previous["entity"] == kind], fresh_ids, decided, relinked, run["run_id"]))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _deleted_xref(normalised: list[dict], table: str, run: dict) -> pd.DataFrame:
    from govdata.snapshot import deleted_xref_rows
    from govdata.warehouse.load import read_table

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


def link_model_rows(linked: dict, run: dict) -> pd.DataFrame:
    """The weights each entity was linked with this run, one row per comparison; a model without
    weights has one row (comparison NO_WEIGHTS, m and u NULL), so that the next run still knows
    it may link incrementally."""
    from govdata.warehouse.schema import NO_WEIGHTS

    rows = []
    for entity, stats in sorted((linked.get("stats") or {}).items()):
        model = (stats or {}).get("model")
        if model is None:
            continue
        if not model.get("m"):
            rows.append({"run_id": run["run_id"], "entity": entity, "comparison": NO_WEIGHTS, "m": None, "u": None,
                         "source": model.get("source")})
        for comparison in sorted(model.get("m") or {}):
            rows.append({"run_id": run["run_id"], "entity": entity, "comparison": comparison,
                         "m": float(model["m"][comparison]), "u": float((model.get("u") or {}).get(comparison, float("nan"))),
                         "source": model.get("source")})
    return pd.DataFrame(rows, columns=["run_id", "entity", "comparison", "m", "u", "source"])


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
                   loaded: dict, snapshots: list[dict] | None = None) -> str:
    """Everything the marts-and-report DAG needs about a loaded run, as one JSON file in the lake.

    `normalised`: each source's normalise result joined with its snapshot's paths and counts
    (govdata.stages.snapshot.with_snapshots), what every reader of a source's files wants;
    `snapshots`: the snapshot tasks' own results, with their own timings (the run report's
    snapshot stage). A manifest written before the snapshot was a task of its own has none."""
    import fsspec

    path = run_path(run["lake"], run["run_id"], "manifest.json")
    manifest = {"run": run, "extracted": extracted, "normalised": normalised, "snapshots": snapshots or [],
                "validated": validated, "linked": linked, "loaded": loaded}
    with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as fh:
        json.dump(manifest, fh, ensure_ascii=False, default=str)
    return path


def read_manifest(path: str) -> dict:
    import fsspec

    with fsspec.open(path, "r", encoding="utf-8") as fh:
        manifest = json.load(fh)
    manifest.setdefault("snapshots", [])   # written before the snapshot was a task of its own
    return manifest
