"""Small helpers shared by the row builders (build, owners, facts)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from govdata.transforms.privacy import hmac_sha256, per_unique, token
from govdata.warehouse.schema import table_for


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")


def _table_columns(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Only the warehouse table's columns (missing nullable ones as NULL), in table order."""
    cols = [c.name for c in table_for(table).columns]
    out = frame.reindex(columns=cols)
    return out.reset_index(drop=True)


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name].astype("string") if name in frame else pd.Series(pd.NA, index=frame.index, dtype="string")


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype="object")


# --- identifier tokens, each computed once per build -----------------------------------------
_memo: dict[bytes, dict[str, str]] | None = None


@contextmanager
def token_memo() -> Iterator[None]:
    """While open, identifier_token remembers every token it computed: a citizen ID number is
    tokenised for dim_person, for identifier_owner and for each fact naming it; HMAC once."""
    global _memo
    outer, _memo = _memo, {} if _memo is None else _memo
    try:
        yield
    finally:
        _memo = outer


def identifier_token(values: pd.Series, key: bytes) -> pd.Series:
    """privacy.token (HMAC-SHA256 hex per value, NULL stays NULL), through the open token_memo."""
    if _memo is None:
        return token(values, key)
    memo = _memo.setdefault(key, {})
    mac = hmac_sha256(key)

    def tokens(distinct: list[str]) -> list[str]:
        out = []
        for v in distinct:
            t = memo.get(v)
            if t is None:
                t = memo[v] = mac(v.encode()).hex()
            out.append(t)
        return out

    return pd.Series(per_unique(values, tokens), index=values.index, dtype="string")
