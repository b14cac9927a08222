"""Stage 9, report: the run report (report/index.html) and the lake's retention."""
from __future__ import annotations

from govdata.lake import run_path
from govdata.stages.common import _timed


@_timed
def report(manifest: dict, marted: dict) -> dict:
    from govdata.report import write_run_report
    from govdata.retention import finish_run

    run = manifest["run"]
    path = run_path(run["lake"], run["run_id"], "report", "index.html")
    retention = finish_run(manifest)   # hand-offs of this run, run folders beyond GOVDATA_LAKE_KEEP_RUNS
    summary = write_run_report(path, run=run, extracted=manifest["extracted"], normalised=manifest["normalised"],
                               validated=manifest["validated"], linked=manifest["linked"],
                               loaded=manifest["loaded"], marted=marted, retention=retention,
                               snapshots=manifest.get("snapshots", []))
    return {"report_path": path, "summary": summary}
