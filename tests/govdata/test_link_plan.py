"""link_plan streams records into their partitions: the same partitions, rows and order as
splitting every record held in memory at once."""
import pandas as pd
import pyarrow as pa
import pytest

from govdata.lake import read_arrow, write_parquet
from govdata.stages import link as link_stage


def _sources(tmp_path) -> list[dict]:
    gongan = pd.DataFrame({
        "source_system": ["gongan"] * 5, "source_record_id": list("abcde"),
        "id_number": ["110105199001010011", None, "110105199101010022", None, "110105199201010033"],
        "id_number_status": ["valid", None, "valid", None, "valid"],
        "name": ["张三", "李四", "王五", "赵六", "孙七"], "name_pinyin": ["zhangsan", "lisi", "wangwu", "zhaoliu", "sunqi"],
        "birth_date": pd.to_datetime(["1990-01-01", "1991-03-04", None, None, "1992-01-01"]),
        "sex": ["1", "2", "1", None, "2"], "phone": ["13800000001", "13800000001", None, "13800000002", None],
        "address": ["甲路1号", "甲路1号", None, "乙路2号", None], "kind": ["person"] * 5,
        "only_here": ["x", "y", "z", "w", "v"]})
    weijian = pd.DataFrame({
        "source_system": ["weijian"] * 4, "source_record_id": ["1", "2", "3", "4"],
        "id_number": [None, "110105199101010022", None, None], "id_number_status": [None, "valid", None, None],
        "name": ["李四", "王五", "赵六", "周八"], "name_pinyin": ["lisi", "wangwu", "zhaoliu", "zhouba"],
        "birth_date": pd.to_datetime(["1991-03-04", "1991-01-01", None, "1993-05-05"]),
        "sex": ["2", "1", None, "1"], "phone": ["13800000001", None, "13800000002", None],
        "address": [None, None, "乙路2号", "丙路3号"], "kind": ["person"] * 4})
    out = []
    for frame in (gongan, weijian):
        name = frame["source_system"].iloc[0]
        out.append({"source": name, "kind": "person",
                    "current_path": write_parquet(frame, str(tmp_path / "current" / f"{name}.parquet"))})
    return out


def _in_memory_split(normalised: list[dict], n: int) -> dict[int, pa.Table]:
    """The plan as it was: every record concatenated whole, then split."""
    from govdata.transforms.linkage.plan import _split_by_partition, assign_partitions
    from govdata.transforms.linkage.shared_values import with_shared_counts

    records = with_shared_counts(pa.concat_tables([read_arrow(s["current_path"]) for s in normalised],
                                                  promote_options="permissive"))
    return _split_by_partition(records, assign_partitions(records, n, None))


@pytest.mark.parametrize("batch_rows", [2, 1000])
def test_streamed_partitions_equal_the_in_memory_split(tmp_path, monkeypatch, batch_rows):
    normalised = _sources(tmp_path)
    monkeypatch.setattr(link_stage, "PLAN_BATCH_ROWS", batch_rows)
    monkeypatch.setenv("GOVDATA_LINK_PARTITION_ROWS", "3")    # 9 records: 3 partitions
    run = {"lake": str(tmp_path / "lake"), "run_id": "r1", "warehouse_url": f"duckdb:///{tmp_path / 'none.duckdb'}",
           "full_refresh": True}
    planned = link_stage.link_plan(normalised, run)["partitions"]
    expected = _in_memory_split(normalised, 3)
    assert {p["partition"]: p["rows"] for p in planned} == {p: t.num_rows for p, t in expected.items()}
    for p in planned:
        got = read_arrow(p["path"])
        assert got.schema.names == expected[p["partition"]].schema.names
        assert got.to_pylist() == expected[p["partition"]].to_pylist()
    assert sum(p["rows"] for p in planned) == 9 and len(planned) == len(expected) > 1
    assert "only_here" in read_arrow(planned[0]["path"]).column_names   # every column travels, null where absent


def test_plan_reads_repeating_text_as_dictionaries_and_identifiers_as_text():
    from govdata.transforms.linkage.plan import plan_dictionary

    schema = pa.schema([("source_system", pa.string()), ("id_number", pa.string()), ("phone", pa.large_string()),
                        ("name_pinyin", pa.large_string()), ("birth_date", pa.date32()), ("sex", pa.string())])
    assert plan_dictionary(schema, ["source_system", "id_number", "phone", "name_pinyin", "birth_date", "sex"]) \
        == ["source_system", "phone", "name_pinyin", "sex"]
    assert plan_dictionary(schema, ["id_number", "birth_date"]) == []


def test_unified_dictionaries_give_one_dictionary_and_the_same_codes():
    """A phone read as one dictionary per row group, then unified: every chunk refers to one
    dictionary holding each phone once, and the value codes group the records as before."""
    from govdata.transforms.linkage.partition import _one_dictionary, value_codes
    from govdata.transforms.linkage.plan import unified_dictionaries

    chunks = [["138", "139", None], ["139", "137", "138"], ["137"]]
    table = pa.table({"phone": pa.chunked_array([pa.array(c).dictionary_encode() for c in chunks]),
                      "sex": pa.array(["1", "2", "1", "2", "1", "2", "1"])})
    before = value_codes(table, "phone")
    after = unified_dictionaries(table)
    assert not _one_dictionary(table["phone"]) and _one_dictionary(after["phone"])
    assert after["phone"].chunk(2).dictionary.to_pylist() == ["138", "139", "137"]
    assert value_codes(after, "phone").tolist() == before.tolist() == [0, 1, -1, 1, 2, 0, 2]
    assert after["sex"].equals(table["sex"])   # not a dictionary: untouched


def test_rows_by_partition_keeps_each_partitions_rows_in_order_and_leaves_out_none():
    import numpy as np

    from govdata.transforms.linkage.plan import rows_by_partition

    got = rows_by_partition(np.array([2, -1, 0, 2, 0, -1, 1], dtype=np.int64))
    assert {p: rows.tolist() for p, rows in got.items()} == {0: [2, 4], 1: [6], 2: [0, 3]}
    assert rows_by_partition(np.array([-1, -1], dtype=np.int64)) == {}


@pytest.mark.parametrize("batch_rows", [2, 1000])
def test_a_files_rows_handed_off_by_partition_keep_their_order_and_every_partition_gets_a_file(
        tmp_path, monkeypatch, batch_rows):
    import numpy as np
    import pyarrow.parquet as pq

    monkeypatch.setattr(link_stage, "HAND_OFF_TAKE_ROWS", batch_rows)
    xref = pa.table({"source_system": ["gongan"] * 5, "source_record_id": list("abcde"),
                     "person_id": ["P1", "P1", "P2", "P3", "P3"]})
    pq.write_table(xref, tmp_path / "previous.parquet", row_group_size=2)
    run = {"lake": str(tmp_path / "lake"), "run_id": "r1"}
    got = link_stage._hand_off_file_partitions(run, str(tmp_path / "previous.parquet"),
                                               np.array([1, -1, 0, 1, 1], dtype=np.int64),
                                               {p: f"person_{p}_previous_xref" for p in (0, 1, 2)})
    ids = {p: [r["source_record_id"] for r in read_arrow(path).to_pylist()] for p, path in got.items()}
    assert ids == {0: ["c"], 1: ["a", "d", "e"], 2: []}   # b: in no partition
    assert read_arrow(got[2]).schema == xref.schema


@pytest.mark.parametrize("batch_rows", [2, 1000])
def test_rows_handed_off_from_a_file_are_those_rows_in_file_order_a_batch_at_a_time(tmp_path, monkeypatch,
                                                                                    batch_rows):
    import numpy as np
    import pyarrow.parquet as pq

    monkeypatch.setattr(link_stage, "HAND_OFF_TAKE_ROWS", batch_rows)
    xref = pa.table({"source_system": ["gongan"] * 5, "source_record_id": list("abcde"),
                     "person_id": ["P1", "P1", "P2", "P3", "P3"], "match_score": [1.0, 0.5, None, 0.9, 0.9]})
    pq.write_table(xref, tmp_path / "previous.parquet", row_group_size=2)
    run = {"lake": str(tmp_path / "lake"), "run_id": "r1"}
    path = link_stage._hand_off_file_rows(run, str(tmp_path / "previous.parquet"),
                                          np.array([4, 0, 3], dtype=np.int64), "person_carried_xref")
    assert read_arrow(path).to_pylist() == [xref.to_pylist()[i] for i in (0, 3, 4)]
    none = link_stage._hand_off_file_rows(run, str(tmp_path / "previous.parquet"), link_stage.NO_ROWS,
                                          "enterprise_carried_xref")
    assert read_arrow(none).num_rows == 0 and read_arrow(none).schema == xref.schema


def test_an_incremental_scope_past_the_share_links_everything():
    import numpy as np

    from govdata.stages.link_inputs import INCREMENTAL_MAX_SHARE, _too_wide

    assert INCREMENTAL_MAX_SHARE == 0.5
    assert _too_wide(np.array([True, True, True, False]), "person")
    assert not _too_wide(np.array([True, True, False, False]), "person")   # half is not past it
    assert not _too_wide(np.zeros(3, dtype=bool), "enterprise")


@pytest.mark.parametrize("batch_rows", [7_000, 1_000_000])
def test_value_hashes_are_equal_for_equal_values_in_row_order_and_minus_one_for_null(monkeypatch, batch_rows):
    from govdata.transforms.linkage import plan
    from govdata.transforms.linkage.plan import value_hashes

    monkeypatch.setattr(plan, "HASH_BATCH_ROWS", batch_rows)   # handed over in many batches, or one
    ids = ["P1", None, "P2", "P1", "P3", None] * 50_000   # several Arrow chunks' worth: order must hold
    hashes = value_hashes(pa.table({"m": pa.chunked_array([ids[:150_000], ids[150_000:]])}), "m")
    assert hashes.dtype == "int64" and len(hashes) == len(ids)
    assert (hashes[1::6] == -1).all() and (hashes[5::6] == -1).all()
    assert (hashes[0::6] == hashes[0]).all() and (hashes[3::6] == hashes[0]).all()
    assert len({int(hashes[0]), int(hashes[2]), int(hashes[4])}) == 3 and min(hashes[0], hashes[2], hashes[4]) >= 0


def _keys(systems, ids, dictionary=False):
    system = pa.array(systems)
    return pa.table({"source_system": system.dictionary_encode() if dictionary else system,
                     "source_record_id": pa.array(ids)})


def test_key_positions_finds_each_records_row_and_minus_one_where_none():
    from govdata.transforms.linkage.plan import key_positions

    records = _keys(["gongan", "shebao", "gongan", "weijian"], ["1", "1", "2", "9"], dictionary=True)
    previous = _keys(["gongan", "gongan", "shebao", "minzheng"], ["2", "1", "1", "1"])
    assert key_positions(records, previous).tolist() == [1, 2, 0, -1]
    assert key_positions(records, previous.slice(0, 0)).tolist() == [-1, -1, -1, -1]
    assert key_positions(records.slice(0, 0), previous).tolist() == []


def test_key_positions_falls_back_to_the_exact_join_when_hashes_collide_or_a_key_repeats(monkeypatch):
    import numpy as np

    from govdata.transforms.linkage import plan

    records = _keys(["gongan", "shebao", "gongan"], ["1", "1", "2"])
    previous = _keys(["gongan", "shebao", "gongan"], ["2", "1", "1"])
    # hashes that send a record to another key's row: the check on the keys themselves catches it
    wrong = {id(records): [1, 0, 2], id(previous): [0, 1, 2]}
    monkeypatch.setattr(plan, "key_hashes", lambda table: np.array(wrong[id(table)], dtype=np.uint64))
    assert plan.key_positions(records, previous).tolist() == [2, 1, 0]
    # one hash for two keys of the previous rows: the search could miss a record's row
    monkeypatch.setattr(plan, "key_hashes", lambda table: np.zeros(table.num_rows, dtype=np.uint64))
    assert plan.key_positions(records, previous).tolist() == [2, 1, 0]
    monkeypatch.undo()
    repeated = _keys(["gongan", "gongan", "shebao"], ["1", "1", "1"])   # as the join: the last row wins
    assert plan.key_positions(records, repeated).tolist() == plan._joined_key_positions(records, repeated).tolist()
    assert plan.key_positions(records, repeated).tolist()[1:] == [2, -1]
