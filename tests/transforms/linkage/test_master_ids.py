"""Stable person_ids across runs, master_id_history, steward decisions reapplied."""
from __future__ import annotations

import pandas as pd
import pytest

from govdata.transforms.linkage import link_persons
from govdata.transforms.linkage.common import hash_id

from .people import SURVIVORSHIP, clusters, frame, make_id, rec

A = make_id("1980-05-12", "011")
B = make_id("1975-11-30", "024")
C = make_id("2001-06-06", "037")


def world() -> list[dict]:
    return [rec("gongan", "a1", A, "张三", "zhangsan", "1", "1980-05-12", "13800000001"),
            rec("shebao", "a2", A, "张三", "zhangsan", "1", "1980-05-12"),
            rec("gongan", "b1", B, "李丽", "lili", "2", "1975-11-30"),
            rec("weijian", "b2", None, "李丽", "lili", "2", "1975-11-30", "13800000002"),
            rec("gongan", "c1", C, "王五", "wangwu", "1", "2001-06-06")]


def run(rows, previous=None, decisions=None, run_id="r1", previous_ids=None):
    return link_persons(frame(rows), previous_xref=previous, previous_ids=previous_ids, decisions=decisions,
                        survivorship=SURVIVORSHIP, run_id=run_id)


def ids(result) -> dict[str, str]:
    x = result.xref
    return dict(zip(x.source_system + ":" + x.source_record_id, x.person_id))


def test_new_clusters_get_the_hash_of_their_smallest_member():
    r = run(world())
    got = ids(r)
    assert got["gongan:a1"] == got["shebao:a2"] == hash_id("P", "gongan\x1fa1")
    assert got["weijian:b2"] == hash_id("P", "gongan\x1fb1")
    assert r.history.empty
    assert ids(run(world())) == got   # a full relink is repeatable


def test_ids_survive_added_changed_and_deleted_records():
    first = run(world())
    rows = world()
    rows[1]["phone"] = "13999999999"                      # changed
    del rows[4]                                           # deleted: c1 (the whole of 王五)
    rows.append(rec("minzheng", "a0", None, "张三", "zhangsan", "1", "1980-05-12",
                    "13800000001"))                       # added: joins 张三
    rows.append(rec("minzheng", "d1", make_id("1999-01-01", "041"), "赵六", "zhaoliu", "1",
                    "1999-01-01"))                        # added: new person
    second = run(rows, previous=first.xref, run_id="r2")
    before, after = ids(first), ids(second)
    assert after["gongan:a1"] == after["minzheng:a0"] == before["gongan:a1"]
    assert after["weijian:b2"] == before["weijian:b2"]
    assert after["minzheng:d1"] == hash_id("P", "minzheng\x1fd1")
    assert second.history.empty
    # incremental (with previous ids) and full relink give the same partition
    assert clusters(second.xref) == clusters(run(rows).xref)


def test_merge_and_split_write_history():
    first = run(world())
    old_a, old_b = ids(first)["gongan:a1"], ids(first)["gongan:b1"]
    force = pd.DataFrame([{"left_source_system": "gongan", "left_source_record_id": "a1",
                           "right_source_system": "gongan", "right_source_record_id": "b1",
                           "decision": "match", "decided_by": "steward1",
                           "decided_at": pd.Timestamp("2026-01-01")}])
    merged = run(world(), previous=first.xref, decisions=force, run_id="r2")
    keep, lose = min(old_a, old_b), max(old_a, old_b)   # two records each: smallest id wins
    assert ids(merged)["gongan:b1"] == ids(merged)["gongan:a1"] == keep
    assert merged.xref.set_index("source_record_id").loc[["a1", "b1"], "match_rule"].tolist() \
        == ["steward", "steward"]
    assert merged.history[["old_id", "new_id", "entity", "reason", "run_id"]].values.tolist() == \
        [[lose, keep, "person", "merge", "r2"]]
    # the steward changes their mind: the pair splits again, b keeps a fresh id
    undo = force.assign(decision="non_match", decided_at=pd.Timestamp("2026-02-01"))
    split = run(world(), previous=merged.xref, decisions=pd.concat([force, undo]), run_id="r3")
    assert ids(split)["gongan:a1"] == ids(merged)["gongan:a1"]
    new_b = ids(split)["gongan:b1"]
    assert new_b != ids(merged)["gongan:b1"] and ids(split)["weijian:b2"] == new_b
    assert split.history.values.tolist() == [[ids(merged)["gongan:a1"], new_b, "person",
                                              "split", "r3"]]


def test_steward_non_match_is_applied_on_every_run():
    rows = world()
    no = pd.DataFrame([{"left_source_system": "weijian", "left_source_record_id": "b2",
                        "right_source_system": "gongan", "right_source_record_id": "b1",
                        "decision": "non_match", "decided_by": "s", "decided_at": None}])
    first = run(rows, decisions=no)
    assert frozenset({"weijian:b2"}) in clusters(first.xref)
    second = run(rows, previous=first.xref, decisions=no, run_id="r2")
    assert clusters(second.xref) == clusters(first.xref) and ids(second) == ids(first)
    # decided pairs do not come back to the review queue
    assert second.review.empty


def test_steward_non_match_splits_a_shared_id():
    no = pd.DataFrame([{"left_source_system": "gongan", "left_source_record_id": "a1",
                        "right_source_system": "shebao", "right_source_record_id": "a2",
                        "decision": "non_match", "decided_by": "s",
                        "decided_at": pd.Timestamp("2026-01-01")}])
    r = run(world(), decisions=no)
    assert frozenset({"shebao:a2"}) in clusters(r.xref)
    assert frozenset({"gongan:a1"}) in clusters(r.xref)


def test_bad_decision_value_is_named():
    bad = pd.DataFrame([{"left_source_system": "gongan", "left_source_record_id": "a1",
                         "right_source_system": "shebao", "right_source_record_id": "a2",
                         "decision": "maybe", "decided_by": "s", "decided_at": None}])
    with pytest.raises(ValueError, match="column decision has 1 value.*'maybe'"):
        run(world(), decisions=bad)


def test_a_new_id_misses_every_previous_id_when_the_previous_xref_is_a_slice():
    # the id hash(gongan/c1) is held by a record this partition does not link (as when c1 left
    # that cluster in an earlier run and the cluster kept its id): the partition's slice of the
    # previous xref has none of its rows, previous_ids names it
    first = run(world())
    kept = ids(first)["gongan:c1"]
    moved = [rec("gongan", "c1", None, "王五", "wangwu", "1", "2001-06-06")]
    alone = run(moved, previous=first.xref.iloc[:0], run_id="r2")
    assert ids(alone)["gongan:c1"] == kept   # without the other ids, it takes the carried one
    known = run(moved, previous=first.xref.iloc[:0], run_id="r2", previous_ids=first.xref["person_id"])
    assert ids(known)["gongan:c1"] == hash_id("P", "gongan\x1fc1\x1f1")
