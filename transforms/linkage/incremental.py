"""Incremental linking: the records a run has to link again.

A new or changed record can only change the clusters it could join: those of the records it
shares a blocking key or an identifier with. So the relink scope is, in order:
1. the previous clusters of the seeds (new and changed records, records whose cluster lost a
   member, records a steward decided on) — a cluster is always relinked whole;
2. every record that could pair with a record of step 1 (persons: sharing one of the
   probabilistic pass's blocking keys or the sorted neighbourhood on the ID number, with one
   side not held by a valid ID — two held records are never compared — or holding the same
   ID number) or sharing an identifier token (enterprises: USCC, organisation code, tax and registration numbers, name + legal
   representative) with a record of step 1;
3. the previous clusters of all of those (enterprises: steps 2 and 3 repeated until the
   scope stops growing).
Everything else keeps its xref row. With the previous run's weights a relink of the scope
gives what a full relink gives (tests/govdata/test_link_incremental.py checks it on the
generator's data).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import prepare_records
from .config import LinkConfig
from .enterprises import ENTERPRISE_COLS, identifier_keys
from .persons import PERSON_COLS, _blocking_frame, candidate_pairs, holder_conflicts, id_facts
from .survivorship import trust_rank

# the columns the scope is computed from (prepare_records fills the others with NULL)
SCOPE_COLUMNS = {"person": ["source_system", "source_record_id", "id_number", "id_number_status", "name",
                            "name_pinyin", "sex", "birth_date", "phone", "region_code"],
                 "enterprise": ["source_system", "source_record_id", "uscc", "uscc_status", "org_code",
                                "tax_no", "reg_no", "name_core", "legal_rep_name"]}
ENTERPRISE_TOKENS = {"uscc": "uscc", "org": "org", "tax_org": "org", "tax": "tax", "reg": "reg",
                     "name_key": "name"}   # column → token family (an org code matches either)


def whole_clusters(mask: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """mask grown to every record of a previous cluster it touches (cluster -1: none)."""
    touched = np.unique(cluster[mask & (cluster >= 0)])
    return mask | np.isin(cluster, touched)


def person_neighbours(records: pd.DataFrame, mask: np.ndarray, cfg: LinkConfig,
                      trust_order: list[str]) -> np.ndarray:
    """Records that could pair with a masked record in the linkage (the masked ones included):
    sharing a blocking key where one side goes to the probabilistic pass (two records held by
    their ID numbers are never compared), or holding the same ID number."""
    df = prepare_records(records, PERSON_COLS, "person records")
    facts = id_facts(df)
    conflict = holder_conflicts(df, facts, trust_rank(df["source_system"], trust_order))
    held = facts["usable"].to_numpy() & ~conflict
    view = _blocking_frame(df, facts, conflict, cfg.max_block_size)
    pairs = candidate_pairs(view, np.flatnonzero(mask), np.arange(len(df), dtype=np.int64), cfg)
    left, right = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
    out = mask.copy()
    out[right[~held[left] | ~held[right]]] = True
    ids = df["id_number"]
    out |= ids.isin(ids[mask].dropna().unique()).to_numpy()
    return out


def enterprise_tokens(records: pd.DataFrame) -> pd.Series:
    """Identifier tokens ("org\x1f<code>", …) indexed by record position, one row per token."""
    keys = identifier_keys(prepare_records(records, ENTERPRISE_COLS, "enterprise records"))
    return pd.concat([family + "\x1f" + keys[col].dropna() for col, family in ENTERPRISE_TOKENS.items()])


def enterprise_neighbours(tokens: pd.Series, mask: np.ndarray) -> np.ndarray:
    """Records sharing an identifier token with a masked record (the masked ones included)."""
    at = tokens.index.to_numpy()
    hit = tokens.isin(tokens[mask[at]].unique()).to_numpy()
    out = mask.copy()
    out[at[hit]] = True
    return out


def relink_scope(records: pd.DataFrame, kind: str, seeds: np.ndarray, previous_cluster: np.ndarray,
                 cfg: LinkConfig, trust_order: list[str]) -> np.ndarray:
    """Boolean mask over records (positional): the records to link again."""
    if len(seeds) != len(records) or len(previous_cluster) != len(records):
        raise ValueError("relink_scope: seeds and previous_cluster must align with records")
    scope = whole_clusters(np.asarray(seeds, dtype=bool), previous_cluster)
    if not scope.any():
        return scope
    if kind == "person":
        scope = person_neighbours(records, scope, cfg, trust_order)
    elif kind == "enterprise":
        # identifiers that point at two masters prove nothing: the scope must hold every
        # holder of a token it touches, so grow it to a fixpoint (tokens are cheap)
        tokens = enterprise_tokens(records)
        while True:
            grown = whole_clusters(enterprise_neighbours(tokens, scope), previous_cluster)
            if grown.sum() == scope.sum():
                break
            scope = grown
    else:
        raise ValueError(f"relink_scope: unknown kind {kind!r} (expected person or enterprise)")
    return whole_clusters(scope, previous_cluster)
