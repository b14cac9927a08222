"""The current standardised state of each source, carried from run to run.

Linking and loading need every live record of a source, while an incremental extract brings
only the changed rows. Each run writes the source's merged state (`{run}/current/{source}`);
its path is kept in etl_state, which only advances with a successful load, so a failed run
never becomes the base of the next one.
"""
from __future__ import annotations

import pandas as pd

KEY = "source_record_id"


def merge_snapshot(previous: pd.DataFrame | None, changed: pd.DataFrame, extracted_ids: pd.Series,
                   incremental: bool) -> tuple[pd.DataFrame, pd.Series]:
    """(current state, ids deleted at the source).

    Incremental: previous rows minus every extracted id (changed or now rejected) plus the
    changed rows; deletions cannot be seen. Full snapshot: the changed rows are the whole
    state, and ids of the previous state missing from the extract were deleted at the source.
    """
    extracted_ids = extracted_ids.astype("string")
    if previous is None or previous.empty:
        return changed.reset_index(drop=True), pd.Series([], dtype="string", name=KEY)
    previous_ids = previous[KEY].astype("string")
    if incremental:
        kept = previous[~previous_ids.isin(extracted_ids)]
        frames = [f for f in (kept, changed) if not f.empty]
        current = pd.concat(frames, ignore_index=True) if frames else changed.iloc[0:0]
        return current, pd.Series([], dtype="string", name=KEY)
    deleted = previous_ids[~previous_ids.isin(extracted_ids)].rename(KEY).reset_index(drop=True)
    return changed.reset_index(drop=True), deleted


def deleted_xref_rows(previous_xref: pd.DataFrame | None, source_system: str, deleted: pd.Series,
                      run_id: str) -> pd.DataFrame:
    """The warehouse's xref rows of records deleted at the source, marked (never dropped)."""
    if previous_xref is None or previous_xref.empty or deleted.empty:
        return pd.DataFrame()
    rows = previous_xref[(previous_xref["source_system"] == source_system)
                         & previous_xref[KEY].astype("string").isin(deleted)].copy()
    rows["is_deleted"] = True
    rows["run_id"] = run_id
    return rows
