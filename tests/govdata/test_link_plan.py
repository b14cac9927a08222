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
