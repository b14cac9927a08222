"""Small helpers shared by the row builders (build, owners, facts)."""
from __future__ import annotations

import pandas as pd
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
