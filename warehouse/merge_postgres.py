"""Merging staged Arrow rows into a PostgreSQL warehouse table: COPY (CSV batches encoded
ahead on a helper thread) into staging or straight into the table, then INSERT … ON CONFLICT, or
scope DELETE + INSERT; big first loads build the primary key once, on rows sent in key order."""
from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from govdata.warehouse.connections import _Postgres
from govdata.warehouse.schema import VAULT_SCHEMA, arrow_schema, qualified, table_for
from govdata.warehouse.staging import StagedTable, _delete_record_scope

COPY_BATCH_ROWS = 200_000



def _hex_binary(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    for i, col in enumerate(batch.columns):
        if pa.types.is_binary(col.type):
            hexed = pa.array([None if v is None else "\\x" + v.hex() for v in col.to_pylist()], type=pa.string())
            batch = batch.set_column(i, batch.schema.field(i).name, hexed)
    return batch


def _csv_batches(arrow: pa.Table | StagedTable, order: pa.Array | None = None) -> Iterator[bytes]:
    """CSV for COPY: strings always quoted (so '' stays ''), NULL unquoted empty; bytea as \\x hex.
    Rows go in `order` (row indices) when given. A staged table is read one batch at a time.
    The next batch is read and encoded in a helper thread (pyarrow releases the GIL) while the
    caller sends the current one, so that work overlaps the server's COPY."""
    from concurrent.futures import ThreadPoolExecutor

    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    if isinstance(arrow, StagedTable):
        source = arrow.batches(COPY_BATCH_ROWS)
        arrow = None
    else:
        arrow = _hex_binary(arrow)
        source = iter(arrow.to_batches(max_chunksize=COPY_BATCH_ROWS) if order is None else
                      [order.slice(i, COPY_BATCH_ROWS) for i in range(0, len(order), COPY_BATCH_ROWS)])

    def encode() -> bytes | None:
        batch = next(source, None)
        if batch is None:
            return None
        batch = arrow.take(batch) if isinstance(batch, pa.Array) else _hex_binary(batch)
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, options)
        return buf.getvalue()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(encode)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(encode)
            yield chunk


def _pg_col_defs(table) -> str:
    from sqlalchemy.dialects import postgresql

    return ", ".join(f"{c.name} {c.type.compile(dialect=postgresql.dialect())}" for c in table.columns)


def _copy_into(db: _Postgres, target: str, col_list: str, arrow: pa.Table | StagedTable, order: pa.Array | None = None) -> None:
    with db.con.cursor().copy(f"COPY {target} ({col_list}) FROM STDIN (FORMAT csv)") as copy:
        for chunk in _csv_batches(arrow, order):
            copy.write(chunk)


def _merge_postgres(db: _Postgres, name: str, arrow: pa.Table | StagedTable, scope: pa.Table | None = None) -> None:
    table = table_for(name)
    target, (mode, keys), keep = qualified(table), table.info["merge"], table.info["keep"]
    cols = [c.name for c in table.columns]
    col_list = ", ".join(cols)
    if mode in ("all", "record"):
        if mode == "all":
            db.con.execute(f"DELETE FROM {target}")
        else:
            db.con.execute("CREATE TEMP TABLE _stg_scope (source_system text, source_record_id text) ON COMMIT DROP")
            _copy_into(db, "_stg_scope", "source_system, source_record_id", scope)
            db.con.execute("ANALYZE _stg_scope")
            _delete_record_scope(db, target, "_stg_scope")
            db.con.execute("DROP TABLE _stg_scope")
        _copy_into(db, target, col_list, arrow)
        return
    bulk = (mode == "key" and not keep and table.schema != VAULT_SCHEMA
            and _bulk_worthwhile(db, table, arrow.num_rows))
    order = None
    if bulk and not isinstance(arrow, StagedTable) and _pg_orders_keys_bytewise(db, table):
        # Rows sent in key order make the primary-key build that follows a presorted check
        # instead of a full sort (3-4x faster): only when the server orders the keys as Arrow does.
        order = _key_order(arrow, keys)
    if bulk and _pg_is_empty(db, target):
        # First load of a big table: COPY straight into it with the primary key dropped, then
        # build the key once (duplicate keys fail there; the transaction restores the key).
        _without_primary_key(db, table, lambda: _copy_into(db, target, col_list, arrow, order))
        return
    stg = f"_stg_{table.name}"
    # Column list from the schema, not LIKE: LIKE needs SELECT, which the loader lacks on the vault.
    db.con.execute(f"CREATE TEMP TABLE {stg} ({_pg_col_defs(table)}) ON COMMIT DROP")
    _copy_into(db, stg, col_list, arrow, order)
    if arrow.num_rows >= BULK_MIN_ROWS:
        db.con.execute(f"ANALYZE {stg}")  # temp tables have no statistics: hash joins need them
    # Duplicate keys within a load fail here without a pre-check: ON CONFLICT refuses to update
    # a row twice, and the vault's primary key refuses the second insert.
    if mode == "key" and table.schema == VAULT_SCHEMA:
        # ON CONFLICT … EXCLUDED needs SELECT on the ciphertext columns; the loader may read keys only.
        on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
        db.con.execute(f"DELETE FROM {target} USING {stg} s WHERE {on}")
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg}")
    elif bulk:
        _bulk_replace_postgres(db, table, stg, keys, col_list, arrow.num_rows)
    elif mode == "key":
        updates = [c for c in cols if c not in keys and c not in keep]
        action = ("DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)) if updates else "DO NOTHING"
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg} "
                       f"ON CONFLICT ({', '.join(keys)}) {action}")
    else:
        on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
        db.con.execute(f"DELETE FROM {target} USING (SELECT DISTINCT {', '.join(keys)} FROM {stg}) s WHERE {on}")
        db.con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg}")
    db.con.execute(f"DROP TABLE {stg}")


BULK_MIN_ROWS = 50_000
# Per load transaction (SET LOCAL): the commit need not wait for the WAL flush (a crash may lose
# the last load, never corrupt it: re-running the idempotent load repairs that), and joins /
# key builds sort in memory instead of spilling to disk.
PG_LOAD_SETTINGS = {"synchronous_commit": "off", "work_mem": "256MB", "maintenance_work_mem": "512MB"}


def _tune_postgres(db: _Postgres) -> None:
    for name, value in PG_LOAD_SETTINGS.items():
        db.con.execute(f"SET LOCAL {name} = '{value}'")


def _pg_is_empty(db: _Postgres, target: str) -> bool:
    return not db.con.execute(f"SELECT EXISTS (SELECT 1 FROM {target})").fetchone()[0]


def _bulk_worthwhile(db: _Postgres, table, n_rows: int) -> bool:
    """Big loads into a table we own (ALTER needs ownership) that is small by comparison: building
    the primary-key index once beats maintaining it row by row (3-4x faster)."""
    if n_rows < BULK_MIN_ROWS:
        return False
    row = db.con.execute("SELECT pg_has_role(current_user, c.relowner, 'USAGE'), c.reltuples "
                         "FROM pg_class c WHERE c.oid = %s::regclass", (qualified(table),)).fetchone()
    return bool(row and row[0] and row[1] < 2 * n_rows)


def _key_order(arrow: pa.Table, keys: Sequence[str]) -> pa.Array:
    """Row indices in key order (text in byte order). A leading text key (source_system: a few
    values) is sorted by its rank in its dictionary: integers first sort 2x faster than strings."""
    cols = []
    for i, key in enumerate(keys):
        col = arrow[key]
        if i < len(keys) - 1 and pa.types.is_string(col.type):
            encoded = pc.dictionary_encode(col).combine_chunks()
            col = pc.take(pc.rank(encoded.dictionary, sort_keys="ascending"), encoded.indices)
        cols.append(col)
    names = [f"k{i}" for i in range(len(cols))]
    return pc.sort_indices(pa.table(cols, names=names), sort_keys=[(n, "ascending") for n in names])


_BYTEWISE_COLLATIONS = ("C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic")


def _pg_orders_keys_bytewise(db: _Postgres, table) -> bool:
    """Whether the server sorts the key columns as Arrow does: numbers and dates, or text in a
    byte-order collation (C, POSIX, C.UTF-8 — code point order, which is UTF-8 byte order)."""
    keys = list(table.info["merge"][1])
    types = [arrow_schema(table).field(k).type for k in keys]
    if not all(pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_temporal(t) for t in types):
        return False
    rows = db.con.execute(
        "SELECT a.attcollation = 0 OR CASE WHEN a.attcollation = (SELECT oid FROM pg_collation "
        "WHERE collname = 'default' AND collnamespace = 'pg_catalog'::regnamespace) "
        "THEN coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' AND d.datcollate = ANY(%s) "
        "ELSE c.collname = ANY(%s) OR (c.collprovider = 'c' AND c.collcollate = ANY(%s)) END "
        "FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation "
        "JOIN pg_database d ON d.datname = current_database() "
        "WHERE a.attrelid = %s::regclass AND a.attname = ANY(%s)",
        (list(_BYTEWISE_COLLATIONS),) * 3 + (qualified(table), keys)).fetchall()
    return len(rows) == len(keys) and all(r[0] for r in rows)


def _without_primary_key(db: _Postgres, table, work) -> None:
    """Drop the primary key, run `work`, re-create the key — in the load's transaction, so a
    failure (duplicate keys included) restores everything."""
    target, pk = qualified(table), f"{table.name}_pkey"
    db.con.execute(f"ALTER TABLE {target} DROP CONSTRAINT {pk}")
    work()
    db.con.execute(f"ALTER TABLE {target} ADD CONSTRAINT {pk} PRIMARY KEY ({', '.join(table.info['merge'][1])})")


def _bulk_replace_postgres(db: _Postgres, table, stg: str, keys: tuple[str, ...], col_list: str,
                           n_rows: int) -> None:
    """Remove the rows being replaced (all of them by TRUNCATE when the load covers the whole
    table, else DELETE of the incoming keys), then INSERT with the primary key dropped."""
    target = qualified(table)
    # Staging keys are unique (the key build refuses duplicates), so a table no bigger than the
    # load whose every key is in it is replaced entirely.
    target_rows = db.con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    on = " AND ".join(f"{target}.{k} = s.{k}" for k in keys)
    # count(*), not EXISTS(…): a first-row plan would be a nested-loop anti join, O(n²).
    if target_rows <= n_rows and not db.con.execute(
            f"SELECT count(*) FROM {target} WHERE NOT EXISTS (SELECT 1 FROM {stg} s WHERE {on})").fetchone()[0]:
        db.con.execute(f"TRUNCATE {target}")
    else:
        db.con.execute(f"DELETE FROM {target} USING {stg} s WHERE {on}")
    _without_primary_key(db, table, lambda: db.con.execute(
        f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stg}"))


__all__ = ["BULK_MIN_ROWS", "COPY_BATCH_ROWS", "PG_LOAD_SETTINGS"]
