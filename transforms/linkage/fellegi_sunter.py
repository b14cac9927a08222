"""Fellegi–Sunter weights: m/u estimated with recordlinkage's ECM when the data allow,
prior values otherwise; scores are summed log2 likelihood ratios."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
_CLIP = (1e-4, 1 - 1e-4)


def estimate_mu(features: pd.DataFrame, m_prior: dict, u_prior: dict, estimate: bool,
                min_pairs: int, min_presence: float = 0.9, m_max: float = 0.99,
                max_sample: int = 200_000) -> tuple[dict, dict, str]:
    """(m, u, source). m comes from recordlinkage's ECM on the fields compared in at least
    `min_presence` of the pairs (ECM has no notion of a missing value); u stays the prior,
    a random-pair rate: ECM's u is measured inside the blocks, where e.g. every pair of the
    birth-date block agrees on birth date, and would wash the evidence out. m is capped so one
    disagreement (a polyphone, a typo) can never veto a link on its own. The estimate is kept
    only if every estimated field has m > u."""
    m = {c: m_prior[c] for c in features.columns}
    u = {c: u_prior[c] for c in features.columns}
    if not estimate or len(features) < min_pairs:
        return m, u, "prior"
    present = features.notna().mean()
    fields = [c for c in features.columns
              if present[c] >= min_presence and features[c].dropna().nunique() == 2]
    if len(fields) < 3:
        return m, u, "prior"
    import recordlinkage   # imports scikit-learn (seconds): paid only where ECM runs

    try:
        ecm = recordlinkage.ECMClassifier(init="jaro", max_iter=100)
        # complete pairs only: a missing value read as disagreement (a service-hall record
        # without birth date) would drag m down for every pair
        sample = features[fields].dropna()
        if len(sample) < min_pairs:
            return m, u, "prior"
        if len(sample) > max_sample:   # m is a rate: a fixed random sample estimates it as well
            sample = sample.sample(n=max_sample, random_state=0)
        ecm.fit(_small_ints(sample.astype(int)))
        m_est = {c: float(ecm.m_probs[c][1]) for c in fields}
    except Exception as exc:  # EM failing on odd data must not stop a run: fall back
        log.warning("ECM estimation failed (%s); using prior weights", type(exc).__name__)
        return m, u, "prior"
    if not all(m_est[c] > u[c] for c in fields):
        log.warning("ECM estimate rejected (some field has m <= u); using prior weights")
        return m, u, "prior"
    m.update({c: float(np.clip(v, _CLIP[0], m_max)) for c, v in m_est.items()})
    return m, u, "ecm"


def _small_ints(patterns: pd.DataFrame) -> pd.DataFrame:
    """Comparison patterns as int8 when they fit: recordlinkage's ECM counts the distinct rows
    with np.unique(axis=0), whose row sort costs grow with the item size; the values, and so
    the fit, are unchanged."""
    small = np.iinfo(np.int8)
    if len(patterns) and patterns.min().min() >= small.min and patterns.max().max() <= small.max:
        return patterns.astype(np.int8)
    return patterns


def field_weights(features: pd.DataFrame, m: dict, u: dict) -> pd.DataFrame:
    """Per-pair, per-field log2 weight: agree log2(m/u), disagree log2((1-m)/(1-u)), missing 0."""
    out = {}
    for c in features.columns:
        agree_w = np.log2(m[c] / u[c])
        disagree_w = np.log2((1 - m[c]) / (1 - u[c]))
        x = features[c].to_numpy(dtype=float)
        out[c] = np.where(np.isnan(x), 0.0, np.where(x > 0.5, agree_w, disagree_w))
    return pd.DataFrame(out, index=features.index)
