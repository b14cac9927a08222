"""Tunable linkage settings and the result bundle handed to the load stage."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# Prior Fellegi–Sunter probabilities P(agree | match), P(agree | non-match) per comparison,
# u taken over random pairs (not blocked ones: inside a birth-date block every pair agrees).
# Used when the data are too few for ECM or ECM does not converge to a sane model.
# birth: exact date agrees; a day/month swap or one day off carries no weight either way.
# document (type + number) and address count only when they
# agree: a new passport, a move, a differently spelt name are no evidence against. One document
# (type + number) on two records is near proof (u 1e-6: ~20 bits) even when the names are spelt in
# two scripts (FEI PING CHEUNG / 张飞萍).
DEFAULT_M = {"id": 0.95, "document": 0.95, "name": 0.90, "pinyin": 0.95, "birth": 0.97,
             "sex": 0.98, "phone": 0.60, "address": 0.60, "region": 0.80}
DEFAULT_U = {"id": 0.001, "document": 0.000001, "name": 0.01, "pinyin": 0.02, "birth": 0.001,
             "sex": 0.50, "phone": 0.01, "address": 0.001, "region": 0.20}


@dataclass(frozen=True)
class LinkConfig:
    match_threshold: float = 14.0     # total match weight (bits) to link automatically
    review_threshold: float = 8.0     # weights in [review, match) go to the steward queue
    id_max_edits: int = 2             # Damerau–Levenshtein edits still counted as "same ID"
    estimate_weights: bool = True     # fit m/u with recordlinkage.ECMClassifier
    min_pairs_for_ecm: int = 2000     # fewer candidate pairs: keep the prior m/u
    sorted_window: int = 5            # sorted-neighbourhood window on id_number
    distinct_sources: bool = True     # a link without ID evidence may not add a 2nd record of a source
    max_block_size: int = 2000        # blocks larger than this (e.g. a shared hotline phone) are skipped
    m_prior: dict = field(default_factory=lambda: dict(DEFAULT_M))
    u_prior: dict = field(default_factory=lambda: dict(DEFAULT_U))


@dataclass
class LinkResult:
    xref: pd.DataFrame       # source_system, source_record_id, <entity>_id, match_rule, match_score
    golden: pd.DataFrame     # dim_person / dim_enterprise
    history: pd.DataFrame    # master_id_history
    review: pd.DataFrame     # review_queue
    evidence: pd.DataFrame   # match_evidence
    stats: dict
