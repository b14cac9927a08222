"""Lake retention: a run's hand-offs go when the run ends, old run folders after N runs.

Called once a run has been loaded and reported (`finish_run`, from the report stage):
- this run's hand-off files (`link/input`, `link/parts`: read once inside the run) are deleted;
- run folders with a manifest (loaded runs) beyond the newest GOVDATA_LAKE_KEEP_RUNS are deleted;
- folders without a manifest (killed or failed runs) are deleted when nothing in them is newer
  than the start of the current run: the pipeline DAG runs one at a time (max_active_runs=1),
  so such a run ended before this one began; a newer folder (a run in progress) is left alone;
- the current run, and every run folder etl_state references (the snapshots the next run
  compares with), are always kept.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import fsspec

from govdata.lake import run_path, safe_run_id

log = logging.getLogger(__name__)
HAND_OFF_FOLDERS = (("link", "input"), ("link", "parts"))


@dataclass
class RunFolder:
    name: str
    path: str
    loaded: bool          # has a manifest.json (the load committed)
    started: float        # run start (manifest) or the oldest file time, epoch seconds
    newest: float         # newest file time in the folder, epoch seconds


def _mtime(info: dict) -> float:
    value = info.get("mtime", info.get("LastModified", info.get("updated", 0)))
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value or 0)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    stamp = datetime.fromisoformat(iso)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def run_folders(lake: str) -> list[RunFolder]:
    fs, _, (root,) = fsspec.get_fs_token_paths(lake)
    if not fs.exists(root):
        return []
    out = []
    for entry in fs.ls(root, detail=True):
        if entry["type"] != "directory":
            continue
        path = entry["name"]
        files = [i for i in fs.find(path, detail=True).values() if i.get("type") != "directory"]
        times = [_mtime(i) for i in files] or [_mtime(entry)]
        manifest = f"{path}/manifest.json"
        started = None
        if fs.exists(manifest):
            with fs.open(manifest, "r", encoding="utf-8") as fh:
                started = _epoch(json.load(fh).get("run", {}).get("started_at"))
        out.append(RunFolder(path.rstrip("/").rsplit("/", 1)[-1], path, fs.exists(manifest),
                             started if started is not None else min(times), max(times)))
    return sorted(out, key=lambda r: r.started)


def referenced_runs(warehouse_url: str) -> set[str]:
    """Run folders holding a snapshot etl_state points at (the next run's base)."""
    from govdata.warehouse.load import read_table

    frame = read_table(warehouse_url, "etl_state")
    names = set()
    for state in [] if frame is None else frame["state"].dropna():
        path = (json.loads(state) if state else {}).get("snapshot_path")
        if path:   # {lake}/{run}/current/{source}.parquet
            names.add(path.rstrip("/").rsplit("/", 3)[-3])
    return names


def plan_retention(folders: list[RunFolder], current: str, started: float, keep: int,
                   referenced: set[str]) -> list[tuple[RunFolder, str]]:
    """(folder, reason) for every folder to delete."""
    loaded = [f for f in folders if f.loaded or f.name == current]
    kept = {f.name for f in loaded[-keep:]} | referenced | {current}
    doomed = []
    for f in folders:
        if f.name in kept:
            continue
        if f.loaded:
            doomed.append((f, f"older than the last {keep} run(s)"))
        elif f.newest < started:
            doomed.append((f, "killed or failed run (no manifest)"))
    return doomed


def remove_hand_offs(lake: str, run_id: str) -> int:
    """Deletes the run's link hand-off files; returns how many files went."""
    fs, _, _ = fsspec.get_fs_token_paths(lake)
    removed = 0
    for parts in HAND_OFF_FOLDERS:
        _, _, (folder,) = fsspec.get_fs_token_paths(run_path(lake, run_id, *parts))
        if fs.exists(folder):
            removed += len(fs.find(folder))
            fs.rm(folder, recursive=True)
    return removed


def apply_retention(lake: str, run_id: str, warehouse_url: str, started_at: str | None = None,
                    keep: int | None = None) -> dict:
    """Deletes old and orphaned run folders; returns what was removed (for the run report)."""
    from govdata.settings import get_settings

    keep = keep or get_settings().lake_keep_runs
    current = safe_run_id(run_id)
    folders = run_folders(lake)
    mine = next((f for f in folders if f.name == current), None)
    started = _epoch(started_at) or (mine.started if mine else datetime.now(timezone.utc).timestamp())
    doomed = plan_retention(folders, current, started, keep, referenced_runs(warehouse_url))
    fs, _, _ = fsspec.get_fs_token_paths(lake)
    removed = []
    for folder, reason in doomed:
        fs.rm(folder.path, recursive=True)
        log.info("retention: removed run folder %s (%s)", folder.name, reason)
        removed.append({"run": folder.name, "reason": reason})
    return {"keep_runs": keep, "removed": removed,
            "kept": [f.name for f in folders if f.name not in {d.name for d, _ in doomed}]}


def finish_run(manifest: dict) -> dict:
    """End of a successful run: its hand-offs, then old run folders."""
    from govdata.lake import private_tree

    run = manifest["run"]
    hand_offs = remove_hand_offs(run["lake"], run["run_id"])
    private_tree(run_path(run["lake"], run["run_id"]))   # e.g. GX Data Docs assets copied 0755
    result = apply_retention(run["lake"], run["run_id"], run["warehouse_url"], run.get("started_at"))
    return {**result, "hand_off_files_removed": hand_offs}
