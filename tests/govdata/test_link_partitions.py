import pandas as pd

from govdata.stages import assign_partitions, separate_shared_ids


def test_a_master_id_claimed_by_two_partitions_stays_with_the_larger():
    a = pd.DataFrame({"source_system": ["gongan", "shebao"], "source_record_id": ["1", "2"], "person_id": ["P1", "P1"]})
    b = pd.DataFrame({"source_system": ["weijian"], "source_record_id": ["9"], "person_id": ["P1"]})
    (a2, b2), history = separate_shared_ids([a, b], "person_id", "P", "run-2")
    assert a2.person_id.tolist() == ["P1", "P1"]
    assert b2.person_id.iloc[0] != "P1" and b2.person_id.iloc[0].startswith("P")
    assert history[["old_id", "reason", "run_id"]].values.tolist() == [["P1", "partition_split", "run-2"]]
    again, _ = separate_shared_ids([a, b], "person_id", "P", "run-3")
    assert again[1].person_id.iloc[0] == b2.person_id.iloc[0]   # deterministic


def test_steward_match_pulls_records_into_one_partition():
    records = pd.DataFrame({"source_system": ["gongan", "minzheng"], "source_record_id": ["1", "2"],
                            "id_number": [None, None], "birth_date": pd.to_datetime(["1990-01-01", "1991-01-01"])})
    decisions = pd.DataFrame({"left_source_system": ["gongan"], "left_source_record_id": ["1"],
                              "right_source_system": ["minzheng"], "right_source_record_id": ["2"],
                              "decision": ["match"]})
    assert assign_partitions(records, 2, None).tolist() == [0, 1]     # 1990 % 2, 1991 % 2
    assert assign_partitions(records, 2, decisions).tolist() == [0, 0]


def test_link_config_comes_from_the_stewards_yaml():
    from govdata.stages import link_config

    assert link_config("person").review_threshold == 12.0
    assert link_config("person").match_threshold == 14.0
    assert link_config("enterprise").review_threshold == 8.0   # library default


def test_records_split_by_partition_keep_their_order():
    import numpy as np
    import pyarrow as pa

    from govdata.stages import _split_by_partition

    table = pa.table({"source_record_id": ["a", "b", "c", "d", "e"]})
    chunks = _split_by_partition(table, np.array([2, 0, 2, 0, 1]))
    assert {p: t["source_record_id"].to_pylist() for p, t in chunks.items()} == \
        {0: ["b", "d"], 1: ["e"], 2: ["a", "c"]}


def test_only_ids_in_two_partitions_are_shared():
    from govdata.stages import _ids_in_several

    a = pd.DataFrame({"person_id": ["P1", "P1", "P2", None]})
    b = pd.DataFrame({"person_id": ["P3", "P1"]})
    c = pd.DataFrame({"person_id": ["P2"]})
    assert sorted(_ids_in_several([a, b, c], "person_id")) == ["P1", "P2"]
    assert _ids_in_several([a], "person_id") == []


def test_link_merge_gives_a_shared_id_to_the_larger_partition_and_moves_the_golden_record(tmp_path):
    from govdata.lake import read_parquet, write_parquet
    from govdata.stages import OUTPUTS, link_merge

    run = {"lake": str(tmp_path), "run_id": "r2"}
    frames = [
        {"xref": pd.DataFrame({"source_system": ["gongan", "shebao"], "source_record_id": ["1", "2"],
                               "person_id": ["P1", "P1"], "match_rule": ["id", "id"], "match_score": [None, None]}),
         "golden": pd.DataFrame({"person_id": ["P1"], "name": ["张三"]})},
        {"xref": pd.DataFrame({"source_system": ["weijian"], "source_record_id": ["9"], "person_id": ["P1"],
                               "match_rule": ["singleton"], "match_score": [None]}),
         "golden": pd.DataFrame({"person_id": ["P1"], "name": ["张山"]})},
    ]
    empty = {"history": pd.DataFrame({"old_id": pd.Series([], dtype="string"), "new_id": pd.Series([], dtype="string"),
                                      "entity": pd.Series([], dtype="string"), "reason": pd.Series([], dtype="string"),
                                      "run_id": pd.Series([], dtype="string")}),
             "review": pd.DataFrame({"pair_id": pd.Series([], dtype="string")}),
             "evidence": pd.DataFrame({"rule": pd.Series([], dtype="string")})}
    parts = []
    for i, f in enumerate(frames):
        paths = {name: write_parquet({**empty, **f}[name], str(tmp_path / f"person_{i}_{name}.arrow")) for name in OUTPUTS}
        parts.append({"kind": "person", "partition": i, "rows": len(f["xref"]), "paths": paths, "stats": {},
                      "plan": {"mode": "full"}})
    merged = link_merge(parts, run)
    xref = read_parquet(merged["paths"]["person_xref"])
    moved = xref.loc[xref.source_system == "weijian", "person_id"].iloc[0]
    assert xref.person_id.tolist()[:2] == ["P1", "P1"] and moved != "P1" and moved.startswith("P")
    golden = read_parquet(merged["paths"]["person_golden"]).set_index("name")["person_id"]
    assert golden.to_dict() == {"张三": "P1", "张山": moved}
    history = read_parquet(merged["paths"]["person_history"])
    assert history[["old_id", "new_id", "reason"]].values.tolist() == [["P1", moved, "partition_split"]]


def test_previous_xref_rows_follow_their_records_partition():
    import numpy as np
    import pyarrow as pa

    from govdata.stages import previous_partitions

    records = pa.table({"source_system": ["gongan", "shebao", "gongan"], "source_record_id": ["1", "1", "2"]})
    previous = pa.table({"source_system": ["shebao", "gongan", "weijian", "gongan"],
                         "source_record_id": ["1", "2", "1", "1"], "person_id": ["P1", "P2", "P3", "P1"]})
    assert previous_partitions(previous, records, np.array([0, 1, 2])).tolist() == [1, 2, -1, 0]


def test_key_positions_find_each_rows_match_or_minus_one():
    import pyarrow as pa

    from govdata.stages import key_positions

    left = pa.table({"source_system": ["a", "b", "a"], "source_record_id": ["1", "1", "2"]})
    right = pa.table({"source_system": ["a", "a"], "source_record_id": ["2", "1"]})
    assert key_positions(left, right).tolist() == [1, -1, 0]


def test_a_moved_part_never_takes_an_id_a_partition_holds():
    """The moved part's smallest key can be the one whose hash is the id it leaves (the id was
    first given to the cluster by that key): it takes a salted id instead of a duplicate."""
    from govdata.transforms.linkage.common import hash_id

    old = hash_id("P", "weijian\x1f9")   # the id the whole person got from its smallest key
    a = pd.DataFrame({"source_system": ["zz", "zz"], "source_record_id": ["1", "2"], "person_id": [old, old]})
    b = pd.DataFrame({"source_system": ["weijian"], "source_record_id": ["9"], "person_id": [old]})
    (a2, b2), history = separate_shared_ids([a, b], "person_id", "P", "run-2")
    assert a2.person_id.tolist() == [old, old]
    assert b2.person_id.tolist() == [hash_id("P", "weijian\x1f9\x1f1")]
    assert history[["old_id", "new_id"]].values.tolist() == [[old, hash_id("P", "weijian\x1f9\x1f1")]]
