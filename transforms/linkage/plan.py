"""Pure linkage planning: record keys, blocking partitions, key joins and splits by partition."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from govdata.transforms.keys import KEYS, arrow_record_keys, record_keys

if TYPE_CHECKING:   # names used in annotations only
    import numpy as np
    import pyarrow as pa


def plan_columns(names: list[str]) -> list[str]:
    """Of a source's columns, those link_plan computes on over every record: the keys and what
    the partitions, the shared-value counts and an incremental scope read (persons' and
    enterprises' alike, so the kind test in partition_numbers sees what the whole record shows).
    The other columns are only copied into their record's partition, a batch at a time."""
    from govdata.transforms.linkage.incremental import SCOPE_COLUMNS
    from govdata.transforms.linkage.partition import ENTERPRISE_DONORS, YEAR_DONORS
    from govdata.transforms.linkage.shared_values import COLUMNS

    wanted = set(KEYS) | set(COLUMNS) | {"uscc", "name_core", "id_number", "birth_date"}
    wanted |= {c for cols in SCOPE_COLUMNS.values() for c in cols}
    wanted |= {c for donors in (YEAR_DONORS, ENTERPRISE_DONORS) for key in donors for c in key}
    return [c for c in names if c in wanted]


# Of the plan's text columns, those kept as text: identifiers are near unique per record, so a
# dictionary of them (one per row group) costs more than their text.
PLAN_PLAIN = frozenset({"source_record_id", "id_number", "uscc", "org_code", "tax_no", "reg_no"})
# dictionary columns whose values repeat across the sources rather than within a row group (a
# person's phone and home in every department's records): one dictionary for the whole table
# (unified_dictionaries) holds each value once. At 5M persons, 14.2M records carry 4.0M phones and
# 0.5M addresses: 770 MB of text became 1.0 GB less resident memory.
PLAN_UNIFIED = ("phone", "address")


def plan_dictionary(schema: "pa.Schema", columns: list[str]) -> list[str]:
    """Of columns, the text ones link_plan reads as dictionaries: sources, statuses, codes,
    names and pinyin repeat across millions of records, and their indices take 4 bytes a row
    where their text took 8 or more (no text is copied to compare or group them)."""
    import pyarrow as pa

    text = {f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
    return [c for c in columns if c in text and c not in PLAN_PLAIN]


def concat_conformed(tables: list) -> "pa.Table":
    """The tables as one, in the schema they unify to (as pa.concat_tables with permissive
    promotion), each conformed in turn and its cast columns' old buffers released before the next:
    concatenating tables of other types cast all of them at once (at 5M persons, 0.7 GB above
    the 2.8 GB read)."""
    import pyarrow as pa

    from govdata.memory import release_memory

    schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    for i in range(len(tables)):
        if not tables[i].schema.equals(schema):
            tables[i] = conform(tables[i], schema)
            release_memory()
    return pa.concat_tables(tables)


def unified_dictionaries(table: "pa.Table", columns=PLAN_UNIFIED) -> "pa.Table":
    """table with each of columns (dictionary columns) under one dictionary for all its chunks,
    a column at a time, each one's per-chunk dictionaries handed back to the OS before the next."""
    import pyarrow as pa

    from govdata.memory import release_memory

    for column in columns:
        if column in table.column_names and pa.types.is_dictionary(table.schema.field(column).type):
            i = table.column_names.index(column)
            table = table.set_column(i, column, table[column].unify_dictionaries())
            release_memory()
    return table


def conform(table: "pa.Table", schema: "pa.Schema") -> "pa.Table":
    """table in schema's columns and types (a column it lacks is all null), as
    pa.concat_tables(promote_options="permissive") would have made it."""
    import pyarrow as pa

    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def assign_partitions(records: "pd.DataFrame | pa.Table", n: int, decisions: pd.DataFrame | None):
    """Blocking partition per record (int64 numpy); a steward's match pulls both records into
    the same partition."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from govdata.transforms.linkage.partition import partition_numbers

    table = records if isinstance(records, pa.Table) else pa.Table.from_pandas(records, preserve_index=False)
    parts = partition_numbers(table, n)
    if decisions is not None and len(decisions) and n > 1:
        matches = decisions[decisions["decision"] == "match"]
        keys = arrow_record_keys(table)
        left = pc.index_in(pa.array(record_keys(matches, "left_").tolist(), pa.string()), value_set=keys)
        right = pc.index_in(pa.array(record_keys(matches, "right_").tolist(), pa.string()), value_set=keys)
        both = pc.and_(pc.is_valid(left), pc.is_valid(right))
        parts[right.filter(both).to_numpy()] = parts[left.filter(both).to_numpy()]
    return parts


def key_positions(left: "pa.Table", right: "pa.Table") -> "np.ndarray":
    """For each row of left, the row of right with the same (source_system, source_record_id),
    -1 where none. The keys' 64-bit hashes (DuckDB's, streamed) looked up in a hash table of
    right's: integer arrays of the rows' length, where a hash join on the key text held the
    strings twice (a rerun at 5M persons joins 14M records to 14M previous xref rows: 1.6 GB
    more against 0.5). Every hit is checked on the keys themselves; a hash two of right's keys
    share (or a key right holds twice) falls back to the exact join."""
    import numpy as np
    import pandas as pd

    index = pd.Index(key_hashes(right))
    if not index.is_unique:
        return _joined_key_positions(left, right)
    out = np.asarray(index.get_indexer(key_hashes(left)), dtype=np.int64)
    del index
    rows = np.flatnonzero(out >= 0)
    if not _same_keys(left, right, rows, out[rows]):
        return _joined_key_positions(left, right)
    return out


def key_hashes(table: "pa.Table") -> "np.ndarray":
    """Per row, DuckDB's 64-bit hash of (source_system, source_record_id) as text (a dictionary
    column hashes as its values), in row order; NULL keys hash too (they never match a record's
    key: the checked hit fails)."""
    import numpy as np

    return np.asarray(_duckdb_hashes(table, KEYS, "hash(source_system::VARCHAR, source_record_id::VARCHAR)"),
                      dtype=np.uint64)


HASH_BATCH_ROWS = 1_000_000   # hashes DuckDB hands over at a time (_duckdb_hashes)


def _duckdb_hashes(table: "pa.Table", columns: list[str], expression: str) -> "np.ndarray":
    """`expression` over table's columns, one value per row in row order (DuckDB keeps insertion
    order), streamed: no copy of the columns is made, and the result arrives a batch at a time
    into one array (fetched whole, DuckDB's copy of 14M hashes sat beside it at the plan's peak)."""
    import duckdb
    import numpy as np

    out, at = None, 0
    with duckdb.connect() as con:
        con.register("v", table.select(columns))
        for batch in con.sql(f"SELECT {expression} AS h FROM v").to_arrow_reader(HASH_BATCH_ROWS):
            values = batch.column(0).to_numpy(zero_copy_only=False)
            if out is None:
                out = np.empty(table.num_rows, dtype=values.dtype)
            out[at:at + len(values)] = values
            at += len(values)
    return out if out is not None else np.empty(0, dtype=np.int64)


# Rows whose keys are compared at once when key_positions checks its hits.
KEY_CHECK_ROWS = 1_000_000


def _same_keys(left: "pa.Table", right: "pa.Table", left_rows, right_rows) -> bool:
    """Whether left's keys at left_rows equal right's at right_rows, a slice at a time."""
    import pyarrow.compute as pc

    for start in range(0, len(left_rows), KEY_CHECK_ROWS):
        stop = start + KEY_CHECK_ROWS
        for key in KEYS:
            ours = left[key].take(left_rows[start:stop]).cast("large_string")
            theirs = right[key].take(right_rows[start:stop]).cast("large_string")
            if not pc.all(pc.fill_null(pc.equal(ours, theirs), False)).as_py():
                return False
    return True


def _joined_key_positions(left: "pa.Table", right: "pa.Table") -> "np.ndarray":
    """key_positions by a hash join in DuckDB on the key text itself."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    from govdata.transforms.linkage.partition import plain_text

    lhs = plain_text(left.select(KEYS)).append_column("l_row", pa.array(np.arange(left.num_rows), pa.int64()))
    rhs = plain_text(right.select(KEYS)).append_column("r_row", pa.array(np.arange(right.num_rows), pa.int64()))
    with duckdb.connect() as con:
        con.register("lhs", lhs)
        con.register("rhs", rhs)
        rel = con.sql("SELECT l_row, r_row FROM lhs JOIN rhs USING (source_system, source_record_id)")
        found = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    out = np.full(left.num_rows, -1, dtype=np.int64)
    out[found["l_row"].to_numpy()] = found["r_row"].to_numpy()
    return out


def value_hashes(table: "pa.Table", column: str) -> "np.ndarray":
    """Per row, a 63-bit hash of its value in column, -1 for NULL: equal values, equal hashes;
    two different values share one with a chance of about n²/2⁶⁴. For groupings where a false
    match can only widen a set (the incremental scope: a few more records relinked). DuckDB's
    hash, streamed in row order: no dictionary of millions of values is built."""
    return _duckdb_hashes(table, [column], f'CASE WHEN "{column}" IS NULL THEN -1 ELSE (hash("{column}") >> 1)::BIGINT END')


def previous_partitions(previous: "pa.Table", records: "pa.Table", parts) -> "np.ndarray":
    """The partition of each previous xref row's record in this run (-1: not linked this run)."""
    import numpy as np

    at = key_positions(previous, records)
    out = np.full(len(at), -1, dtype=np.int64)
    out[at >= 0] = np.asarray(parts)[at[at >= 0]]   # an incremental scope may hold no record
    return out


def _split_by_partition(table: "pa.Table", parts) -> dict:
    """partition → its rows, in their original order: one stable sort and a take, then
    zero-copy slices (filtering once per partition rescans every row)."""
    import numpy as np

    order = np.argsort(parts, kind="stable")
    ordered = table.take(order)
    return {p: ordered.slice(a, b - a) for p, a, b in _runs(parts[order])}


def rows_by_partition(part_of) -> dict:
    """partition → the positions of its rows, in their original order (-1: in none): views of
    one stable sort, no row copied."""
    import numpy as np

    rows = np.flatnonzero(part_of >= 0)
    order = rows[np.argsort(part_of[rows], kind="stable")]
    return {p: order[a:b] for p, a, b in _runs(part_of[order])}


def _runs(sorted_parts) -> list[tuple[int, int, int]]:
    """(partition, start, end) of each run of equal numbers in sorted partition numbers: where
    the number changes (np.unique would sort the sorted numbers again)."""
    import numpy as np

    if not len(sorted_parts):
        return []
    starts = np.flatnonzero(np.diff(sorted_parts, prepend=sorted_parts[0] - 1))
    ends = np.append(starts[1:], len(sorted_parts))
    return [(int(sorted_parts[a]), int(a), int(b)) for a, b in zip(starts, ends)]
