"""Blocking partitions: records that can link land in the same partition, so a mapped
Airflow task can link one partition on its own."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd


def _person_year(records: pd.DataFrame) -> pd.Series:
    """The record's own birth year; else the year in its ID number (also in a mistyped one,
    whose date part is usually intact)."""
    own = pd.to_datetime(records.get("birth_date"), errors="coerce")
    year = own.dt.year if own is not None else pd.Series(np.nan, index=records.index)
    ids = records["id_number"].astype("string") if "id_number" in records else \
        pd.Series(pd.NA, index=records.index, dtype="string")
    from_id = pd.to_numeric(ids.str[6:10], errors="coerce")
    from_id = from_id.where((from_id >= 1880) & (from_id <= 2100))
    return year.fillna(from_id)


def _enterprise_key(records: pd.DataFrame) -> pd.Series:
    """Organisation code, however the record carries it (inside the USCC, given, or inside
    the old tax number); else the normalised core name."""
    col = lambda c: (records[c].astype("string") if c in records
                     else pd.Series(pd.NA, index=records.index, dtype="string"))
    org = col("uscc").str[8:17].fillna(col("org_code")).fillna(col("tax_no").str[6:15])
    return org.fillna(col("name_core"))


def partition_keys(records: pd.DataFrame, n_partitions: int = 16) -> pd.Series:
    """Partition number 0..n_partitions-1 per record (index kept). Persons partition on
    birth year (every person blocking key contains the birth date or the ID, which embeds
    it); enterprises on the organisation code. Records with neither go to partition 0."""
    if n_partitions < 1:
        raise ValueError(f"partition_keys: n_partitions must be >= 1, got {n_partitions}")
    if "uscc" in records.columns or "name_core" in records.columns:
        key = _enterprise_key(records)
        uniq = key.dropna().unique()
        lookup = {k: zlib.crc32(str(k).encode()) % n_partitions for k in uniq}
        part = key.map(lookup)
    elif "id_number" in records.columns or "birth_date" in records.columns:
        part = _person_year(records) % n_partitions
    else:
        raise ValueError("partition_keys: records have neither person columns (id_number, "
                         "birth_date) nor enterprise columns (uscc, name_core)")
    return part.fillna(0).astype("int64").rename("partition")
