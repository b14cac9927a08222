"""Blocking partitions: records that can link land in the same partition, so a mapped
Airflow task can link one partition on its own."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _person_year(records: pd.DataFrame) -> pd.Series:
    """The record's own birth year; else the year in its ID number (also in a mistyped one,
    whose date part is usually intact)."""
    year = _birth_year(records.get("birth_date"), records.index)
    ids = records["id_number"].astype("string[pyarrow]") if "id_number" in records else \
        pd.Series(pd.NA, index=records.index, dtype="string[pyarrow]")   # sliced in Arrow
    # a few hundred distinct year strings: parse each once
    codes, uniques = pd.factorize(ids.str[6:10])
    parsed = pd.to_numeric(pd.Series(np.asarray(uniques, dtype=object)), errors="coerce")
    parsed = np.append(parsed.to_numpy(dtype=np.float64, na_value=np.nan), np.nan)
    from_id = pd.Series(parsed[codes], index=records.index)
    from_id = from_id.where((from_id >= 1880) & (from_id <= 2100))
    return year.fillna(from_id)


def _birth_year(birth: pd.Series | None, index: pd.Index) -> pd.Series:
    """pd.to_datetime(birth, errors="coerce").dt.year; Arrow dates (from parquet) are read in
    Arrow (pandas converts them one by one)."""
    if birth is None:
        return pd.Series(np.nan, index=index)
    dtype = birth.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_date(dtype.pyarrow_dtype):
        years = pc.year(pa.chunked_array(birth.array._pa_array))
        lo, hi = pc.min(years).as_py(), pc.max(years).as_py()
        if lo is None or (lo > 1677 and hi < 2262):   # inside pandas' datetime64[ns] range
            values = years.to_numpy().astype(np.float64) if years.null_count == 0 else \
                pc.cast(years, pa.float64()).fill_null(np.nan).to_numpy()
            return pd.Series(values, index=birth.index, dtype=np.float64)
    own = pd.to_datetime(birth, errors="coerce")
    return own.dt.year


def _enterprise_key(records: pd.DataFrame) -> pd.Series:
    """Organisation code, however the record carries it (inside the USCC, given, or inside
    the old tax number); else the normalised core name."""
    col = lambda c: (records[c].astype("string[pyarrow]") if c in records   # sliced in Arrow
                     else pd.Series(pd.NA, index=records.index, dtype="string[pyarrow]"))
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
