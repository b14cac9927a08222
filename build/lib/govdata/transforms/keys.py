"""The record key: source_system + SEP + source_record_id, one text per source record.

SEP is the ASCII unit separator, which canonical_keys removes from every record id, so two different
(source, id) pairs never join to the same key.
"""
from __future__ import annotations

import pandas as pd

KEYS = ["source_system", "source_record_id"]
SEP = "\x1f"


def record_keys(frame: pd.DataFrame, prefix: str = "", dtype=str) -> pd.Series:
    """The record key per row of a pandas frame; prefix picks e.g. the "left_" columns of a
    pair. dtype str turns a missing part into text; "string[pyarrow]" keeps it missing."""
    return (frame[f"{prefix}source_system"].astype(dtype) + SEP
            + frame[f"{prefix}source_record_id"].astype(dtype))


def join_keys(source, record_id):
    """The record key per element of two Arrow string arrays of the same type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(source, record_id, pa.scalar(SEP, source.type))


def arrow_record_keys(table, prefix: str = ""):
    """The record key per row of an Arrow table, as pa.string()."""
    import pyarrow as pa

    return join_keys(table[f"{prefix}source_system"].cast(pa.string()),
                     table[f"{prefix}source_record_id"].cast(pa.string()))
