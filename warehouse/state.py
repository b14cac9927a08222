"""Extraction state per source (etl_state): the watermark plus free-form state (row hashes,
snapshot info) as JSON. The pipeline also writes etl_state rows inside the load transaction, so
a watermark only advances with a successful load."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd

from govdata.warehouse.load import load_tables, read_table


def read_state(url: str, source_system: str) -> dict | None:
    """{'watermark': ..., 'rows_extracted': ..., 'run_id': ..., **state} or None (never extracted)."""
    frame = read_table(url, "etl_state")
    if frame is None:
        return None
    rows = frame[frame["source_system"] == source_system]
    if rows.empty:
        return None
    row = rows.iloc[0]
    state = json.loads(row["state"]) if isinstance(row["state"], str) and row["state"] else {}
    rows_extracted = None if pd.isna(row["rows_extracted"]) else int(row["rows_extracted"])
    watermark = None if pd.isna(row["watermark"]) else row["watermark"]
    return {**state, "watermark": watermark, "rows_extracted": rows_extracted, "run_id": row["run_id"]}


def write_state(url: str, source_system: str, state: dict, run_id: str) -> None:
    """Replace the state of one source; `watermark` and `rows_extracted` get their own columns."""
    rest = {k: v for k, v in state.items() if k not in ("watermark", "rows_extracted", "run_id")}
    watermark = state.get("watermark")
    row = pd.DataFrame({
        "source_system": [source_system],
        "watermark": [None if watermark is None else str(watermark)],
        "rows_extracted": pd.array([state.get("rows_extracted")], dtype="Int64"),
        "state": [json.dumps(rest, ensure_ascii=False, sort_keys=True, default=str)],
        "run_id": [run_id],
        "updated_at": [datetime.now(timezone.utc).replace(tzinfo=None)],
    })
    load_tables(url, {"etl_state": row}, run_id)
