"""Steward and engineer operations on a warehouse and its lake (the CLI calls these)."""
from __future__ import annotations

import getpass
from pathlib import Path

import pandas as pd

from govdata.lake import exists, read_parquet, run_path
from govdata.stages import read_manifest


class NoRunError(LookupError):
    pass


def latest_run_id(url: str) -> str:
    from govdata.warehouse.load import read_table

    runs = read_table(url, "etl_run")
    if runs is None or runs.empty:
        raise NoRunError("the warehouse has no run yet: run `govdata run` first")
    return str(runs.sort_values("finished_at")["run_id"].iloc[-1])


def run_manifest(url: str, lake: str, run_id: str | None = None) -> dict:
    run_id = run_id or latest_run_id(url)
    path = run_path(lake, run_id, "manifest.json")
    if not exists(path):
        raise NoRunError(f"run {run_id} has no manifest in the lake {lake}")
    return read_manifest(path)


def records_of(manifest: dict, kind: str) -> pd.DataFrame:
    # every live record (an incremental run's std holds only the rows it extracted)
    frames = [read_parquet(n.get("current_path") or n["std_path"]) for n in manifest["normalised"] if n["kind"] == kind]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def export_review(url: str, lake: str, out: Path, entity: str = "person") -> int:
    """Open review pairs as a CSV with both records side by side (identifiers masked)."""
    from govdata.transforms.linkage import review_to_csv
    from govdata.warehouse.load import read_table

    queue = read_table(url, "review_queue")
    if queue is None or queue.empty:
        queue = pd.DataFrame(columns=["pair_id", "entity", "status"])
    queue = queue[(queue["entity"] == entity) & (queue["status"].fillna("open") == "open")]
    review_to_csv(queue, records_of(run_manifest(url, lake), entity), out)
    return len(queue)


def import_review(url: str, path: Path, entity: str = "person", who: str | None = None) -> int:
    """Steward decisions from a filled-in review CSV into review_decision (applied every run)."""
    from govdata.transforms.linkage import decisions_from_csv
    from govdata.warehouse.load import load_tables

    decisions = decisions_from_csv(path)
    decisions["entity"] = entity
    decisions["decided_by"] = decisions["decided_by"].replace("", None).fillna(who or getpass.getuser())
    decisions["decided_at"] = pd.to_datetime(decisions["decided_at"].replace("", None)).fillna(
        pd.Timestamp.now(tz="UTC").tz_localize(None))
    if not decisions.empty:
        load_tables(url, {"review_decision": decisions}, run_id="review-import")
    return len(decisions)


def evaluate_latest(url: str, lake: str, world: Path, progress=None) -> dict:
    from govdata.evaluate import evaluate_run

    run_id = latest_run_id(url)
    return evaluate_run(world, {"run_id": run_id, "lake": lake}, lake, progress)
