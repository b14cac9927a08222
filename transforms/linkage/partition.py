"""Blocking partitions: records that can link land in the same partition, so a mapped
Airflow task can link one partition on its own. Computed in Arrow: link_plan partitions
millions of records and never needs them as pandas."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.memory import release_memory

from .common import sorted_unique


def text_column(table: pa.Table, column: str) -> pa.ChunkedArray:
    """A text column as Arrow large strings (a dictionary column decoded); an absent column is
    all NULL."""
    if column not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, pa.large_string())])
    values = table[column]
    return values if pa.types.is_large_string(values.type) else values.cast(pa.large_string())


def plain_text(table: pa.Table) -> pa.Table:
    """table with its dictionary columns decoded to large strings (for pandas and joins)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, text_column(table, field.name))
    return table


def value_codes(table: pa.Table, column: str, dtype=np.int64) -> np.ndarray:
    """Per row, a code of its value in column (equal values, equal codes; dtype, int32 holds any
    table's), -1 for NULL and for an absent column. A dictionary column gives its indices: no
    text is copied."""
    if column not in table.column_names:
        return np.full(table.num_rows, -1, dtype=dtype)
    values = table[column]
    if values.num_chunks == 0:
        return np.full(table.num_rows, -1, dtype=dtype)
    if pa.types.is_dictionary(values.type):
        # one dictionary for every chunk (each row group read brings its own): equal values, equal
        # indices; chunks that share one already (plan.unified_dictionaries) are not hashed again
        if not _one_dictionary(values):
            values = values.unify_dictionaries()
        indices = pa.chunked_array([chunk.indices for chunk in values.chunks], values.type.index_type)
    else:   # one hash table over every chunk: the chunks share the dictionary already
        indices = pc.dictionary_encode(values).combine_chunks().indices
    return pc.fill_null(indices, -1).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _one_dictionary(values: pa.ChunkedArray) -> bool:
    """Whether every chunk of a dictionary column refers to the same dictionary buffers."""
    first = [b.address if b is not None else None for b in values.chunk(0).dictionary.buffers()]
    return all([b.address if b is not None else None for b in chunk.dictionary.buffers()] == first
               for chunk in values.chunks[1:])


def key_codes(columns: tuple, codes_of) -> np.ndarray:
    """Per row, a code of its values in columns together (-1 where any is NULL): the columns'
    value codes combined, no joined text built. codes_of: column -> value_codes."""
    codes = np.array(codes_of(columns[0]), dtype=np.int64)   # a copy: combined in place below
    for column in columns[1:]:
        other = codes_of(column)
        width = int(other.max()) + 1 if len(other) else 1
        if len(codes) and int(codes.max()) >= np.iinfo(np.int64).max // max(width, 1):
            codes = np.where(codes >= 0, pd.factorize(codes)[0], -1)   # dense again before it overflows
        absent = (codes < 0) | (other < 0)
        codes *= width
        codes += other
        codes[absent] = -1
    return codes


def _per_unique(values: pa.ChunkedArray, fn) -> np.ndarray:
    """fn(distinct values as a pandas Series) → float per distinct value, spread back to every
    row (NaN for NULL). Years and hashes are computed once per distinct value."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    per_value = np.append(np.asarray(fn(pd.Series(encoded.dictionary.to_pylist(), dtype=object)),
                                     dtype=np.float64), np.nan)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return per_value[codes]


def _year_of_text(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _birth_year(table: pa.Table) -> np.ndarray:
    """The record's own birth year (NaN when absent or not a date)."""
    if "birth_date" not in table.column_names:
        return np.full(table.num_rows, np.nan)
    birth = table["birth_date"]
    if pa.types.is_date(birth.type) or pa.types.is_timestamp(birth.type):
        return pc.cast(pc.year(birth), pa.float64()).fill_null(np.nan).to_numpy()
    return _per_unique(birth.cast(pa.large_string()),
                       lambda v: pd.to_datetime(v, errors="coerce").dt.year)


# keys a record without any birth year shares with its other records (a service-hall applicant
# with a passport): it takes the year of the records it would meet in a block, its own name first
# (a family shares a phone and a home: the year of another member would split it from its records)
YEAR_DONORS = (("id_type", "doc_number"), ("name_pinyin", "phone"), ("name_pinyin", "address"), ("phone",),
               ("address",))
# keys an enterprise record without any code shares with coded records (the name rules), the
# narrowest first: a shop and operator name (李记便利店, 李伟) recurs from county to county, so a
# record takes the partition of its own county's namesake before that of one anywhere else
ENTERPRISE_DONORS = (("name_core", "legal_rep_name", "region_code"), ("legal_rep_name", "address"),
                     ("legal_rep_name", "region_code"), ("name_core", "legal_rep_name"))
# every column partition_numbers reads
PARTITION_COLUMNS = frozenset({"id_number", "birth_date", "uscc", "org_code", "tax_no", "name_core"}
                              .union(*YEAR_DONORS, *ENTERPRISE_DONORS))


def _borrowed(table: pa.Table, values: np.ndarray, donors: tuple) -> np.ndarray:
    """values with their gaps (NaN) filled from the records sharing the first donor key, then
    the next (the smallest such value: the same for every record of the key)."""
    values = values.copy()
    cached: dict[str, np.ndarray] = {}

    def codes_of(column: str) -> np.ndarray:   # a column shared by several donor keys is coded once
        if column not in cached:   # int32: a row count fits, half the memory of int64
            cached[column] = value_codes(table, column, np.int32)
            release_memory()   # the hash table that coded millions of texts, back to the OS
        return cached[column]

    for i, columns in enumerate(donors):
        for column in set(cached) - {c for later in donors[i:] for c in later}:
            del cached[column]   # no later key reads it
        missing = np.isnan(values)
        if not missing.any():
            break
        codes = key_codes(columns, codes_of)
        take = missing & (codes >= 0)
        if not take.any():
            continue
        # only the keys of records with a gap matter (a few of them): slots for those, not a
        # group for every key of millions of records
        wanted = pd.Index(sorted_unique(codes[take]))
        slot = wanted.get_indexer(codes)
        del codes
        given = (slot >= 0) & ~missing
        smallest = np.full(len(wanted), np.inf)
        np.minimum.at(smallest, slot[given], values[given])
        filled = smallest[slot[take]]
        values[take] = np.where(np.isinf(filled), np.nan, filled)
    return values


def _person_year(table: pa.Table) -> np.ndarray:
    """The record's own birth year; else the year in its ID number (also in a mistyped one,
    whose date part is usually intact); else the year of records sharing its document, phone or
    address, so a record without any date lands beside the records it can link with."""
    year = _birth_year(table)
    from_id = _per_unique(pc.utf8_slice_codeunits(text_column(table, "id_number"), 6, 10), _year_of_text)
    from_id[(from_id < 1880) | (from_id > 2100)] = np.nan
    year = np.where(np.isnan(year), from_id, year)
    del from_id
    release_memory()   # the ID slices' text
    return _borrowed(table, year, YEAR_DONORS)


def _enterprise_part(table: pa.Table, n_partitions: int) -> np.ndarray:
    """Partition by the organisation code, however the record carries it (inside the USCC,
    given, or inside the old tax number); a record without any code takes the partition of the
    coded records sharing its name + representative + region, representative + address,
    representative + region or name + representative (what the name rules link on); else its
    core name's."""
    crc = lambda keys: [zlib.crc32(str(k).encode()) % n_partitions for k in keys]  # noqa: E731
    org = pc.coalesce(pc.utf8_slice_codeunits(text_column(table, "uscc"), 8, 17), text_column(table, "org_code"),
                      pc.utf8_slice_codeunits(text_column(table, "tax_no"), 6, 15))
    part = _borrowed(table, _per_unique(org, crc), ENTERPRISE_DONORS)
    return np.where(np.isnan(part), _per_unique(text_column(table, "name_core"), crc), part)


def partition_numbers(table: pa.Table, n_partitions: int = 16) -> np.ndarray:
    """Partition number 0..n_partitions-1 per record (int64). Persons partition on birth year
    (every person blocking key contains the birth date or the ID, which embeds it);
    enterprises on the organisation code. Records with neither go to partition 0."""
    if n_partitions < 1:
        raise ValueError(f"partition_keys: n_partitions must be >= 1, got {n_partitions}")
    columns = set(table.column_names)
    if columns & {"uscc", "name_core"}:
        part = _enterprise_part(table, n_partitions)
    elif columns & {"id_number", "birth_date"}:
        part = _person_year(table) % n_partitions
    else:
        raise ValueError("partition_keys: records have neither person columns (id_number, "
                         "birth_date) nor enterprise columns (uscc, name_core)")
    return np.nan_to_num(part, nan=0.0).astype(np.int64)


def partition_keys(records: pd.DataFrame, n_partitions: int = 16) -> pd.Series:
    """partition_numbers for a DataFrame, as a Series on its index."""
    table = pa.Table.from_pandas(records, preserve_index=False)
    return pd.Series(partition_numbers(table, n_partitions), index=records.index, name="partition")
