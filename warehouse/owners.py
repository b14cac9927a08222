"""Who holds an identifier (identifier_owner) and which facts changed owner (fact_owner_change)."""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from govdata.transforms.privacy import _arrow_text, arrow_text, token_parameters, token_sql
from govdata.warehouse.connections import sql_text as _sql_text
from govdata.warehouse.rows import _table_columns, _text, identifier_token_array
from govdata.warehouse.schema import table_for

# --- who holds an identifier ---------------------------------------------------------------
# An identifier (citizen ID number, USCC) resolves to one master: the master holding a record
# that carries the identifier and agrees with what the identifier encodes (persons: birth date
# and sex; enterprises: region and organisation code) and with the name the identifier's holder
# goes by. The resolution is persisted (identifier_owner, keyed by the identifier's token) and
# kept while its owner still exists and still holds the identifier, unless another holder agrees
# strictly better; so it depends neither on record order nor on what a run relinked.
OWNER_REASONS = ("new_identifier", "owner_gone", "owner_lost_identifier", "better_holder", "no_holder")
_ENTITY = {"person": ("person_id", "id_number"), "enterprise": ("enterprise_id", "uscc")}


HOLDER_ATTRIBUTES = ("birth_date", "sex", "name", "name_pinyin", "region_code", "org_code")
# what identifier_holders reads of a person or enterprise record
HOLDER_COLUMNS = ["source_system", "source_record_id", "kind", "id_number", "uscc", *HOLDER_ATTRIBUTES]
ARROW_TEXT = "string[pyarrow]"   # text without a Python object per value: a fraction of the memory
OWNER_MEMORY = "1GB"     # DuckDB's share while owners are resolved (1M persons: ~3M records); beyond it, it spills
TOKEN_BATCH_ROWS = 500_000   # distinct identifiers tokenised at a time (Python strings only for a batch)


def _holder_records(frame: pd.DataFrame, identifier: str, attrs: tuple[str, ...]) -> pd.DataFrame | None:
    """A source's records carrying the identifier, in the columns the agreement reads: text as
    Arrow strings, birth dates as datetime64 (as pandas parses them)."""
    if identifier not in frame:
        return None
    columns = ["source_system", "source_record_id", identifier] + [c for c in attrs if c in frame]
    part = frame.loc[frame[identifier].notna(), columns]
    part = part.astype({c: ARROW_TEXT for c in columns if c != "birth_date"})   # no-op when read as Arrow
    if "birth_date" in part and not pd.api.types.is_datetime64_any_dtype(part["birth_date"]):
        part["birth_date"] = pd.to_datetime(part["birth_date"], errors="coerce")
    return part


def _part_sql(view: str, names: set[str], identifier: str, kind: str | None) -> str:
    """One source's records carrying the identifier: keys (k1, k2), identifier (i), what the
    encoded agreement compares (birth, sex, region, org) and the name, else the pinyin name (n)."""
    def text(c: str) -> str:
        return f'CAST("{c}" AS VARCHAR)' if c in names else "CAST(NULL AS VARCHAR)"

    birth = 'CAST("birth_date" AS DATE)' if "birth_date" in names else "CAST(NULL AS DATE)"
    where = f'"{identifier}" IS NOT NULL' + (f" AND kind = {_sql_text(kind)}" if kind and "kind" in names else "")
    return (f"SELECT {text('source_system')} AS k1, {text('source_record_id')} AS k2, {text(identifier)} AS i, "
            f"{birth} AS birth, {text('sex')} AS sex, {text('region_code')} AS region, {text('org_code')} AS org, "
            f"coalesce({text('name')}, {text('name_pinyin')}) AS n FROM {view} WHERE {where}")


# The encoded agreement (0-3: 2 × birth/region, 1 × sex/org code) of a record with its
# identifier, as identifier_holders documents it. Persons: to_numeric of the ID's birth digits
# equals the birth date as yyyymmdd; digit 17 odd = sex 1, even = 2.
ENCODED_SQL = {
    "person": "(2 * coalesce(year(birth) * 10000 + month(birth) * 100 + day(birth) = TRY_CAST("
              "CASE WHEN regexp_full_match(substr(i, 7, 8), '[+-]?[0-9]+') THEN substr(i, 7, 8) END AS BIGINT), false)"
              "::INTEGER + coalesce(sex = CASE WHEN substr(i, 17, 1) IN ('1', '3', '5', '7', '9') THEN '1' "
              "WHEN substr(i, 17, 1) IN ('0', '2', '4', '6', '8') THEN '2' END, false)::INTEGER)",
    "enterprise": "(2 * coalesce(region = substr(i, 3, 6), false)::INTEGER "
                  "+ coalesce(org = substr(i, 9, 9), false)::INTEGER)",
}


def _register_parts(con, std_frames, identifier: str) -> list[str]:
    """Each part as a DuckDB view's SQL: a lake file (facts.LakePart) scanned by DuckDB through
    the decrypting dataset, or a frame's records (pandas' date parsing) as Arrow."""
    from govdata.warehouse.facts import LakePart

    selects = []
    for n, part in enumerate(std_frames):   # a lazy iterable: one source at a time
        view = f"_part{n}"
        if isinstance(part, LakePart):
            if identifier not in part.columns:
                continue
            con.register(view, part.dataset())
            selects.append(_part_sql(view, set(part.columns), identifier, part.kind))
            continue
        recs = _holder_records(part, identifier, HOLDER_ATTRIBUTES)
        if recs is None or recs.empty:
            continue
        con.register(view, pa.Table.from_pandas(recs, preserve_index=False))
        selects.append(_part_sql(view, set(recs.columns), identifier, None))
    return selects


def _register_xref(con, xref: pd.DataFrame | list[str] | None, id_col: str) -> None:
    """_xref (k1, k2, m): the record → master cross-reference, a frame or the lake files of the
    link's merged xref (scanned by DuckDB through the decrypting dataset, never held whole)."""
    keys = ["source_system", "source_record_id"]
    if isinstance(xref, list):
        from govdata.lake import dataset

        con.register("_xref_in", dataset(xref))
    else:
        frame = (xref[keys + [id_col]] if xref is not None and len(xref) else
                 pd.DataFrame(columns=keys + [id_col])).astype(ARROW_TEXT)
        con.register("_xref_in", pa.Table.from_pandas(frame, preserve_index=False))
    con.execute(f'CREATE OR REPLACE VIEW _xref AS SELECT source_system AS k1, source_record_id AS k2, '
                f'"{id_col}" AS m FROM _xref_in')


def _build_holders(con, std_frames, entity: str, key: bytes) -> None:
    """Table `holders` (identifier_token, master_id, agreement, records): see identifier_holders.
    Reads _xref. The raw identifiers stay inside DuckDB but for one batch being tokenised."""
    identifier = _ENTITY[entity][1]
    selects = _register_parts(con, std_frames, identifier)
    con.execute("CREATE OR REPLACE TABLE holders (identifier_token VARCHAR, master_id VARCHAR, "
                "agreement BIGINT, records BIGINT)")
    if not selects:
        return
    # The parts are copied into DuckDB one at a time. One query over all of them (UNION ALL)
    # started every lake file's Arrow scan at once, each reading ahead: 1.6 GB of Arrow buffers
    # at 5M persons, outside DuckDB's memory limit.
    con.execute(f"CREATE OR REPLACE TABLE _parts AS {selects[0]}")
    for select in selects[1:]:
        con.execute(f"INSERT INTO _parts {select}")
    # every record carrying an identifier, with its master (pandas' merge: NULL keys match too)
    con.execute(f"CREATE OR REPLACE TABLE _recs AS SELECT x.m, r.i, {ENCODED_SQL[entity]} AS e, r.n "
                f"FROM _parts r JOIN _xref x ON r.k1 IS NOT DISTINCT FROM x.k1 "
                f"AND r.k2 IS NOT DISTINCT FROM x.k2")
    con.execute("DROP TABLE _parts")
    # The holder's name: the most frequent name among the identifier's records that agree best
    # with it (ties: the smallest name, in code point order).
    con.execute("CREATE OR REPLACE TABLE _best AS SELECT i, max(e) AS be FROM _recs GROUP BY i")
    # min over a struct orders by its fields in turn; an aggregate, unlike a window, spills
    con.execute("CREATE OR REPLACE TABLE _holder_name AS SELECT i, min({'c': -c, 'n': n}).n AS n FROM ("
                "SELECT r.i, r.n, count(*) AS c FROM _recs r JOIN _best b ON r.i = b.i AND r.e = b.be "
                "WHERE r.n IS NOT NULL GROUP BY r.i, r.n) GROUP BY i")
    con.execute("CREATE OR REPLACE TABLE _held AS SELECT r.i, r.m, "
                "max(2 * r.e + CASE WHEN r.n = h.n THEN 1 ELSE 0 END) AS agreement, count(*) AS records "
                "FROM _recs r LEFT JOIN _holder_name h ON r.i = h.i GROUP BY r.i, r.m")
    con.execute("DROP TABLE _recs; DROP TABLE _holder_name; DROP TABLE _best")
    # Tokenised in Python a batch at a time, not in DuckDB (privacy.token_sql): DuckDB's insert
    # of 5.5M tokens kept ~1.5 GB more resident than its memory limit, and the owners fetched
    # next took the load past 4 GB at 5M persons (4,174 against 3,186 MB).
    _insert_tokenised(con, "SELECT i, m, agreement, records FROM _held", "holders", key)
    con.execute("DROP TABLE _held")


def _insert_tokenised(con, select: str, table: str, key: bytes) -> None:
    """Inserts the rows of `select` into `table` with its first column (raw identifiers)
    replaced by their identifier_token, a batch at a time (Python strings only for a batch)."""
    reader = con.cursor().sql(select).to_arrow_reader(TOKEN_BATCH_ROWS)   # read while con inserts
    for batch in reader:
        columns = [identifier_token_array(batch.column(0), key), *batch.columns[1:]]
        con.register("_token_batch", pa.Table.from_arrays(columns, names=batch.schema.names))
        con.execute(f"INSERT INTO {table} SELECT * FROM _token_batch")
        con.unregister("_token_batch")


def _to_pandas(table: pa.Table, integers: tuple[str, ...] = ()) -> pd.DataFrame:
    """Text as Arrow strings; the named integer columns nullable (Int64)."""
    frame = table.to_pandas(types_mapper=lambda t: pd.StringDtype("pyarrow")
                            if pa.types.is_string(t) or pa.types.is_large_string(t) else None)
    for c in integers:
        frame[c] = frame[c].astype("Int64")
    return frame


def _fetch(con, sql: str, integers: tuple[str, ...] = ()) -> pd.DataFrame:
    return _to_pandas(con.sql(sql).to_arrow_table(), integers)


def identifier_holders(xref: pd.DataFrame | None, std_frames, entity: str, key: bytes) -> pd.DataFrame:
    """Every (identifier token, master) pair where the master holds a record carrying the
    identifier, with `agreement` (0-7: 4 × birth/region, 2 × sex/org code, 1 × name agree) — the
    best of the master's records carrying it — and `records` (how many). The name agrees when it
    is the holder's name: the most frequent name (else pinyin name) among the identifier's
    records that agree best on birth/sex (region/org code), ties the smallest. `std_frames`:
    frames, or facts.LakePart files DuckDB scans itself."""
    from govdata.evaluate import scratch_db

    with scratch_db(OWNER_MEMORY) as (con, _):
        _register_xref(con, xref, _ENTITY[entity][0])
        _build_holders(con, std_frames, entity, key)
        out = _fetch(con, "SELECT * FROM holders")
    out[["agreement", "records"]] = out[["agreement", "records"]].astype(np.int64)
    return out


# Who owns each identifier, from `holders`, `_claims` (t, m, run, pos: the previous owners,
# the first claim of a token counts) and `_live` (m: masters that exist). keep: the previous
# owner holds the identifier and agrees as well as the best holder (highest agreement, then
# most records, then the smallest master id). "First" and "best" are min() over a struct (it
# orders by its fields in turn) in a GROUP BY: a hash aggregate spills to disk beyond the memory
# limit, where a window (QUALIFY row_number()) ran out of memory on an incremental 1M run.
_RESOLVE_SQL = """
CREATE OR REPLACE TABLE _resolved AS
WITH prev AS (
    SELECT t, first_claim.m AS m, first_claim.run AS run FROM (
        SELECT t, min({'pos': pos, 'm': m, 'run': run}) AS first_claim FROM _claims
        WHERE t IS NOT NULL AND m IS NOT NULL GROUP BY t)),
best AS (
    SELECT t, -top.a AS a, top.m AS m FROM (
        SELECT identifier_token AS t, min({'a': -agreement, 'r': -records, 'm': master_id}) AS top
        FROM holders GROUP BY identifier_token)),
joined AS (
    SELECT coalesce(b.t, p.t) AS t, b.m AS best_m, b.a AS best_a, p.m AS prev_m, p.run AS prev_run,
           h.agreement AS prev_a, l.m IS NOT NULL AS prev_live, coalesce(h.agreement = b.a, false) AS keep
    FROM best b FULL OUTER JOIN prev p ON b.t = p.t
    LEFT JOIN holders h ON h.identifier_token = p.t AND h.master_id = p.m
    LEFT JOIN (SELECT DISTINCT m FROM _live) l ON l.m = p.m)
SELECT *, CASE WHEN prev_m IS NULL THEN 'new_identifier'
               WHEN keep THEN NULL
               WHEN best_m IS NULL THEN 'no_holder'
               WHEN NOT prev_live THEN 'owner_gone'
               WHEN prev_a IS NULL THEN 'owner_lost_identifier'
               ELSE 'better_holder' END AS reason
FROM joined
"""


def _resolve(con, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(owners, changes) of resolve_owners from the tables `holders`, `_claims`, `_live`."""
    con.execute(_RESOLVE_SQL)
    owners = _fetch(con, "SELECT t AS identifier_token, CASE WHEN keep THEN prev_m ELSE best_m END AS master_id, "
                         "CASE WHEN keep THEN prev_a ELSE best_a END AS agreement, "
                         "CASE WHEN keep AND prev_run IS NOT NULL THEN prev_run ELSE $run END AS assigned_run "
                         "FROM _resolved WHERE best_m IS NOT NULL ORDER BY t".replace("$run", _sql_text(run_id)),
                    integers=("agreement",))
    changes = _fetch(con, "SELECT t AS identifier_token, prev_m AS old_owner, "
                          "CASE WHEN keep THEN prev_m ELSE best_m END AS new_owner, reason "
                          "FROM _resolved WHERE reason IS NOT NULL ORDER BY t")
    con.execute("DROP TABLE _resolved")
    return owners, changes


def _register_claims(con, previous: pd.DataFrame | None) -> None:
    prev = previous if previous is not None else pd.DataFrame(columns=["identifier_token", "master_id"])
    con.register("_claims", pa.table({
        "t": pa.array(_text(prev, "identifier_token").astype(ARROW_TEXT), pa.string(), from_pandas=True),
        "m": pa.array(_text(prev, "master_id").astype(ARROW_TEXT), pa.string(), from_pandas=True),
        "run": pa.array(_text(prev, "assigned_run").astype(ARROW_TEXT), pa.string(), from_pandas=True),
        "pos": pa.array(np.arange(len(prev), dtype=np.int64))}))


def resolve_owners(holders: pd.DataFrame, previous: pd.DataFrame | None, live_masters: pd.Series,
                   run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(owners, changes). owners: identifier_token, master_id, agreement, assigned_run — one row
    per identifier someone holds. The previous owner stays while it exists, holds the identifier
    and agrees as well as the best holder; otherwise the best holder (highest agreement, then most
    records, then the smallest master id) takes over. changes: identifier_token, old_owner,
    new_owner, reason (OWNER_REASONS) for every identifier whose owner is new or moved. Both
    ordered by token. In DuckDB (holders: one row per identifier and master)."""
    from govdata.evaluate import scratch_db

    with scratch_db(OWNER_MEMORY) as (con, _):
        con.register("holders", pa.table({
            "identifier_token": pa.array(_text(holders, "identifier_token").astype(ARROW_TEXT), pa.string()),
            "master_id": pa.array(_text(holders, "master_id").astype(ARROW_TEXT), pa.string()),
            "agreement": pa.array(holders["agreement"].to_numpy(np.int64)),
            "records": pa.array(holders["records"].to_numpy(np.int64))}))
        _register_claims(con, previous)
        con.register("_live", pa.table({"m": pa.array(pd.Series(live_masters, dtype=object).astype(ARROW_TEXT),
                                                      pa.string())}))
        return _resolve(con, run_id)


# fact table -> (token column, person owner column, enterprise owner column)
FACT_OWNERS = {"fact_application": ("applicant_token", "applicant_person_id", "applicant_enterprise_id"),
               "fact_certificate": ("holder_token", "holder_person_id", "holder_enterprise_id")}
# what a rerun reads of the warehouse to keep facts with their owners (stages.previous_owner_state)
PREVIOUS_COLUMNS = {"identifier_owner": ["entity", "identifier_token", "master_id", "assigned_run"],
                    **{t: ["source_system", "source_record_id", *cols] for t, cols in FACT_OWNERS.items()}}
_LAST = 2 ** 62   # the position of a claim the facts make: after every stored one


def _register_previous(con, view: str, value, table: str) -> None:
    """View `view` (PREVIOUS_COLUMNS of `table`, and pos: the row's position) over the previous
    state of `table`: its Parquet file (a path: the load's, never in memory), a frame, or None
    (no rows)."""
    columns = PREVIOUS_COLUMNS[table]
    listed = ", ".join(f'"{c}"' for c in columns)
    if isinstance(value, str | os.PathLike):
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {listed}, file_row_number AS pos "
                    f"FROM read_parquet({_sql_text(str(value))}, file_row_number = true)")
        return
    frame = (value if value is not None else pd.DataFrame()).reindex(columns=columns).astype(ARROW_TEXT)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    con.register(f"{view}_in", arrow.append_column("pos", pa.array(np.arange(len(frame), dtype=np.int64))))
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {view}_in")


def _register_previous_claims(con, previous: dict, entity: str) -> None:
    """View `_claims` (t, m, run, pos) of resolve_owners: the warehouse's identifier_owner rows of
    the entity, then for identifiers it lacks, the owner the previous facts carry most often
    (ties: the smallest master id) — the claims of a warehouse loaded before identifier_owner
    existed. In DuckDB over the previous state's files: at 5M persons 5.7M stored owners and
    7.5M facts, held in pandas, took a rerun's load past 7 GB."""
    _register_previous(con, "_prev_identifier_owner", previous.get("identifier_owner"), "identifier_owner")
    con.execute("CREATE OR REPLACE VIEW _stored AS SELECT identifier_token AS t, master_id AS m, "
                f"assigned_run AS run, pos FROM _prev_identifier_owner WHERE entity = {_sql_text(entity)}")
    facts = []
    for table, (tok, person, enterprise) in FACT_OWNERS.items():
        _register_previous(con, f"_prev_{table}", previous.get(table), table)
        facts.append(f'SELECT "{tok}" AS t, "{person if entity == "person" else enterprise}" AS m FROM _prev_{table}')
    con.execute(f"""
        CREATE OR REPLACE VIEW _claims AS
        SELECT t, m, run, pos FROM _stored
        UNION ALL
        SELECT t, min({{'n': -n, 'm': m}}).m AS m, CAST(NULL AS VARCHAR) AS run, {_LAST} AS pos FROM (
            SELECT t, m, count(*) AS n FROM ({" UNION ALL ".join(facts)}) f
            WHERE t IS NOT NULL AND m IS NOT NULL AND NOT EXISTS (SELECT 1 FROM _stored s WHERE s.t = f.t)
            GROUP BY t, m)
        GROUP BY t""")


def identifier_owners(xref: pd.DataFrame | list[str] | None, std_frames, entity: str, key: bytes,
                      previous: dict, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(identifier_owner rows of the entity, changes): see resolve_owners. The previous claims
    are the warehouse's identifier_owner rows, and for identifiers it lacks, the owners the
    previous facts carry (`previous`: table -> its Parquet file or a frame). Holders, claims and
    resolution in one scratch DuckDB (bounded memory: it spills), the identifiers' text and the
    previous state never in pandas."""
    from govdata.evaluate import scratch_db

    with scratch_db(OWNER_MEMORY) as (con, _):
        _register_xref(con, xref, _ENTITY[entity][0])
        _build_holders(con, std_frames, entity, key)
        _register_previous_claims(con, previous, entity)
        # which masters exist matters for previous owners only
        has_claims = any(previous.get(t) is not None for t in PREVIOUS_COLUMNS)
        con.execute("CREATE OR REPLACE VIEW _live AS SELECT m FROM _xref WHERE m IS NOT NULL"
                    + ("" if has_claims else " LIMIT 0"))
        owners, changes = _resolve(con, run_id)
    return owners.assign(entity=entity), changes


def owner_lookup(con, owners: pd.DataFrame, name: str, key: bytes
                 ) -> Callable[[pd.Series], tuple[pd.Series, pd.Series]]:
    """identifiers → (their tokens, their master ids: NULL for an identifier no one owns), both
    Arrow-backed `string`. The owners are registered in DuckDB `con` under `name` once, as Arrow
    (a pandas index of the tokens is Python text and a hash table: several times the memory);
    each call is one query, which tokenises the identifiers (privacy.token_sql) and joins them to
    the owners."""
    con.register(name, pa.table({"t": pa.array(owners["identifier_token"], pa.string(), from_pandas=True),
                                 "m": pa.array(owners["master_id"], pa.string(), from_pandas=True)}))
    parameters = token_parameters(key)

    def lookup(identifiers: pd.Series) -> tuple[pd.Series, pd.Series]:
        con.register("_identifiers", pa.table({"pos": np.arange(len(identifiers), dtype=np.int64),
                                               "i": pa.array(identifiers, pa.string(), from_pandas=True)}))
        # con.sql, not con.execute: Arrow from a DB-API result lost the ORDER BY on 300k rows (DuckDB 2.0)
        found = con.sql(f"SELECT k.t, o.m FROM (SELECT pos, {token_sql('i')} AS t FROM _identifiers) k "
                        f"LEFT JOIN {name} o ON o.t = k.t ORDER BY pos", params=parameters).to_arrow_table()
        con.unregister("_identifiers")
        return tuple(arrow_text(found.column(c), identifiers.index) for c in ("t", "m"))   # no Python str

    return lookup


def fact_owner_inputs(table: str, rows: pd.DataFrame, role_tokens: dict[str, pd.Series],
                      masked: dict[str, pd.Series]) -> pa.Table:
    """What fact_owner_changes compares of a chunk of this run's facts: keys, token and owners,
    and each role's identifier token and mask. All text, the same schema for every chunk."""
    tok, person, enterprise = FACT_OWNERS[table]
    columns = {c: _text(rows, c) for c in ("source_system", "source_record_id", tok, person, enterprise)}
    for role in ("person", "enterprise"):
        columns[f"_{role}_token"] = role_tokens[role]
        columns[f"_{role}_masked"] = masked[role]
    return pa.table({c: _arrow_text(pd.Series(v)) for c, v in columns.items()})


def fact_owner_changes(con, table: str, new, previous, changes: dict[str, pd.DataFrame], run_id: str
                       ) -> pd.DataFrame:
    """fact_owner_change rows: facts loaded before whose person or enterprise is another now.
    reason: the identifier's reason when the fact's identifier kept its token and its owner moved
    (resolve_owners), else `identifier_changed` (the fact's own input changed). `new`: this run's
    facts as fact_owner_inputs gives them (Arrow, or the Parquet file they were written to);
    `previous`: the facts loaded before (a Parquet file or a frame). One join in DuckDB `con`:
    it spills, where a pandas merge of each chunk against every previous fact held both."""
    cols = [c.name for c in table_for("fact_owner_change").columns]
    if previous is None or (isinstance(previous, pd.DataFrame) and not len(previous)):
        return pd.DataFrame(columns=cols)
    tok, person, enterprise = FACT_OWNERS[table]
    _register_previous(con, "_old_facts", previous, table)
    if isinstance(new, pa.Table):
        con.register("_new_facts_in", new)
    source = "_new_facts_in" if isinstance(new, pa.Table) else f"read_parquet({_sql_text(str(new))})"
    con.execute(f"CREATE OR REPLACE VIEW _new_facts AS SELECT * FROM {source}")
    parts = []
    for role, col in (("person", person), ("enterprise", enterprise)):
        ch = changes.get(role)
        ch = (ch if ch is not None else pd.DataFrame()).reindex(columns=["identifier_token", "old_owner", "reason"])
        con.register(f"_changes_{role}", pa.Table.from_pandas(ch.astype(ARROW_TEXT), preserve_index=False))
        parts.append(f"""
            SELECT {_sql_text(run_id)} AS run_id, {_sql_text(table)} AS fact_table, m.source_system,
                   m.source_record_id, '{role}' AS role, m._{role}_token AS identifier_token,
                   m._{role}_masked AS identifier_masked, m."_old_{col}" AS old_owner, m."{col}" AS new_owner,
                   CASE WHEN coalesce(m."{tok}" = m."_old_{tok}", false) AND c.reason IS NOT NULL THEN c.reason
                        ELSE 'identifier_changed' END AS reason, {0 if role == "person" else 1} AS _role_order
            FROM _moved m LEFT JOIN _changes_{role} c
              ON c.identifier_token = m._{role}_token AND c.old_owner IS NOT DISTINCT FROM m."_old_{col}"
            WHERE m."{col}" IS DISTINCT FROM m."_old_{col}"
            """)
    # the facts held before whose owner in either role differs, then each role's rows of them
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _moved AS
        SELECT n.*, o."{tok}" AS "_old_{tok}", o."{person}" AS "_old_{person}", o."{enterprise}" AS "_old_{enterprise}"
        FROM _new_facts n JOIN _old_facts o
          ON n.source_system = o.source_system AND n.source_record_id = o.source_record_id
        WHERE n."{person}" IS DISTINCT FROM o."{person}" OR n."{enterprise}" IS DISTINCT FROM o."{enterprise}"
        """)
    out = _fetch(con, f"SELECT * EXCLUDE (_role_order) FROM ({' UNION ALL '.join(parts)}) "
                      "ORDER BY _role_order, source_system, source_record_id")
    con.execute("DROP TABLE _moved; DROP VIEW _new_facts; DROP VIEW _old_facts")
    if not len(out):
        return pd.DataFrame(columns=cols)
    return _table_columns(out, "fact_owner_change")


__all__ = ["FACT_OWNERS", "OWNER_REASONS", "PREVIOUS_COLUMNS", "fact_owner_changes", "fact_owner_inputs", "identifier_holders", "identifier_owners",
           "owner_lookup", "resolve_owners"]
