"""Incremental runs: watermarks, merged snapshots, stable master IDs and deletions marked."""
from __future__ import annotations

import sqlite3

import duckdb
import pandas as pd
import pytest

from govdata.demo_data import generate
from govdata.runner import run_pipeline
from govdata.warehouse.state import read_state

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
    applicants = _q(db, "select source_record_id, applicant_person_id from fact_application")

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
    with sqlite3.connect(world / "departments" / "shebao.sqlite") as con:   # IDs lost: probabilistic
        con.execute("update SI_PERSON_INFO set id_card = NULL, update_time = ? where person_no in "
                    "(select person_no from SI_PERSON_INFO order by person_no limit 5)", (LATER,))
    with sqlite3.connect(world / "departments" / "weijian.sqlite") as con:
        renamed = [r[0] for r in con.execute("select DAH from WJ_JKDA_GRJBXX order by DAH limit 3")]
        con.execute("update WJ_JKDA_GRJBXX set HZXM = '欧阳测试', JDRQ = ? where DAH in "
                    "(select DAH from WJ_JKDA_GRJBXX order by DAH limit 3)", (LATER,))
        con.execute("insert into WJ_JKDA_GRJBXX select 'JK9999999999', NULL, HZXM, XB, CSRQ, LXDH, JZDZ, ? "
                    "from WJ_JKDA_GRJBXX where LXDH is not null order by DAH desc limit 1", (LATER,))
    with sqlite3.connect(world / "departments" / "zhengwu.sqlite") as con:   # an application now names another person
        moved_no, old_id = con.execute("select SQBH, SQRZJHM from ZW_BJ_SQXX where SQRZJHM is not null "
                                       "order by SQBH limit 1").fetchone()
        with sqlite3.connect(gongan) as g:
            new_id = g.execute("select SFZHM from T_RK_JBXX where SFZHM is not null and SFZHM <> ? "
                               "order by RKBH desc limit 1", (old_id,)).fetchone()[0]
        con.execute("update ZW_BJ_SQXX set SQRZJHM = ?, GXSJ = ? where SQBH = ?", (new_id, LATER, moved_no))
    incremental = run(False)
    owner_changes = _q(db, "select * from fact_owner_change")
    applicants_after = _q(db, "select source_record_id, applicant_person_id from fact_application")
    xref_sql = "select source_system, source_record_id, person_id, match_rule, match_score from xref_person"
    after_inc = _q(db, "select source_system, source_record_id, person_id, is_deleted from xref_person")
    xref_inc = _q(db, xref_sql)
    relinked = run(True)   # a full relink of the same data
    xref_full = _q(db, xref_sql)

    with sqlite3.connect(gongan) as con:
        con.execute("delete from T_RK_JBXX where RKBH = ?", (ids[1],))
    run(True)
    after_delete = _q(db, "select source_system, source_record_id, person_id, is_deleted from xref_person")
    return {"url": url, "ids": ids, "before": before, "incremental": incremental, "after_inc": after_inc,
            "after_delete": after_delete, "xref_inc": xref_inc, "xref_full": xref_full, "relinked": relinked,
            "renamed": renamed, "applicants": applicants, "applicants_after": applicants_after,
            "owner_changes": owner_changes, "moved": (moved_no, new_id)}


def test_an_application_naming_another_person_moves_to_that_person_and_is_listed(runs):
    """The load compares this run's facts with those loaded before (from files it copies out of
    the warehouse): the one application whose applicant ID changed is the one owner change."""
    moved_no, new_id = runs["moved"]
    before = runs["applicants"].set_index("source_record_id")["applicant_person_id"]
    after = runs["applicants_after"].set_index("source_record_id")["applicant_person_id"]
    changes = runs["owner_changes"]
    assert changes[["fact_table", "source_record_id", "role", "old_owner", "new_owner", "reason"]].values.tolist() == [
        ["fact_application", moved_no, "person", before[moved_no], after[moved_no], "identifier_changed"]]
    assert before[moved_no] != after[moved_no]
    assert changes["identifier_masked"].iloc[0] == new_id[:6] + "*" * 8 + new_id[-4:]
    assert before.drop(moved_no).fillna("").equals(after.reindex(before.index).drop(moved_no).fillna(""))


def test_incremental_run_extracts_only_changed_rows(runs):
    # gongan 3 updated + 1 inserted, shebao 5 updated, weijian 3 updated + 1 inserted, zhengwu 1
    # updated, and canlian's 21 rows: a full snapshot (no incremental column) is read in full on every run
    assert runs["incremental"]["headline"]["records in"] == 14 + 21


def test_incremental_run_links_only_the_scope_of_the_changes(runs):
    person = runs["incremental"]["linkage"]["person"]
    total = person["records_relinked"] + person["records_carried"]
    assert person["mode"] == "incremental"
    assert total == len(runs["after_inc"])
    assert 13 <= person["records_relinked"] < total / 4
    assert runs["relinked"]["linkage"]["person"] == {"mode": "full", "records_relinked": total, "records_carried": 0}


def test_full_relink_gives_the_incremental_result(runs):
    key = ["source_system", "source_record_id"]
    inc = runs["xref_inc"].sort_values(key).reset_index(drop=True)
    full = runs["xref_full"].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(inc, full)


def test_incremental_run_keeps_every_record_and_master_id(runs):
    before, after = runs["before"], runs["after_inc"]
    assert len(after) == len(before) + 2
    merged = before.merge(after, on=["source_system", "source_record_id"], suffixes=("_before", "_after"))
    assert len(merged) == len(before)
    # a record given another person's name may leave its person; every other keeps its id
    renamed = (merged.source_system == "weijian") & merged.source_record_id.isin(runs["renamed"])
    assert (merged.person_id_before == merged.person_id_after)[~renamed].all()
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
