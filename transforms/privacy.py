"""Tokens and masks: the only place raw identifiers are turned into analyst-safe values."""
from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd


def token(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 hex token per value; NULL stays NULL. Computed once per unique value."""
    uniques = values.dropna().unique()
    lookup = {v: hmac.new(key, str(v).encode(), hashlib.sha256).hexdigest() for v in uniques}
    return values.map(lookup).astype("string")


def token_one(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _mask_middle(values: pd.Series, keep_head: int, keep_tail: int) -> pd.Series:
    s = values.astype("string")
    n = s.str.len()
    head = s.str[:keep_head]
    tail = s.str[-keep_tail:] if keep_tail else ""
    stars = n.sub(keep_head + keep_tail).clip(lower=0).fillna(0).astype(int)
    masked = head + pd.Series(["*" * k for k in stars], index=s.index, dtype="string") + tail
    # Values too short to keep anything hidden are fully starred.
    short = n <= keep_head + keep_tail
    masked = masked.mask(short.fillna(False), s.str.replace(r".", "*", regex=True))
    return masked.where(s.notna(), pd.NA)


def mask_id_number(values: pd.Series) -> pd.Series:
    """110105********002X: region kept, birth date and serial hidden."""
    return _mask_middle(values, 6, 4)


def mask_phone(values: pd.Series) -> pd.Series:
    """138****1234."""
    return _mask_middle(values, 3, 4)


def mask_value(values: pd.Series) -> pd.Series:
    """Mask any raw value for quarantine rows: long digit-like strings lose their middle,
    short values keep the first character only. Never returns a full identifier."""
    s = values.astype("string")
    n = s.str.len().fillna(0)
    long_ = _mask_middle(s, 6, 4) if len(s) else s
    mid = _mask_middle(s, 3, 4) if len(s) else s
    short = _mask_middle(s, 1, 0) if len(s) else s
    out = np.where(n >= 15, long_, np.where(n >= 8, mid, short))
    return pd.Series(out, index=s.index, dtype="string").where(s.notna(), pd.NA)
