"""Fellegi–Sunter weights: m/u estimated with recordlinkage's ECM when the data allow,
prior values otherwise; scores are summed log2 likelihood ratios."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import recordlinkage

log = logging.getLogger(__name__)
_CLIP = (1e-4, 1 - 1e-4)


def estimate_mu(features: pd.DataFrame, m_prior: dict, u_prior: dict, estimate: bool,
                min_pairs: int) -> tuple[dict, dict, str]:
    """(m, u, source). ECM on the binary agreement matrix (missing counted as disagree for
    the fit only); its estimate is kept only if every field has m > u, i.e. the EM found the
    match class rather than some other split of the data."""
    m = {c: m_prior[c] for c in features.columns}
    u = {c: u_prior[c] for c in features.columns}
    if not estimate or len(features) < min_pairs:
        return m, u, "prior"
    binary = features.fillna(0).astype(int)
    varying = [c for c in binary.columns if binary[c].nunique() == 2]
    if len(varying) < 3:
        return m, u, "prior"
    try:
        ecm = recordlinkage.ECMClassifier(init="jaro", max_iter=100)
        ecm.fit(binary[varying])
        m_est = {c: float(ecm.m_probs[c][1]) for c in varying}
        u_est = {c: float(ecm.u_probs[c][1]) for c in varying}
    except Exception as exc:  # EM failing on odd data must not stop a run: fall back
        log.warning("ECM estimation failed (%s); using prior weights", type(exc).__name__)
        return m, u, "prior"
    if not all(m_est[c] > u_est[c] for c in varying):
        log.warning("ECM estimate rejected (some field has m <= u); using prior weights")
        return m, u, "prior"
    m.update({c: float(np.clip(v, *_CLIP)) for c, v in m_est.items()})
    u.update({c: float(np.clip(v, *_CLIP)) for c, v in u_est.items()})
    return m, u, "ecm"


def field_weights(features: pd.DataFrame, m: dict, u: dict) -> pd.DataFrame:
    """Per-pair, per-field log2 weight: agree log2(m/u), disagree log2((1-m)/(1-u)), missing 0."""
    out = {}
    for c in features.columns:
        agree_w = np.log2(m[c] / u[c])
        disagree_w = np.log2((1 - m[c]) / (1 - u[c]))
        x = features[c].to_numpy(dtype=float)
        out[c] = np.where(np.isnan(x), 0.0, np.where(x > 0.5, agree_w, disagree_w))
    return pd.DataFrame(out, index=features.index)
