"""link_plan's records read back from the lake: by columns, by a mask's rows, a chunk at a time."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from govdata.lake import write_parquet
from govdata.stages.link_records import LakeRecords


@pytest.fixture(autouse=True)
def key_home(tmp_path, monkeypatch):
    for name in ("GOVDATA_TOKEN_KEY", "GOVDATA_TOKEN_KEY_PREVIOUS", "GOVDATA_KEY_FILE", "GOVDATA_LAKE_KMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVDATA_HOME", str(tmp_path / "home"))


def two_sources(tmp_path) -> LakeRecords:
    """gongan's file has phones, shebao's has none and a column link_plan does not read."""
    gongan = pa.table({"source_system": ["gongan"] * 3, "source_record_id": ["g1", "g2", "g3"],
                       "id_number": ["11010519491231002X", None, "110105194912310037"],
                       "phone": ["13900000001", "13900000002", "13900000001"]})
    shebao = pa.table({"source_system": ["shebao"] * 2, "source_record_id": ["s1", "s2"],
                       "id_number": [None, "11010519491231002X"], "payload": ["x", "y"]})
    return LakeRecords([write_parquet(gongan, str(tmp_path / "gongan.parquet")),
                        write_parquet(shebao, str(tmp_path / "shebao.parquet"))])


def test_the_lake_files_read_as_one_table_of_the_plans_columns(tmp_path):
    records = two_sources(tmp_path)
    assert records.num_rows == 5
    assert records.column_names == ["source_system", "source_record_id", "id_number", "phone"]   # no payload
    table = records.read(["source_record_id", "phone"])
    assert table.column_names == ["source_record_id", "phone"]
    assert table["phone"].to_pylist() == ["13900000001", "13900000002", "13900000001", None, None]
    assert pa.types.is_dictionary(table["phone"].type)   # text the plan reads as dictionaries, one for all files
    assert table["phone"].num_chunks == 2 and table["phone"].chunk(0).dictionary.equals(table["phone"].chunk(1).dictionary)


def test_a_mask_reads_its_records_with_their_counts_in_chunks_across_files(tmp_path, monkeypatch):
    import govdata.stages.link_records as link_records

    monkeypatch.setattr(link_records, "READ_BATCH_ROWS", 2)
    records = two_sources(tmp_path).with_counts({"phone_persons": np.array([2, 1, 2, 1, 1])})
    assert records.column_names[-1] == "phone_persons"
    rows = np.array([True, False, True, True, True])
    table = records.read(["source_record_id", "phone_persons"], rows)
    assert table.to_pydict() == {"source_record_id": ["g1", "g3", "s1", "s2"], "phone_persons": [2, 2, 1, 1]}
    chunks = list(records.chunks(rows, ["source_record_id", "phone", "phone_persons"], 3))
    assert [c.num_rows for c in chunks] == [3, 1]   # the first chunk spans both files
    assert chunks[0].to_pydict() == {"source_record_id": ["g1", "g3", "s1"], "phone": ["13900000001", "13900000001", None],
                                     "phone_persons": [2, 2, 1]}
    assert chunks[1]["source_record_id"].to_pylist() == ["s2"]
    assert records.read(["id_number"], np.zeros(5, dtype=bool)).num_rows == 0
    with pytest.raises(ValueError, match="a mask of 2 rows for 5 records"):
        records.read(None, np.ones(2, dtype=bool))


def test_a_column_no_file_holds_reads_as_no_column_of_every_record(tmp_path):
    table = two_sources(tmp_path).read(["name_latin"])
    assert (table.num_rows, table.column_names) == (5, [])
