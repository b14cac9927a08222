"""Stage 3, validate: the data-quality expectations on all standardised sources, the run's quality gate."""
from __future__ import annotations

from pathlib import Path

from govdata.lake import run_path, write_parquet
from govdata.stages.common import QualityGateError, _source, _timed


@_timed
def validate(normalised: list[dict], run: dict) -> dict:
    from govdata.expectations.run import validate_standardised
    from govdata.stages.load import SourceFrames
    from govdata.standards.registry import load_standards

    frames = SourceFrames(normalised)   # each source read when validated, in its checked columns only
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
        "workers_peak_rss_mb": outcome.peak_rss_mb or 0,   # the sources are validated in forked workers
    }
