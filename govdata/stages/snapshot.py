"""Stage 2b, snapshot: one source's current state advanced by what its normalise task standardised.

Its own mapped task after normalise (see govdata/snapshot.py for what the snapshot is). Its
result is its own dict — the source, the snapshot's paths and counts, and its own timing — so
that normalise's timing keys are never overwritten. The stages after it get both, joined by
source name (`with_snapshots`).
"""
from __future__ import annotations

import logging

import pandas as pd

from govdata.failpoints import failpoint
from govdata.lake import exists, parquet_rows, read_parquet, run_path, write_parquet
from govdata.stages.common import _timed

log = logging.getLogger(__name__)

# What the snapshot task adds to a source's normalise result for the stages after it (paths and counts).
SNAPSHOT_KEYS = ("current_path", "deleted_path", "rows_deleted_at_source", "changed_path", "rows_changed")


@_timed
def snapshot(normalised: dict, run: dict) -> dict:
    """This run's view of every live record of the source: current/, deleted/ and changed/ files.

    `normalised` is the source's normalise result: its std_path and raw_path, whether the
    extract was incremental and the previous snapshot's path (etl_state)."""
    from govdata.extract import RECORD_ID
    from govdata.snapshot import changed_ids, merge_snapshot

    name = normalised["source"]

    def out(folder: str, frame: pd.DataFrame) -> str:
        return write_parquet(frame, run_path(run["lake"], run["run_id"], folder, f"{name}.parquet"))

    incremental = bool(normalised.get("incremental"))
    previous_path = normalised.get("previous_snapshot")
    if incremental and normalised["rows_in"] == 0 and previous_path and exists(previous_path):
        # nothing extracted: the previous snapshot is this run's too, kept by reference
        none = pd.Series([], dtype="string", name="source_record_id").to_frame()
        result = _result(name, previous_path, out("deleted", none), 0, out("changed", none), 0, parquet_rows(previous_path))
    else:
        previous = read_parquet(previous_path) if previous_path and exists(previous_path) else None
        if previous_path and previous is None and incremental:
            raise FileNotFoundError(f"source {name}: previous snapshot {previous_path} is gone; run with full_refresh")
        std = read_parquet(normalised["std_path"])
        extracted_ids = read_parquet(normalised["raw_path"], columns=[RECORD_ID])[RECORD_ID]
        current, deleted = merge_snapshot(previous, std, extracted_ids, incremental)
        changed = changed_ids(previous, std)
        result = _result(name, out("current", current), out("deleted", deleted.to_frame()), len(deleted),
                         out("changed", changed.to_frame()), len(changed), len(current))
    failpoint("snapshot")
    log.info("source %s: snapshot of %d live rows, %d changed, %d deleted at the source", name, result["rows"],
             result["rows_changed"], result["rows_deleted_at_source"])
    return result


def _result(source: str, current_path: str, deleted_path: str, deleted: int, changed_path: str, changed: int,
            rows: int) -> dict:
    return {"source": source, "rows": int(rows),   # rows: live records in the current snapshot
            "current_path": current_path, "deleted_path": deleted_path, "rows_deleted_at_source": int(deleted),
            "changed_path": changed_path, "rows_changed": int(changed)}


def with_snapshots(normalised: list[dict], snapshots: list[dict]) -> list[dict]:
    """Each source's normalise result with its snapshot's paths and counts (SNAPSHOT_KEYS), joined
    by source name: what validate, link, load and the manifest read. Normalise's own timing keys
    stay as they are; the snapshot task's timing stays in its own result."""
    by_source = {s["source"]: s for s in snapshots}
    missing = [n["source"] for n in normalised if n["source"] not in by_source]
    if missing:
        raise KeyError(f"no snapshot result for source(s) {', '.join(missing)}")
    return [{**n, **{k: by_source[n["source"]][k] for k in SNAPSHOT_KEYS}} for n in normalised]
