"""Tunable linkage settings and the result bundle handed to the load stage. The blocking
rules, comparisons and m/u priors are declared in standards/linkage.yaml (settings.py); the
defaults here are the shipped declaration."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


def _shipped(name: str):
    from .settings import shipped

    value = shipped()[name]
    return dict(value) if isinstance(value, dict) else value


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
    # Prior Fellegi–Sunter probabilities P(agree | match), P(agree | non-match) per comparison,
    # u taken over random pairs (not blocked ones: inside a birth-date block every pair agrees).
    # Used when the data are too few for ECM or ECM does not converge to a sane model.
    m_prior: dict = field(default_factory=lambda: _shipped("m_prior"))
    u_prior: dict = field(default_factory=lambda: _shipped("u_prior"))
    blocking: tuple = field(default_factory=lambda: _shipped("blocking"))        # settings.BlockingRule
    comparisons: tuple = field(default_factory=lambda: _shipped("comparisons"))  # settings.Comparison
    rules: tuple = field(default_factory=lambda: _shipped("rules"))              # enterprise rule order


@dataclass
class LinkResult:
    xref: pd.DataFrame       # source_system, source_record_id, <entity>_id, match_rule, match_score
    golden: pd.DataFrame     # dim_person / dim_enterprise
    history: pd.DataFrame    # master_id_history
    review: pd.DataFrame     # review_queue
    evidence: pd.DataFrame   # match_evidence
    stats: dict
