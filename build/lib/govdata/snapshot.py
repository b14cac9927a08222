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
        current = pd.concat(_same_dtypes(frames), ignore_index=True) if frames else changed.iloc[0:0]
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


def _row_hashes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One 64-bit hash per row over the given columns (values compared as text)."""
    text = frame[columns].astype("string").fillna("\x00")
    return pd.Series(pd.util.hash_pandas_object(text, index=False).to_numpy(),
                     index=frame[KEY].astype("string").to_numpy())


def changed_ids(previous: pd.DataFrame | None, changed: pd.DataFrame) -> pd.Series:
    """Ids of extracted rows that are new or whose standardised values differ from the
    previous state: what incremental linking has to look at again. A full-snapshot extract
    brings every row; only the ones that really changed count."""
    ids = changed[KEY].astype("string").reset_index(drop=True).rename(KEY)
    if previous is None or previous.empty:
        return ids
    columns = sorted(set(previous.columns) & set(changed.columns))
    before = _row_hashes(previous, columns)
    after = _row_hashes(changed, columns)
    same = after.index.isin(before.index)
    same[same] = before.reindex(after.index[same]).to_numpy() == after.to_numpy()[same]
    return ids[~same].reset_index(drop=True)


def _same_dtypes(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """A column that is all NULL in one frame takes the dtype the other frames give it, so that
    concatenation keeps the real type (pandas deprecates guessing it from all-NA columns)."""
    if len(frames) < 2:
        return frames
    typed = {}
    for frame in frames:
        for col in frame.columns:
            if col not in typed and frame[col].notna().any():
                typed[col] = frame[col].dtype
    out = []
    for frame in frames:
        casts = {c: t for c, t in typed.items() if c in frame and frame[c].isna().all() and frame[c].dtype != t}
        out.append(frame.astype(casts) if casts else frame)
    return out
