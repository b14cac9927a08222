"""Linkage quality against a known truth: pairwise precision / recall / F1 counted from
cluster sizes (sum of C(n,2) over the contingency table — no pair enumeration), and the
errors broken down by likely cause, derived from the standardised records.

Out of core: the joins and group-bys run in a scratch DuckDB database capped at
MEMORY_LIMIT (beyond it DuckDB spills to the scratch folder), and the standardised records
stream through the cause rules one batch at a time, so memory does not grow with the run."""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from govdata.evaluate_causes import TEXT, _col, birth_dates, record_causes
from govdata.warehouse.connections import sql_text as _sql_text

KEY = ["source_system", "source_record_id"]
MEMORY_LIMIT = "768MB"    # DuckDB's share (1M persons: 1.4 GB peak in all, 5M: 2.0 GB); beyond it DuckDB spills
BATCH_ROWS = 100_000      # standardised records put through the cause rules at a time
READ_BUFFER = 1 << 20    # bytes read at a time from a std file's column chunks (a row group can be a whole source)

__all__ = ["KINDS", "evaluate", "evaluate_run", "record_causes"]


@contextlib.contextmanager
def scratch_db(memory_limit: str = MEMORY_LIMIT) -> Iterator[tuple]:
    """(connection, folder): a throwaway in-memory DuckDB database whose tables, joins and
    group-bys spill beyond memory_limit to a private temporary folder (under TMPDIR; removed
    afterwards), where the records' Parquet file goes too. In memory rather than a database
    file: a file compresses every table written, twice the CPU of the joins themselves."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="govdata-evaluate-") as tmp:
        con = duckdb.connect(":memory:", config={
            "memory_limit": memory_limit, "temp_directory": f"{tmp}/spill",
            "preserve_insertion_order": False})   # no row order is relied on: lets DuckDB stream
        con.execute("SET enable_progress_bar = false")   # progress goes through `progress`, not stdout
        try:
            yield con, tmp
        finally:
            con.close()


def _c2(n: str) -> str:
    """SQL for C(n, 2), the pairs among n records."""
    return f"(({n}) * (({n}) - 1) // 2)"


def _cause_rows(records: pd.DataFrame) -> pa.Table:
    """What the scoring needs of standardised records: the key, the record's cause, and the
    name and birth date that tell namesakes and twins apart (birth dates read as the pairing
    rule compares them: parsed, unparseable ones null)."""
    return pa.table({
        "source_system": pa.array(records["source_system"].astype(TEXT), pa.string()),
        "source_record_id": pa.array(records["source_record_id"].astype(TEXT), pa.string()),
        "cause": pa.array(record_causes(records), pa.string()),
        "name": pa.array(_col(records, "name").astype(TEXT), pa.string()),
        "birth": pa.array(birth_dates(records), pa.timestamp("ns"))})


REC_SCHEMA = pa.schema([("source_system", pa.string()), ("source_record_id", pa.string()), ("cause", pa.string()),
                        ("name", pa.string()), ("birth", pa.timestamp("ns"))])


def _records_view(con, path: str, batches: Iterable[pa.Table]) -> int:
    """View rec over a Parquet file of every batch's _cause_rows, written as the batches come:
    neither Python nor DuckDB holds the records (the joins read the few columns they need).
    Returns the records written."""
    import pyarrow.parquet as pq

    n = 0
    with pq.ParquetWriter(path, REC_SCHEMA) as writer:
        for rows in batches:
            writer.write_table(rows)
            n += rows.num_rows
    con.execute(f"CREATE OR REPLACE VIEW rec AS SELECT * FROM read_parquet({_sql_text(path)})")
    return n


# --- scoring in SQL ----------------------------------------------------------------------------
def _scores(tp: int, predicted: int, actual: int) -> dict:
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _join(con, xref: str, truth: str, truth_cause: bool, records: bool) -> None:
    """Table joined: one row per record both xref and truth know — key, source, predicted id
    (pid), true id (tid), cause (the truth's label, else the one read from the record). Two
    joins one after the other: as one three-way join DuckDB ran out of a 512 MB limit at 1M
    persons, as two it did not, at 5M either. Names and birth dates are looked up afterwards
    for the few records of merged or split clusters."""
    cause = "t.cause" if truth_cause else "NULL"
    con.execute(f"""CREATE OR REPLACE TABLE joined AS
        SELECT x.source_system, x.source_record_id, x.pid, t.tid, {cause}::VARCHAR AS cause
        FROM {xref} x JOIN {truth} t ON t.source_system = x.source_system AND t.source_record_id = x.source_record_id""")
    if records:
        con.execute("""CREATE OR REPLACE TABLE joined AS
            SELECT j.source_system, j.source_record_id, j.pid, j.tid, coalesce(j.cause, r.cause) AS cause FROM joined j
            LEFT JOIN (SELECT source_system, source_record_id, cause FROM rec WHERE cause IS NOT NULL) r
                   ON r.source_system = j.source_system AND r.source_record_id = j.source_record_id""")


def _distinct(con, sql: str) -> list[str]:
    return [v for (v,) in con.execute(sql).fetchall() if v is not None]


def _cells(con, groups: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Table cells: the contingency table (pid × tid → n records) and, per candidate value of
    each group column, the records of that value in the cell (column v<i>): one pass over the
    join for every group and value. Returns (group, value) of each v<i>."""
    counted = [(group, value) for group, values in groups.items() for value in values]
    counts = "".join(f", count(*) FILTER (WHERE {group} = ?) AS v{i}" for i, (group, _) in enumerate(counted))
    con.execute(f"CREATE OR REPLACE TABLE cells AS SELECT pid, tid, count(*) AS n{counts} FROM joined GROUP BY pid, tid",
                [value for _, value in counted])
    return counted


def _totals(con, cluster: str, k: int) -> tuple[int, int, list[int], list[int]]:
    """Over the cells (cluster 'cell') or the clusters they sum to ('pid', 'tid'): how many
    clusters, the pairs within them, and per value i the records of it and the pairs touching
    it — a cluster of n records, k of them of the value, has C(n,2) - C(n-k,2) such pairs."""
    values = [f"v{i}" for i in range(k)]
    clusters = "cells" if cluster == "cell" else (
        f"(SELECT {cluster}, sum(n) AS n{''.join(f', sum({v}) AS {v}' for v in values)} FROM cells GROUP BY {cluster})")
    entities = "count(*)" if cluster == "cell" else f"count({cluster})"   # nunique: a null id is no entity
    sums = ([entities, f"sum({_c2('n')})"] + [f"sum({v})" for v in values]
            + [f"sum({_c2('n')} - {_c2(f'n - {v}')})" for v in values])
    row = con.execute(f"SELECT {', '.join(f'coalesce({x}, 0)::BIGINT' for x in sums)} FROM {clusters}").fetchone()
    return row[0], row[1], list(row[2:2 + k]), list(row[2 + k:])


def _touching(counted: list[tuple[str, str]], records: list[int], tp: list[int], predicted: list[int],
              actual: list[int]) -> dict[str, dict]:
    """Per group and value (of those _cells counted): pairwise scores over the pairs with at
    least one record of that value. Values no joined record has are left out."""
    out: dict[str, dict] = {group: {} for group, _ in counted}
    for i, (group, value) in sorted(enumerate(counted), key=lambda c: c[1]):
        if records[i]:
            out[group][str(value)] = {
                "records": records[i], "true_pairs": actual[i], "predicted_pairs": predicted[i],
                "false_merge_pairs": predicted[i] - tp[i], "missed_pairs": actual[i] - tp[i],
                **_scores(tp[i], predicted[i], actual[i])}
    return out


def _involved(con, records: bool) -> None:
    """Table involved: the records of every cluster spread over several clusters of the other
    side (a false merge or a miss), then their names and birth dates: a lookup for those few
    records only."""
    for cluster in ("pid", "tid"):
        con.execute(f"CREATE OR REPLACE TABLE spread_{cluster} AS "
                    f"SELECT {cluster} FROM cells GROUP BY {cluster} HAVING count(*) > 1")
    con.execute("""CREATE OR REPLACE TABLE involved AS
        SELECT source_system, source_record_id, pid, tid, cause, NULL::VARCHAR AS name, NULL::TIMESTAMP_NS AS birth
        FROM joined WHERE pid IN (SELECT pid FROM spread_pid) OR tid IN (SELECT tid FROM spread_tid)""")
    if records:
        con.execute("""UPDATE involved i SET name = r.name, birth = r.birth FROM rec r
                       WHERE r.source_system = i.source_system AND r.source_record_id = i.source_record_id""")


def _errors_by_cause(con, by: str, other: str, pair_names: bool) -> dict:
    """For each cluster of `by` spread over several `other` clusters: the pairs lost there
    (C(size,2) - sum C(cell,2)), attributed to the records outside its largest cell (ties: the
    smallest `other` id) — their most frequent cause (ties: the first alphabetically); without
    one, when names and birth dates are known, namesake (a name shared with the largest cell)
    or twin (a shared birth date); else other."""
    names = "" if pair_names else "AND false"
    rows = con.execute(f"""
        WITH spread AS (SELECT {by} AS k, {other} AS o, n FROM cells QUALIFY count(*) OVER (PARTITION BY {by}) > 1),
        biggest AS (SELECT k, o FROM spread QUALIFY row_number() OVER (PARTITION BY k ORDER BY n DESC, o) = 1),
        lost AS (SELECT k, ({_c2('sum(n)')} - sum({_c2('n')}))::BIGINT AS lost FROM spread GROUP BY k),
        rows AS (SELECT b.k, i.{other} = b.o AS inside, i.cause, i.name, i.birth
                 FROM involved i JOIN biggest b ON i.{by} = b.k),
        minority AS (SELECT k, cause FROM (SELECT k, cause, count(*) AS c FROM rows
                                           WHERE NOT inside AND cause IS NOT NULL GROUP BY ALL)
                     QUALIFY row_number() OVER (PARTITION BY k ORDER BY c DESC, cause) = 1),
        namesake AS (SELECT DISTINCT k FROM (SELECT k, name FROM rows WHERE NOT inside {names}
                                             INTERSECT SELECT k, name FROM rows WHERE inside {names})
                     WHERE name IS NOT NULL),
        twin AS (SELECT DISTINCT k FROM (SELECT k, birth FROM rows WHERE NOT inside {names}
                                         INTERSECT SELECT k, birth FROM rows WHERE inside {names})
                 WHERE birth IS NOT NULL)
        SELECT coalesce(m.cause, CASE WHEN ns.k IS NOT NULL THEN 'namesake' WHEN tw.k IS NOT NULL THEN 'twin'
                                      ELSE 'other' END) AS cause, sum(lost)::BIGINT
        FROM lost LEFT JOIN minority m USING (k) LEFT JOIN namesake ns USING (k) LEFT JOIN twin tw USING (k)
        GROUP BY 1""").fetchall()
    return dict(sorted(rows))


def _score(con, xref: str, truth: str, truth_cause: bool, records: bool, pair_names: bool,
           say: Callable[[str], None], what: str = "records") -> dict:
    """The scores of xref's clusters (relation with source_system, source_record_id, pid)
    against truth's (… tid[, cause]), with table rec (see _cause_rows) when records is set;
    pair_names: the records have names and birth dates (the namesake / twin rule applies)."""
    by_cause = records or truth_cause
    groups = {"source_system": _distinct(con, f"SELECT DISTINCT source_system FROM {truth}")}
    if by_cause:   # candidates: every cause the truth or the records name
        groups["cause"] = _distinct(con, " UNION ".join(
            ([f"SELECT DISTINCT cause FROM {truth}"] if truth_cause else [])
            + (["SELECT DISTINCT cause FROM rec"] if records else [])))
    say(f"{what}: joining the xref to the truth, counting clusters by source and cause")
    _join(con, xref, truth, truth_cause, records)
    counted = _cells(con, groups)
    _, tp, records_of, tp_of = _totals(con, "cell", len(counted))
    predicted_entities, predicted, _, predicted_of = _totals(con, "pid", len(counted))
    true_entities, actual, _, actual_of = _totals(con, "tid", len(counted))
    touching = _touching(counted, records_of, tp_of, predicted_of, actual_of)
    (xref_rows,) = con.execute(f"SELECT count(*) FROM {xref}").fetchone()
    (joined,) = con.execute("SELECT coalesce(sum(n), 0)::BIGINT FROM cells").fetchone()
    result = {"records": joined, "records_unmatched_in_truth": xref_rows - joined,
              "true_pairs": actual, "predicted_pairs": predicted, "true_positive_pairs": tp,
              "false_merge_pairs": predicted - tp, "missed_pairs": actual - tp,
              **_scores(tp, predicted, actual),
              "predicted_entities": predicted_entities, "true_entities": true_entities,
              "by_source": touching.get("source_system", {})}
    if not by_cause:
        return result
    say(f"{what}: errors by cause")
    _involved(con, records)
    result["false_merges_by_cause"] = _errors_by_cause(con, "pid", "tid", pair_names)
    result["misses_by_cause"] = _errors_by_cause(con, "tid", "pid", pair_names)
    result["by_cause"] = touching.get("cause", {})
    return result


def _relation(frame_name: str, id_col: str, as_name: str, extra: tuple[str, ...] = ()) -> str:
    """SELECT of a registered frame or dataset: the key and the cluster id as text."""
    cols = ", ".join([f'"{c}"::VARCHAR AS {c}' for c in KEY] + [f'"{id_col}"::VARCHAR AS {as_name}']
                     + [f'"{c}"::VARCHAR AS {c}' for c in extra])
    return f"(SELECT {cols} FROM {frame_name})"


def _require(names, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"evaluate: {what} lacks column(s) {', '.join(missing)}")


def evaluate(xref: pd.DataFrame, truth: pd.DataFrame, id_col: str = "person_id",
             truth_col: str = "true_person_id", records: pd.DataFrame | None = None,
             memory_limit: str = MEMORY_LIMIT) -> dict:
    """Pairwise precision, recall, F1 of xref's clusters against truth's, over the records
    both know; by_source: the same over the pairs touching each source. With records, or a
    truth `cause` column (the generator's label of what it did to a record, preferred to the
    cause read from the records): false_merges and misses (pair counts) by cause, and
    by_cause (scores over the pairs touching records of each cause). Frames in memory; the
    counting runs in DuckDB as for evaluate_run."""
    _require(xref.columns, KEY + [id_col], "xref")
    _require(truth.columns, KEY + [truth_col], "truth")
    truth_cause = "cause" in truth
    with scratch_db(memory_limit) as (con, folder):
        con.register("_xref", xref[KEY + [id_col]])
        con.register("_truth", truth[KEY + [truth_col] + (["cause"] if truth_cause else [])])
        if records is not None:
            _records_view(con, f"{folder}/records.parquet", [_cause_rows(records)])
        return _score(con, _relation("_xref", id_col, "pid"),
                      _relation("_truth", truth_col, "tid", ("cause",) if truth_cause else ()),
                      truth_cause, records is not None,
                      records is not None and "name" in records and "birth_date" in records, lambda _line: None)


KINDS = {"person": ("person_id", "true_person_id", "persons.parquet"),
         "enterprise": ("enterprise_id", "true_enterprise_id", "enterprises.parquet")}


# std columns the cause rules read (the rest of a standardised record is not needed here)
CAUSE_COLUMNS = ["kind", "id_number", "id_number_status", "id_number_note", "id_type", "doc_number", "name",
                 "name_latin", "name_pinyin", "birth_date", "sex", "uscc", "uscc_status", "org_code", "reg_no",
                 "tax_no"]


@contextlib.contextmanager
def _std_file(path: str) -> Iterator:
    """A lake Parquet file opened for reading row group by row group, decrypted with the lake's
    keys. Not a pyarrow dataset: its scanner reads ahead while the cause rules run (760 MB
    buffered on a 4.8M-row source); this reader holds a buffer of each column and one batch."""
    import fsspec
    import pyarrow.parquet as pq

    from govdata.lake import decryption_properties, is_encrypted

    decryption = decryption_properties() if is_encrypted(path) else None
    fs, _, (p,) = fsspec.get_fs_token_paths(path)
    with fs.open(p, "rb") as fh:
        yield pq.ParquetFile(fh, decryption_properties=decryption, buffer_size=READ_BUFFER)


def _only_kind(batches: Iterable[pa.RecordBatch], kind: str) -> bool:
    """Whether the batches hold records and every kind given is this one (nulls skipped)."""
    import pyarrow.compute as pc

    rows = 0
    for batch in batches:
        if pc.any(pc.not_equal(batch.column(0), kind)).as_py():
            return False
        rows += batch.num_rows
    return rows > 0


def std_files_of_kind(std_files: list[str], kind: str) -> tuple[list[str], list[str]]:
    """The std files holding records of this kind only (non-empty, every kind given equal to
    it), and the cause columns any of them has: the rules see every file's batches with that
    union of columns, the missing ones empty (a source without an ID column is told apart by
    its empty status column)."""
    files, columns = [], set()
    for path in std_files:
        with _std_file(path) as reader:
            names = reader.schema_arrow.names
            if "kind" in names and _only_kind(reader.iter_batches(batch_size=BATCH_ROWS, columns=["kind"]), kind):
                files.append(path)
                columns |= set(names)
    return files, [c for c in CAUSE_COLUMNS if c in columns]


def _cause_batches(files: list[str], columns: list[str], rows: int, say: Callable[[str], None],
                   what: str) -> Iterator[pa.Table]:
    """_cause_rows of every record of the files, one batch at a time; says when a file is done."""
    from govdata.lake import to_pandas

    n = 0
    for path in files:
        with _std_file(path) as reader:
            present = [c for c in KEY + columns if c in reader.schema_arrow.names]
            for batch in reader.iter_batches(batch_size=rows, columns=present):
                frame = to_pandas(pa.Table.from_batches([batch]), arrow_strings=True)
                for c in columns:
                    if c not in frame:
                        frame[c] = None
                n += len(frame)
                yield _cause_rows(frame)
        say(f"{what}: record causes read from {Path(path).stem} ({n:,} records so far)")


def _score_kind(con, folder: str, kind: str, world: Path, xref_path: str, std_files: list[str],
                say: Callable[[str], None]) -> dict:
    """One kind of a run: xref (lake, decrypted as DuckDB scans it) against the truth file,
    record causes streamed from the std files to the scratch folder."""
    import pyarrow.parquet as pq

    from govdata.lake import dataset

    id_col, truth_col, truth_file = KINDS[kind]
    truth_path = world / "truth" / truth_file
    truth_names = pq.read_schema(truth_path).names
    _require(truth_names, KEY + [truth_col], "truth")
    truth_cause = "cause" in truth_names
    xref_data = dataset(xref_path)
    _require(xref_data.schema.names, KEY + [id_col], "xref")
    files, columns = std_files_of_kind(std_files, kind)
    n = _records_view(con, f"{folder}/{kind}_records.parquet",
                      _cause_batches(files, columns, BATCH_ROWS, say, f"{kind}s"))
    pa.default_memory_pool().release_unused()   # the batches' memory back to the system before DuckDB's turn
    say(f"scoring {kind}s: {n:,} records against the truth")
    con.register("_xref_ds", xref_data)
    con.execute(f"CREATE OR REPLACE VIEW _truth AS SELECT * FROM read_parquet({_sql_text(str(truth_path))})")
    try:
        return _score(con, _relation("_xref_ds", id_col, "pid"),
                      _relation("_truth", truth_col, "tid", ("cause",) if truth_cause else ()),
                      truth_cause, bool(files), "name" in columns and "birth_date" in columns, say, f"{kind}s")
    finally:
        con.unregister("_xref_ds")


def evaluate_run(world: str | Path, summary: dict, lake: str | None = None,
                 progress: Callable[[str], None] | None = None, memory_limit: str = MEMORY_LIMIT) -> dict:
    """Scores one pipeline run on a generated world: the run's link/<kind>_xref.parquet
    against world/truth/<kind>s.parquet, error causes from the run's std/*.parquet.
    progress: told what is being done (one short line per step). Memory: one batch of
    records plus DuckDB's memory_limit, whatever the size of the run."""
    import fsspec

    from govdata.lake import run_path
    from govdata.settings import get_settings

    say = progress or (lambda _line: None)
    lake = lake or summary.get("lake") or get_settings().lake
    run_id = summary["run_id"]
    std_dir = run_path(lake, run_id, "std")
    fs, _, (std_root,) = fsspec.get_fs_token_paths(std_dir)
    std_files = sorted(fs.glob(f"{std_root}/*.parquet")) if fs.exists(std_root) else []
    say(f"reading the standardised records of {len(std_files)} sources")
    out = {}
    with scratch_db(memory_limit) as (con, folder):
        for kind, (_, _, truth_file) in KINDS.items():
            xref_path = run_path(lake, run_id, "link", f"{kind}_xref.parquet")
            truth_path = Path(world) / "truth" / truth_file
            if not fs.exists(fsspec.core.strip_protocol(xref_path)) or not truth_path.exists():
                out[kind] = {"error": f"missing {truth_path if not truth_path.exists() else xref_path}"}
                continue
            out[kind] = _score_kind(con, folder, kind, Path(world), xref_path, std_files, say)
    return out
