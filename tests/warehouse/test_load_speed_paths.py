"""The loader's fast paths (full replace, hashed duplicate check, bulk PostgreSQL paths) give the
same warehouse as the general merge, from rows in memory and from rows staged in the lake (read
a column selection per statement). Correctness only: speed is measured by warehouse.bench."""
from __future__ import annotations


import pandas as pd
import pytest

from govdata.warehouse import merge_duckdb as D
from govdata.warehouse import merge_postgres as L
from govdata.warehouse.bench import synthetic_xref
from govdata.warehouse.load import LoadError, connect, load_tables

N = 12_000  # above FULL_REPLACE_MIN_ROWS


@pytest.fixture(params=["duckdb", "postgresql"])
def url(request, tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FULL_REPLACE_MIN_ROWS", 1_000)
    monkeypatch.setattr(L, "BULK_MIN_ROWS", 1_000)
    monkeypatch.setattr(L, "COPY_BATCH_ROWS", 5_000)  # several COPY batches, encoded ahead
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture(params=["memory", "staged"])
def load(request, tmp_path):
    """load_tables with the xref given as a frame, or staged as lake files (StagedTable)."""
    from govdata.warehouse.staging import StagedTable, Stager

    def run(url: str, frame: pd.DataFrame, run_id: str) -> None:
        rows = frame
        if request.param == "staged":
            stager = Stager(str(tmp_path / "lake" / run_id), min_rows=1)
            stager.add("xref_person", frame)
            rows = stager.tables["xref_person"]
            assert isinstance(rows, StagedTable)
        load_tables(url, {"xref_person": rows}, run_id)
    return run


def xref_rows(url: str) -> list[tuple]:
    with connect(url) as db:
        return sorted(db.fetchall("SELECT source_system, source_record_id, person_id, match_rule, match_score, run_id "
                                  "FROM xref_person"), key=repr)


def expected(*frames: pd.DataFrame) -> list[tuple]:
    merged = pd.concat(frames).drop_duplicates(["source_system", "source_record_id"], keep="last")
    cols = ["source_system", "source_record_id", "person_id", "match_rule", "match_score", "run_id"]
    return sorted((tuple(r) for r in merged[cols].itertuples(index=False, name=None)), key=repr)


def test_full_replace_partial_overlap_and_reload_agree_with_a_plain_merge(url, load):
    first = synthetic_xref(N, seed=1)
    load(url, first, "r1")
    assert xref_rows(url) == expected(first)
    load(url, first, "r1")           # full replace of identical rows
    assert xref_rows(url) == expected(first)
    second = synthetic_xref(N, seed=2)
    second["run_id"] = "r2"                                    # every key again, new values
    load(url, second, "r2")
    assert xref_rows(url) == expected(first, second)
    third = synthetic_xref(N + 3_000, seed=3).iloc[N // 2:]  # half overlap, half new keys
    third["run_id"] = "r3"
    load(url, third, "r3")
    assert xref_rows(url) == expected(first, second, third)
    small = synthetic_xref(N // 4, seed=4)                   # target bigger than the load
    small["run_id"] = "r4"
    load(url, small, "r4")
    assert xref_rows(url) == expected(first, second, third, small)


def test_duplicate_keys_in_a_big_load_are_refused_and_nothing_changes(url, load):
    first = synthetic_xref(N, seed=1)
    load(url, first, "r1")
    before = xref_rows(url)
    bad = synthetic_xref(N, seed=5)
    bad.loc[7, "source_record_id"] = bad.loc[11, "source_record_id"]  # same source (i % 4)
    with pytest.raises(LoadError, match="xref_person"):
        load(url, bad, "r2")
    assert xref_rows(url) == before


def test_duplicate_keys_refused_on_a_first_bulk_load(url, load):
    bad = synthetic_xref(N, seed=6)
    bad.loc[1, "source_record_id"] = bad.loc[5, "source_record_id"]
    with pytest.raises(LoadError, match="xref_person"):
        load(url, bad, "r1")
    with connect(url) as db:
        assert db.fetchall("SELECT count(*) FROM xref_person") == [(0,)]


def test_rows_go_in_key_order_only_where_the_server_sorts_keys_bytewise(pg_database):
    from govdata.warehouse.schema import table_for

    load_tables(pg_database, {"xref_person": synthetic_xref(10)}, "r1")
    with connect(pg_database) as db:
        assert L._pg_orders_keys_bytewise(db, table_for("xref_person"))  # the server's C.UTF-8
        assert L._pg_orders_keys_bytewise(db, table_for("dim_date"))     # integer key
        db.execute('ALTER TABLE xref_person ALTER COLUMN source_record_id TYPE varchar COLLATE "und-x-icu"')
        assert not L._pg_orders_keys_bytewise(db, table_for("xref_person"))


def test_a_bulk_load_in_server_key_order_or_not_gives_the_same_rows(pg_database, monkeypatch):
    monkeypatch.setattr(L, "BULK_MIN_ROWS", 1_000)
    monkeypatch.setattr(L, "COPY_BATCH_ROWS", 5_000)
    frame = synthetic_xref(N, seed=7)
    load_tables(pg_database, {"xref_person": frame}, "r1")
    in_order = xref_rows(pg_database)
    monkeypatch.setattr(L, "_pg_orders_keys_bytewise", lambda db, table: False)
    load_tables(pg_database, {"xref_person": frame}, "r1")
    assert xref_rows(pg_database) == in_order == expected(frame)


def test_key_order_is_arrows_byte_order_sort():
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table({"x": pa.chunked_array([["b", "a", "é"], ["a", "b", "a"]]),
                      "y": pa.chunked_array([["2", "1", "1"], ["0", "1", "1"]]),
                      "z": pa.chunked_array([[3, 2, 1], [1, 1, 0]])})
    for keys in (("x",), ("x", "y"), ("x", "y", "z"), ("z", "x")):
        assert L._key_order(table, keys).to_pylist() == pc.sort_indices(
            table, sort_keys=[(k, "ascending") for k in keys]).to_pylist()
