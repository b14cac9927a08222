"""Stage 1, extract: one source's new rows (past its watermark) into the lake as Parquet."""
from __future__ import annotations

import logging

from govdata.failpoints import failpoint
from govdata.lake import run_path
from govdata.stages.common import _source, _timed

log = logging.getLogger(__name__)


@_timed
def extract(source: dict, run: dict) -> dict:
    from govdata.extract import extract_source
    from govdata.warehouse.state import read_state

    config = _source(source["path"])
    state = read_state(run["warehouse_url"], config.name) or {}
    incremental = bool(config.incremental) and not run["full_refresh"]
    watermark = state.get("watermark") if incremental else None
    result = extract_source(config, run_path(run["lake"], run["run_id"], "raw", f"{config.name}.parquet"), watermark)
    log.info("extracted %s rows from %s", result.rows, config.name)
    failpoint("extract")
    return {**source, **result.as_xcom(), "previous_watermark": watermark, "incremental": incremental,
            "previous_snapshot": state.get("snapshot_path")}
