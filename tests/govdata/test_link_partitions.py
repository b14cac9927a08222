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


def test_a_moved_part_never_takes_an_id_a_partition_not_passed_holds():
    import pyarrow as pa

    from govdata.transforms.linkage.common import hash_id

    taken = hash_id("P", "weijian\x1f9")   # held by a partition that shares no id
    a = pd.DataFrame({"source_system": ["zz", "zz"], "source_record_id": ["1", "2"], "person_id": ["P1", "P1"]})
    b = pd.DataFrame({"source_system": ["weijian"], "source_record_id": ["9"], "person_id": ["P1"]})
    held = pa.chunked_array([pa.array(["P7", taken], pa.large_string())])
    (_, b2), history = separate_shared_ids([a, b], "person_id", "P", "run-2", held=held)
    assert b2.person_id.tolist() == [hash_id("P", "weijian\x1f9\x1f1")]
    (_, b3), _ = separate_shared_ids([a, b], "person_id", "P", "run-2", held=held.slice(0, 1))
    assert b3.person_id.tolist() == [taken]


def _write_parts(tmp_path, partitions: list[dict], kind: str = "person", plan: dict | None = None) -> list[dict]:
    """link_partition's results for partitions of tables {output name: pa.Table}, written as its
    hand-off files."""
    from govdata.lake import HANDOFF_SUFFIX, write_parquet

    parts = []
    for i, tables in enumerate(partitions):
        paths = {name: write_parquet(table, str(tmp_path / "parts" / f"{kind}_{i}_{name}{HANDOFF_SUFFIX}"))
                 for name, table in tables.items()}
        parts.append({"kind": kind, "partition": i, "path": f"input/{kind}_{i}", "rows": tables["xref"].num_rows,
                      "paths": paths, "stats": {"records": tables["xref"].num_rows}, "seconds": 1.5 + i,
                      "peak_rss_mb": 100 + i, "plan": plan or {"mode": "full"}, "plan_seconds": 2.0,
                      "plan_peak_rss_mb": 90})
    return parts


def _xref(ids: list, **extra):
    """An xref of these master ids (one record each), extra columns after its own."""
    import pyarrow as pa

    n = len(ids)
    return pa.table({"source_system": pa.array(["gongan"] * n, pa.large_string()),
                     "source_record_id": pa.array([f"{i}{x}" for i, x in enumerate(ids)], pa.large_string()),
                     "person_id": pa.array(ids, pa.string()), "match_rule": pa.array(["id"] * n, pa.string()),
                     "match_score": pa.array([1.5] * n, pa.float64()), **extra})


def test_link_merge_streams_the_partitions_into_what_concatenating_them_gives(tmp_path, monkeypatch):
    """Partitions of differing schemas (an extra column, a narrower type, an all-null column, an
    empty partition with a column of its own) merge, two rows at a time, into the rows, order and
    schema (metadata too) that concatenating them in Arrow gives."""
    import pyarrow as pa

    import govdata.stages.link as link
    from govdata.lake import read_arrow
    from govdata.stages import OUTPUTS, link_merge

    monkeypatch.setattr(link, "MERGE_BATCH_ROWS", 2)   # several tables per partition
    golden = lambda ids, **extra: pa.table({"person_id": pa.array(ids, pa.string()),  # noqa: E731
                                            "id_number": pa.array([f"1101{x}" for x in ids], pa.large_string()),
                                            "record_count": pa.array([2] * len(ids), pa.int64()), **extra})
    history = lambda n: pa.table({"old_id": pa.array(["P0"] * n, pa.string()),  # noqa: E731
                                  "new_id": pa.array(["P9"] * n, pa.string())})
    review = lambda n, score_type=pa.float64(): pa.table({"pair_id": pa.array([f"r{i}" for i in range(n)]),  # noqa: E731
                                                          "score": pa.array([12.5] * n, score_type)})
    partitions = [
        {"xref": _xref(["P1", "P1", "P2"]), "golden": golden(["P1", "P2"]), "history": history(0),
         "review": review(1), "evidence": pa.table({"w_id": pa.array([3.0, 4.0])})},
        {"xref": _xref(["P3", "P4", "P4", "P5", "P6"], note=pa.array(["a", None, "b", None, None])),
         "golden": golden(["P3", "P4", "P5", "P6"], lineage=pa.array(["x", "y", "z", "w"])),
         "history": history(1), "review": review(2, pa.float32()),
         "evidence": pa.table({"w_id": pa.array([None, None], pa.null())})},
        {"xref": _xref([], unused=pa.array([], pa.int8())), "golden": golden([]), "history": history(0),
         "review": review(0), "evidence": pa.table({"w_id": pa.array([], pa.float64())})},
        {"xref": _xref(["P7"]), "golden": golden(["P7"]), "history": history(0), "review": review(0),
         "evidence": pa.table({"w_id": pa.array([5.0])})},
    ]
    parts = _write_parts(tmp_path, partitions)
    merged = link_merge(parts, {"lake": str(tmp_path / "lake"), "run_id": "r1"})

    for name in OUTPUTS:
        pieces = [read_arrow(p["paths"][name]) for p in parts]
        expected = pa.concat_tables([t for t in pieces if t.num_rows] or pieces[:1], promote_options="permissive")
        written = read_arrow(merged["paths"][f"person_{name}"])
        assert written.to_pylist() == expected.to_pylist(), name
        assert written.schema.equals(expected.schema, check_metadata=True), name
    xref = read_arrow(merged["paths"]["person_xref"])
    assert xref.column_names == ["source_system", "source_record_id", "person_id", "match_rule", "match_score", "note"]
    assert xref["person_id"].to_pylist() == ["P1", "P1", "P2", "P3", "P4", "P4", "P5", "P6", "P7"]
    assert xref["note"].to_pylist() == [None, None, None, "a", None, "b", None, None, None]
    assert read_arrow(merged["paths"]["person_golden"])["lineage"].to_pylist() == [None, None, "x", "y", "z", "w", None]
    assert read_arrow(merged["paths"]["person_review"]).schema.field("score").type == pa.float64()
    assert read_arrow(merged["paths"]["person_evidence"])["w_id"].to_pylist() == [3.0, 4.0, None, None, 5.0]
    assert merged["stats"]["person"]["records"] == 9 and merged["stats"]["person"]["partitions"] == 4
    assert (merged["partition_seconds"], merged["plan_seconds"], merged["inputs_peak_rss_mb"]) == \
        ([1.5, 2.5, 3.5, 4.5], 2.0, 103)


def test_an_incremental_merge_appends_the_carried_xref_and_refuses_a_relinked_id_it_holds(tmp_path, monkeypatch):
    import pyarrow as pa
    import pytest

    import govdata.stages.link as link
    from govdata.lake import HANDOFF_SUFFIX, read_arrow, write_parquet
    from govdata.stages import OUTPUTS, link_merge

    monkeypatch.setattr(link, "MERGE_BATCH_ROWS", 2)
    empty = {name: pa.table({"x": pa.array([], pa.string())}) for name in OUTPUTS[1:]}
    carried = _xref(["P8", "P8", "P9"])
    carried = carried.set_column(2, "person_id", carried["person_id"].cast(pa.large_string()))
    plan = {"mode": "incremental", "records": 6, "model": {"m": {}, "u": {}, "source": "ecm"},
            "carried_path": write_parquet(carried, str(tmp_path / f"person_carried_xref{HANDOFF_SUFFIX}"))}
    parts = _write_parts(tmp_path, [{"xref": _xref(["P1"]), **empty}, {"xref": _xref(["P2", "P3"]), **empty}], plan=plan)
    merged = link_merge(parts, {"lake": str(tmp_path / "lake"), "run_id": "r2"})
    xref = read_arrow(merged["paths"]["person_xref"])
    assert xref["person_id"].to_pylist() == ["P1", "P2", "P3", "P8", "P8", "P9"]
    assert xref.schema.field("person_id").type == pa.string()   # the carried rows as the first partition's
    assert merged["relinked_inputs"] == {"person": ["input/person_0", "input/person_1"]}
    assert {k: merged["stats"]["person"][k] for k in ("mode", "records_relinked", "records_carried")} == \
        {"mode": "incremental", "records_relinked": 3, "records_carried": 3}

    clash = _xref(["P8", "P3", "P2", "P3"])
    plan["carried_path"] = write_parquet(clash, str(tmp_path / f"person_clash_xref{HANDOFF_SUFFIX}"))
    with pytest.raises(RuntimeError, match="person: 2 relinked master id"):
        link_merge(parts, {"lake": str(tmp_path / "lake"), "run_id": "r3"})
