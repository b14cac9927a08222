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
from govdata.lake import exists, parquet_rows, run_path, write_parquet
from govdata.stages.common import _timed

log = logging.getLogger(__name__)

# What the snapshot task adds to a source's normalise result for the stages after it (paths and counts).
SNAPSHOT_KEYS = ("current_path", "deleted_path", "rows_deleted_at_source", "changed_path", "rows_changed")


@_timed
def snapshot(normalised: dict, run: dict) -> dict:
    """This run's view of every live record of the source: current/, deleted/ and changed/ files.

    `normalised` is the source's normalise result: its std_path and raw_path, whether the
    extract was incremental and the previous snapshot's path (etl_state). Streamed: the rows
    are read and written a chunk at a time, keys and row hashes compared out of core
    (govdata.snapshot.advance_snapshot)."""
    from govdata.settings import get_settings
    from govdata.snapshot import advance_snapshot

    name = normalised["source"]

    def out(folder: str) -> str:
        return run_path(run["lake"], run["run_id"], folder, f"{name}.parquet")

    incremental = bool(normalised.get("incremental"))
    previous_path = normalised.get("previous_snapshot")
    previous_exists = bool(previous_path) and exists(previous_path)
    if incremental and normalised["rows_in"] == 0 and previous_exists:
        # nothing extracted: the previous snapshot is this run's too, kept by reference
        none = pd.Series([], dtype="string", name="source_record_id").to_frame()
        result = _result(name, previous_path, write_parquet(none, out("deleted")), 0,
                         write_parquet(none, out("changed")), 0, parquet_rows(previous_path))
    else:
        if previous_path and not previous_exists and incremental:
            raise FileNotFoundError(f"source {name}: previous snapshot {previous_path} is gone; run with full_refresh")
        counts = advance_snapshot(previous_path if previous_exists else None, normalised["std_path"],
                                  normalised["raw_path"], incremental, out("current"), out("deleted"), out("changed"),
                                  get_settings().normalise_chunk_rows)
        result = _result(name, out("current"), out("deleted"), counts["deleted"], out("changed"), counts["changed"],
                         counts["rows"])
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
    by source name: what validate, link, load and the manifest read, in source-name order whatever
    order the sources ran in (the plan starts the largest first), so that nothing downstream
    depends on the schedule. Normalise's own timing keys stay as they are; the snapshot task's
    timing stays in its own result."""
    by_source = {s["source"]: s for s in snapshots}
    missing = [n["source"] for n in normalised if n["source"] not in by_source]
    if missing:
        raise KeyError(f"no snapshot result for source(s) {', '.join(missing)}")
    return [{**n, **{k: by_source[n["source"]][k] for k in SNAPSHOT_KEYS}}
            for n in sorted(normalised, key=lambda n: n["source"])]
