"""Stage 2, normalise: one source's rows standardised, quarantined and reconciled.

The source's snapshot (current/, deleted/, changed/) is advanced by the next task, snapshot
(govdata/stages/snapshot.py), from what this one writes; the result carries what it needs."""
from __future__ import annotations

import logging

from govdata.failpoints import failpoint
from govdata.lake import read_parquet, run_path, write_parquet
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
        # for the snapshot task: the extracted ids, and what this run's rows are merged into
        "raw_path": extracted["raw_path"],
        "incremental": bool(extracted.get("incremental", False)),
        "previous_snapshot": extracted.get("previous_snapshot"),
    }
