"""Stage 2, normalise: one source's rows standardised, quarantined and reconciled, and its snapshot advanced."""
from __future__ import annotations

import logging

import pandas as pd

from govdata.failpoints import failpoint
from govdata.lake import exists, read_parquet, run_path, write_parquet
from govdata.stages.common import _source, _timed

log = logging.getLogger(__name__)


@_timed
def normalise(extracted: dict, run: dict) -> dict:
    from govdata.standards.registry import load_standards
    from govdata.transforms.normalise import check_reconciliation, normalise_source

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
