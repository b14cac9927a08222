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
    codes, distinct = distinct_text(values)
    done = np.empty(len(distinct) + 1, dtype=object)
    done[:-1] = fn(distinct)
    done[-1] = None
    return done[np.where(codes >= 0, codes, len(distinct))]


def distinct_text(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(each row's position among the distinct values, -1 for NULL; the distinct non-NULL values
    as str). Arrow-backed text is dictionary-encoded in Arrow: a Python str per distinct value only."""
    codes, uniques = pd.factorize(values)
    # to object in C first: iterating an Arrow-backed array makes a Python scalar per value
    return codes, [v if type(v) is str else str(v) for v in np.asarray(uniques, dtype=object)]


def per_row(results: pa.Array, codes: np.ndarray) -> pa.Array:
    """results[code] for each row (distinct_text's codes), NULL where the code is -1."""
    return results.take(pa.array(codes, mask=codes < 0))


def arrow_text(values: pa.Array | pa.ChunkedArray, index: pd.Index) -> pd.Series:
    """Arrow text as a `string[pyarrow]` Series: no Python str per value, and the load's staging
    hands it to Arrow as it is."""
    return pd.Series(pd.arrays.ArrowStringArray(values.cast(pa.string())), index=index)


_BLOCK = 64   # SHA-256's block size (RFC 2104: the key is padded to it)
_IPAD, _OPAD = bytes(x ^ 0x36 for x in range(256)), bytes(x ^ 0x5C for x in range(256))


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """The key's inner and outer pads (RFC 2104): HMAC-SHA256(msg) = SHA256(outer || SHA256(inner || msg))."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return key.translate(_IPAD), key.translate(_OPAD)


def hmac_sha256(key: bytes):
    """HMAC-SHA256 (RFC 2104) of many messages under one key: msg -> 32 bytes, the same bytes as
    hmac.digest(key, msg, "sha256"). The key's inner and outer pad states are hashed once and
    copied per message; hmac.digest derives them again on every call (3x the cost per token)."""
    inner_pad, outer_pad = hmac_pads(key)
    inner, outer = hashlib.sha256(inner_pad).copy, hashlib.sha256(outer_pad).copy

    def digest(msg: bytes) -> bytes:
        h = inner()
        h.update(msg)
        o = outer()
        o.update(h.digest())
        return o.digest()

    return digest


def token_array(values: list[str], key: bytes) -> pa.StringArray:
    """The HMAC-SHA256 hex token of each value, as Arrow text: the digests are joined and
    hex-encoded in one call (no Python str per token)."""
    mac = hmac_sha256(key)
    text = b"".join([mac(v.encode()) for v in values]).hex().encode("ascii")
    # 64 hex characters per token; int32 offsets hold 33 million tokens per call
    offsets = np.arange(0, len(text) + 1, 64, dtype=np.int32)
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(text))


def token_sql(column: str) -> str:
    """DuckDB SQL giving `token` of a VARCHAR column: the HMAC-SHA256 hex of its UTF-8 bytes,
    with the key's pads bound as the parameters $inner_pad and $outer_pad (token_parameters), so
    no key is ever in the SQL text. For text already in DuckDB (a fact chunk joined to its owners
    in the same query); millions of rows at once keep DuckDB's memory high (owners.py says why
    the identifier holders are tokenised in Python)."""
    return f"sha256($outer_pad || unhex(sha256($inner_pad || encode({column}))))"


def token_parameters(key: bytes) -> dict[str, bytes]:
    inner_pad, outer_pad = hmac_pads(key)
    return {"inner_pad": inner_pad, "outer_pad": outer_pad}


def token(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 hex token per value; NULL stays NULL. Computed once per unique value; Arrow-backed."""
    codes, distinct = distinct_text(values)
    return arrow_text(per_row(token_array(distinct, key), codes), values.index)


def token_one(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _arrow_text(values: pd.Series) -> pa.Array:
    if getattr(values.dtype, "storage", None) == "pyarrow":   # astype("string") would make it Python text
        return values.array._pa_array.combine_chunks().cast(pa.string())
    s = values.astype("string")
    return pa.array(s.to_numpy(dtype=object, na_value=None), type=pa.string())


def _mask_middle(values: pd.Series, keep_head: int, keep_tail: int) -> pd.Series:
    """Head and tail kept, every character between starred; values too short to keep
    anything hidden are fully starred. In Arrow: no Python string per value (Arrow-backed out)."""
    s = _arrow_text(values)
    n = pc.utf8_length(s)
    hidden = pc.max_element_wise(pc.subtract(n, keep_head + keep_tail), 0)
    parts = [pc.utf8_slice_codeunits(s, 0, keep_head), pc.binary_repeat(pa.scalar("*"), hidden)]
    if keep_tail:
        parts.append(pc.utf8_slice_codeunits(s, -keep_tail))
    masked = pc.binary_join_element_wise(*parts, "")
    starred = pc.binary_repeat(pa.scalar("*"), pc.fill_null(n, 0))
    out = pc.if_else(pc.less_equal(n, keep_head + keep_tail), starred, masked)
    return arrow_text(out, values.index)


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
