"""Tokens and masks: the only place raw identifiers are turned into analyst-safe values."""
from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def per_unique(values: pd.Series, fn) -> np.ndarray:
    """fn(list of distinct non-NULL values as str) -> list of results, taken back per row
    (object array, None for NULL). Tokens and ciphertexts are computed once per value."""
    codes, uniques = pd.factorize(values)
    done = np.empty(len(uniques) + 1, dtype=object)
    # to object in C first: iterating an Arrow-backed array makes a Python scalar per value
    done[:-1] = fn([v if type(v) is str else str(v) for v in np.asarray(uniques, dtype=object)])
    done[-1] = None
    return done[np.where(codes >= 0, codes, len(uniques))]


_BLOCK = 64   # SHA-256's block size (RFC 2104: the key is padded to it)
_IPAD, _OPAD = bytes(x ^ 0x36 for x in range(256)), bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes):
    """HMAC-SHA256 (RFC 2104) of many messages under one key: msg -> 32 bytes, the same bytes as
    hmac.digest(key, msg, "sha256"). The key's inner and outer pad states are hashed once and
    copied per message; hmac.digest derives them again on every call (3x the cost per token)."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner, outer = hashlib.sha256(key.translate(_IPAD)).copy, hashlib.sha256(key.translate(_OPAD)).copy

    def digest(msg: bytes) -> bytes:
        h = inner()
        h.update(msg)
        o = outer()
        o.update(h.digest())
        return o.digest()

    return digest


def token(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 hex token per value; NULL stays NULL. Computed once per unique value."""
    mac = hmac_sha256(key)
    hexes = per_unique(values, lambda vs: [mac(v.encode()).hex() for v in vs])
    return pd.Series(hexes, index=values.index, dtype="string")


def token_one(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _arrow_text(values: pd.Series) -> pa.Array:
    s = values.astype("string")
    if s.dtype.storage == "pyarrow":
        return s.array._pa_array.combine_chunks().cast(pa.string())
    return pa.array(s.to_numpy(dtype=object, na_value=None), type=pa.string())


def _mask_middle(values: pd.Series, keep_head: int, keep_tail: int) -> pd.Series:
    """Head and tail kept, every character between starred; values too short to keep
    anything hidden are fully starred. In Arrow: no Python string per value."""
    s = _arrow_text(values)
    n = pc.utf8_length(s)
    hidden = pc.max_element_wise(pc.subtract(n, keep_head + keep_tail), 0)
    parts = [pc.utf8_slice_codeunits(s, 0, keep_head), pc.binary_repeat(pa.scalar("*"), hidden)]
    if keep_tail:
        parts.append(pc.utf8_slice_codeunits(s, -keep_tail))
    masked = pc.binary_join_element_wise(*parts, "")
    starred = pc.binary_repeat(pa.scalar("*"), pc.fill_null(n, 0))
    out = pc.if_else(pc.less_equal(n, keep_head + keep_tail), starred, masked)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=values.index).astype("string")


def mask_id_number(values: pd.Series) -> pd.Series:
    """110105********002X: region kept, birth date and serial hidden."""
    return _mask_middle(values, 6, 4)


def mask_phone(values: pd.Series) -> pd.Series:
    """138****1234."""
    return _mask_middle(values, 3, 4)


def mask_document_number(values: pd.Series) -> pd.Series:
    """E1*****78: a passport or permit number keeps two characters at each end (enough for a
    steward to tell two documents apart, not to use one)."""
    return _mask_middle(values, 2, 2)


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
