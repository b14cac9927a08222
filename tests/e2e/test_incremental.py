"""Incremental runs: watermarks, merged snapshots, stable master IDs and deletions marked."""
from __future__ import annotations

import sqlite3

import duckdb
import pytest

from govdata.demo_data import generate
from govdata.runner import run_pipeline
from warehouse.state import read_state

pytestmark = pytest.mark.e2e

LATER = "2099-01-01 00:00:00"


def _q(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).df()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    world = tmp_path_factory.mktemp("inc_world")
    generate(world, persons=400, seed=9)
    base = tmp_path_factory.mktemp("inc_run")
    url, db = f"duckdb:///{base / 'w.duckdb'}", base / "w.duckdb"
    run = lambda full: run_pipeline(world / "sources", warehouse_url=url, lake=str(base / "lake"),  # noqa: E731
                                    full_refresh=full)
    run(True)
    before = _q(db, "select source_system, source_record_id, person_id from xref_person")

    gongan = world / "departments" / "gongan.sqlite"
    with sqlite3.connect(gongan) as con:
        ids = [r[0] for r in con.execute("select RKBH from T_RK_JBXX order by RKBH limit 3")]
        con.executemany("update T_RK_JBXX set LXDH = '13900000000', ZHGXSJ = ? where RKBH = ?",
                        [(LATER, i) for i in ids])
        cols = [r[1] for r in con.execute("pragma table_info(T_RK_JBXX)")]
        row = dict(zip(cols, con.execute("select * from T_RK_JBXX where RKBH = ?", (ids[0],)).fetchone()))
        row.update(RKBH="RK999999999999", ZHGXSJ=LATER)   # the same person registered again
        con.execute(f"insert into T_RK_JBXX ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                    list(row.values()))
    incremental = run(False)
    after_inc = _q(db, "select source_system, source_record_id, person_id, is_deleted from xref_person")

    with sqlite3.connect(gongan) as con:
        con.execute("delete from T_RK_JBXX where RKBH = ?", (ids[1],))
    run(True)
    after_delete = _q(db, "select source_system, source_record_id, person_id, is_deleted from xref_person")
    return {"url": url, "ids": ids, "before": before, "incremental": incremental, "after_inc": after_inc,
            "after_delete": after_delete}


def test_incremental_run_extracts_only_changed_rows(runs):
    assert runs["incremental"]["headline"]["records in"] == 4   # 3 updated + 1 inserted, all gongan


def test_incremental_run_keeps_every_record_and_master_id(runs):
    before, after = runs["before"], runs["after_inc"]
    assert len(after) == len(before) + 1
    merged = before.merge(after, on=["source_system", "source_record_id"], suffixes=("_before", "_after"))
    assert len(merged) == len(before)
    assert (merged.person_id_before == merged.person_id_after).all()
    new = after[after.source_record_id == "RK999999999999"]
    old = after[after.source_record_id == runs["ids"][0]]
    assert new.person_id.tolist() == old.person_id.tolist()   # linked to the same person by ID


def test_watermark_advanced_with_the_load(runs):
    assert read_state(runs["url"], "gongan")["watermark"] == LATER


def test_row_deleted_at_source_is_marked_not_dropped(runs):
    after = runs["after_delete"].set_index(["source_system", "source_record_id"])
    assert bool(after.loc[("gongan", runs["ids"][1]), "is_deleted"]) is True
    assert int(after["is_deleted"].sum()) == 1
    assert len(after) == len(runs["after_inc"])
