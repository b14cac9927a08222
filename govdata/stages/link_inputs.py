"""What the link stage reads besides its records: thresholds, previous master data, decisions, weights, scope."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from govdata.stages.common import LINKERS

if TYPE_CHECKING:   # names used in annotations only
    from govdata.transforms.linkage.records import Records

log = logging.getLogger(__name__)


def link_config(kind: str, model: dict | None = None):
    """LinkConfig with the stewards' declaration from standards/linkage.yaml: thresholds,
    blocking rules, comparisons with their m/u priors, the enterprise rule order. model: a
    previous run's weights ({m, u}), used as they are (an incremental run scores with them)."""
    import dataclasses

    import yaml

    from govdata.standards.registry import load_standards
    from govdata.transforms.linkage import LinkConfig
    from govdata.transforms.linkage.settings import parse

    settings = yaml.safe_load((Path(load_standards().root) / "linkage.yaml").read_text(encoding="utf-8")) or {}
    known = set(LinkConfig.__dataclass_fields__)
    options = settings.get(kind) or {}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"standards/linkage.yaml: {kind}: unknown setting(s) {sorted(unknown)}; expected {sorted(known)}")
    config = LinkConfig(**parse(kind, options))
    if model is None:
        return config
    return dataclasses.replace(config, estimate_weights=False, m_prior={**config.m_prior, **model["m"]},
                               u_prior={**config.u_prior, **model["u"]})


def partition_rows() -> int:
    """Records per linkage partition: the unit one mapped Airflow task links in memory."""
    return int(os.environ.get("GOVDATA_LINK_PARTITION_ROWS", "500000"))


def _decisions(run: dict, kind: str) -> pd.DataFrame | None:
    from govdata.warehouse.load import read_table

    decisions = read_table(run["warehouse_url"], "review_decision")
    return decisions[decisions["entity"] == kind] if decisions is not None else None


# An incremental scope above this share of the records costs about what a full relink does
INCREMENTAL_MAX_SHARE = 0.5


def previous_model(run: dict, kind: str) -> dict | None:
    """The Fellegi–Sunter weights ({m, u, source}) of the latest loaded run that has weights for
    kind, from the table link_model."""
    from govdata.warehouse.load import read_table
    from govdata.warehouse.schema import NO_WEIGHTS

    weights = read_table(run["warehouse_url"], "link_model")
    runs = read_table(run["warehouse_url"], "etl_run")
    if weights is None or weights.empty or runs is None:
        return None
    weights = weights[weights["entity"] == kind].merge(runs[["run_id", "finished_at"]], on="run_id")
    if weights.empty:
        return None
    latest = weights[weights["finished_at"] == weights["finished_at"].max()]
    source = latest["source"].iloc[0]
    latest = latest[latest["comparison"] != NO_WEIGHTS]   # a model without weights: empty m and u
    return {"m": dict(zip(latest["comparison"], latest["m"].astype(float))),
            "u": dict(zip(latest["comparison"], latest["u"].astype(float))),
            "source": source}


def _changed_ids(path: str):
    import pyarrow as pa

    from govdata.lake import read_arrow

    return read_arrow(path, columns=["source_record_id"]).column(0).cast(pa.string())


def incremental_scope(records: "Records", kind: str, normalised: list[dict], run: dict, folder: str
                      ) -> dict | None:
    """Of records (link_plan's, read from the lake as needed), {scope mask, previous (the previous xref's Parquet file, written in `folder`),
    carried_rows (the rows of it that the records out of scope keep), model, seeds} for linking
    only what changed, or None when this run links everything (full_refresh, no previous master,
    no previous weights, or a change touching most records)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from govdata.standards.registry import load_survivorship
    from govdata.transforms.linkage.incremental import relink_scope, whole_clusters
    from govdata.transforms.keys import KEYS, SEP, arrow_record_keys, record_keys
    from govdata.transforms.linkage.common import sorted_unique
    from govdata.transforms.linkage.plan import key_positions, value_hashes
    from govdata.transforms.linkage.survivorship import entity_rules

    _, _, id_col = LINKERS[kind]
    if run.get("full_refresh"):
        return None
    model = previous_model(run, kind)
    path = None if model is None else _previous_file(run, kind, folder)
    if path is None:
        return None
    # the scope needs the keys and masters only; the carried rows are copied from the file later
    prev = pq.read_table(path, columns=KEYS + [id_col])
    keys = records.read(KEYS)
    rows = key_positions(keys, prev)                     # each record's previous xref row, -1: none
    found = rows >= 0
    # Each record's previous master as a hash of its id: no per-record copy of the ids, no
    # dictionary of them (14M ids of 5M persons, ~1 GB at the plan's peak). Two masters sharing
    # a hash only make the scope wider: more records linked again, the same links made.
    master_code = value_hashes(prev, id_col)               # -1: no id
    del prev   # its text is not needed past here (14M rows of 5M persons: 0.6 GB at the plan's peak)
    cluster = np.where(found, master_code[np.maximum(rows, 0)], -1)
    # masters that lost a record (deleted at the source, or now rejected) are relinked whole:
    # the previous rows no record of this run points at
    still = np.zeros(len(master_code), dtype=bool)
    still[rows[found]] = True
    lost = sorted_unique(master_code[~still & (master_code >= 0)])
    del master_code, still
    seeds = (cluster < 0) | np.isin(cluster, lost)
    changed = [pc.binary_join_element_wise(n["source"], _changed_ids(n["changed_path"]), SEP).combine_chunks()
               for n in normalised if n["kind"] == kind and n.get("changed_path")]
    decisions = _decisions(run, kind)
    decided = [] if decisions is None else \
        [pa.array(record_keys(decisions, "left_").tolist() + record_keys(decisions, "right_").tolist(), pa.string())]
    if changed or decided:   # every record's joined key text only then (5M persons' keys are ~0.5 GB)
        joined = arrow_record_keys(keys)
        for known in changed + decided:
            seeds |= pc.is_in(joined, value_set=known).to_numpy(zero_copy_only=False)
        del joined
    del keys
    # The scope only grows from the seeds' whole clusters: past the share already, link all
    # before the neighbours are searched (over most of 14M records that search took 24 GB)
    if _too_wide(whole_clusters(seeds, cluster), kind):
        return None
    spec = entity_rules(load_survivorship(), kind)
    scope = relink_scope(records, kind, seeds, cluster, link_config(kind, model), list(spec["trust_order"]))
    if _too_wide(scope, kind):
        return None
    # the carried rows are named, not copied: link_plan writes them from `previous` a slice at
    # a time (at 5M persons a copy of the 14M-row xref was 1 GB more at the plan's peak)
    carried = rows[~np.asarray(scope)]
    return {"scope": np.asarray(scope), "previous": path, "carried_rows": carried[carried >= 0],
            "model": model, "seeds": int(seeds.sum())}


def _too_wide(scope, kind: str) -> bool:
    """Whether an incremental scope costs about what a full relink does (INCREMENTAL_MAX_SHARE)."""
    wide = int(scope.sum()) > INCREMENTAL_MAX_SHARE * len(scope)
    if wide:
        log.info("%s: %d of %d records to relink: linking all", kind, int(scope.sum()), len(scope))
    return wide


def _previous_file(run: dict, kind: str, folder: str) -> str | None:
    """The live rows of the kind's previous xref (keys, master, rule, score) copied to a Parquet
    file in `folder` (None: no rows), never whole in memory: the scope reads the columns it
    needs, and the carried rows are copied from it a batch at a time (at 5M persons, 14M rows)."""
    from govdata.transforms.keys import KEYS
    from govdata.warehouse.state import export_parquet

    _, table, id_col = LINKERS[kind]
    columns = KEYS + [id_col, "match_rule", "match_score"]
    path = f"{folder}/{table}.parquet"
    if os.path.exists(path):   # the incremental scope's copy, when it then links everything
        return path
    return export_parquet(run["warehouse_url"], table, path, columns, where="is_deleted IS NOT TRUE")

