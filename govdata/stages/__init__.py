"""The pipeline's stages as plain functions: XCom-sized dicts in, XCom-sized dicts out.

The Airflow DAG (dags/govdata_pipeline.py) only wires these together, and the CLI runs that
same DAG, so there is one code path. Large data moves between stages as Parquet files in the
lake; the dicts carry paths and counts only.

One module per stage: plan (0), extract (1), normalise (2), snapshot (2b), validate (3), link (4; what it
reads in link_inputs), load (5, with the run manifest), marts (6 warehouse checks, 7 marts,
8 findings), report (9). The pure linkage planning and merging live in
transforms/linkage/plan.py and merge.py.
"""
from __future__ import annotations

from govdata.stages.common import ENTERPRISE, LINKERS, OUTPUTS, PERSON, QualityGateError
from govdata.stages.extract import extract
from govdata.stages.link import link_merge, link_partition, link_plan
from govdata.stages.link_inputs import (INCREMENTAL_MAX_SHARE, incremental_scope, link_config, partition_rows,
                                        previous_model)
from govdata.stages.load import (closed_reviews, etl_run_row, etl_state_rows, load, owner_change_summary,
                                 previous_owner_state, quarantine_scope, read_manifest, stale_reviews,
                                 write_manifest)
from govdata.stages.marts import check_warehouse, findings, marts
from govdata.stages.normalise import normalise
from govdata.stages.plan import plan_run
from govdata.stages.report import report
from govdata.stages.snapshot import SNAPSHOT_KEYS, snapshot, with_snapshots
from govdata.stages.validate import validate

# The pure linkage helpers load on first use: importing transforms.linkage takes a few tenths
# of a second, which every task importing govdata.stages would otherwise pay.
_LINKAGE = {
    "govdata.transforms.linkage.plan": {"KEYS", "assign_partitions", "key_positions", "previous_partitions",
                                "_split_by_partition"},
    "govdata.transforms.linkage.merge": {"separate_shared_ids", "merged_model", "_ids_in_several", "_sum_stats"},
}


def __getattr__(name: str):
    import importlib

    for module, names in _LINKAGE.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ENTERPRISE", "INCREMENTAL_MAX_SHARE", "LINKERS", "OUTPUTS", "PERSON", "QualityGateError", "SNAPSHOT_KEYS",
           "check_warehouse", "closed_reviews", "etl_run_row", "etl_state_rows", "extract", "findings",
           "incremental_scope", "link_config", "link_merge", "link_partition", "link_plan", "load", "marts",
           "normalise", "owner_change_summary", "partition_rows", "plan_run", "previous_model",
           "previous_owner_state", "quarantine_scope", "read_manifest", "report", "snapshot", "stale_reviews", "validate",
           "with_snapshots", "write_manifest"]
