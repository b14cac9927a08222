import os
import stat

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
import pytest

from govdata import lake
from govdata.lake import (HANDOFF_SUFFIX, PII_KEY_ID, LakeKeyMissing, LakeKms, encrypted_columns, open_writer, read_arrow,
                          read_parquet, write_parquet)
from govdata.settings import InsecureKeyFile, get_settings

ID, PHONE = "11010519491231002X", "13912345678"


@pytest.fixture(autouse=True)
def key_home(tmp_path, monkeypatch):
    """A key file of the test's own (no GOVDATA_TOKEN_KEY from the environment)."""
    for name in ("GOVDATA_TOKEN_KEY", "GOVDATA_TOKEN_KEY_PREVIOUS", "GOVDATA_KEY_FILE", "GOVDATA_LAKE_KMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVDATA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_hand_offs_round_trip_and_outputs_stay_parquet(tmp_path):
    frame = pd.DataFrame({"source_record_id": ["1", "2", None], "score": [1.5, None, 3.0]})
    hand_off = write_parquet(frame, str(tmp_path / f"part{HANDOFF_SUFFIX}"))
    ipc = write_parquet(frame, str(tmp_path / "part.arrow"))
    parquet = write_parquet(frame, str(tmp_path / "out.parquet"))
    assert open(ipc, "rb").read(6) == b"ARROW1"
    assert open(hand_off, "rb").read(4) == b"PAR1" and open(parquet, "rb").read(4) == b"PAR1"
    assert pq.ParquetFile(hand_off).metadata.row_group(0).column(0).compression == "UNCOMPRESSED"
    for path in (hand_off, ipc, parquet):
        pd.testing.assert_frame_equal(read_parquet(path), frame)
        assert read_arrow(path, columns=["score"]).column_names == ["score"]
    strings = read_parquet(hand_off, arrow_strings=True)["source_record_id"]
    assert strings.dtype == pd.StringDtype("pyarrow") and strings.isna().tolist() == [False, False, True]


def test_an_empty_hand_off_keeps_its_schema(tmp_path):
    empty = pa.table({"person_id": pa.array([], pa.large_string()), "id_number": pa.array([], pa.string())})
    path = write_parquet(empty, str(tmp_path / f"empty{HANDOFF_SUFFIX}"))
    assert read_arrow(path).schema == empty.schema and read_arrow(path).num_rows == 0


def test_pii_columns_are_encrypted_and_read_back_with_the_key(tmp_path):
    frame = pd.DataFrame({"source_record_id": ["1", "2"], "id_number": [ID, None], "phone": [PHONE, PHONE],
                          "name": ["张三", "李四"]})
    path = write_parquet(frame, str(tmp_path / "std" / "gongan.parquet"))
    data = open(path, "rb").read()
    assert data[:4] == b"PARE" and ID.encode() not in data and PHONE.encode() not in data
    with pytest.raises(OSError, match="no decryption found"):
        pq.read_table(path)   # a reader without the key gets nothing, not even the schema
    pd.testing.assert_frame_equal(read_parquet(path), frame)
    assert read_parquet(path, columns=["phone"])["phone"].tolist() == [PHONE, PHONE]


def test_which_columns_the_lake_encrypts():
    std = pa.schema([(n, pa.string()) for n in ("source_record_id", "id_number", "name", "phone", "address",
                                                "legal_rep_id_number", "applicant_id_number", "holder_id_number",
                                                "id_number_status")])
    assert encrypted_columns(std) == ["id_number", "phone", "address", "legal_rep_id_number",
                                      "applicant_id_number", "holder_id_number"]
    raw = pa.schema([(n, pa.string()) for n in ("RKBH", "SFZHM", "XM", "_source_record_id", "_row_hash")])
    assert encrypted_columns(raw) == ["RKBH", "SFZHM", "XM"]
    assert encrypted_columns(pa.schema([("person_id", pa.string()), ("match_rule", pa.string())])) == []


def test_only_the_pii_columns_need_the_pii_key(tmp_path):
    """Column-level encryption: a KMS that unwraps the footer key but refuses the PII key reads
    the other columns and fails on the identifier."""
    path = write_parquet(pd.DataFrame({"id_number": [ID], "name": ["张三"]}), str(tmp_path / "golden.parquet"))

    class FooterOnly(LakeKms):
        def unwrap_key(self, wrapped_key, master_key_identifier):
            if master_key_identifier == PII_KEY_ID:
                raise PermissionError("no PII key for this reader")
            return super().unwrap_key(wrapped_key, master_key_identifier)

    roots = lake.lake_root_keys()
    factory = pe.CryptoFactory(lambda config: FooterOnly(roots))
    props = factory.file_decryption_properties(pe.KmsConnectionConfig(key_access_token="footer-only"),
                                               pe.DecryptionConfiguration())
    assert pq.read_table(path, columns=["name"], decryption_properties=props).column(0).to_pylist() == ["张三"]
    with pytest.raises(OSError, match="no PII key"):
        pq.read_table(path, columns=["id_number"], decryption_properties=props)


def test_streamed_raw_extract_is_encrypted_and_private(tmp_path):
    schema = pa.schema([(n, pa.string()) for n in ("SFZH", "LXDH", "_source_record_id", "_row_hash")])
    writer, fh = open_writer(str(tmp_path / "raw" / "gongan.parquet"), schema)
    writer.write_table(pa.table({"SFZH": [ID], "LXDH": [PHONE], "_source_record_id": ["1"], "_row_hash": ["h"]}))
    writer.close()
    fh.close()
    path = tmp_path / "raw" / "gongan.parquet"
    assert _mode(path) == 0o600 and _mode(tmp_path / "raw") == 0o700
    assert ID.encode() not in path.read_bytes() and PHONE.encode() not in path.read_bytes()
    assert read_arrow(str(path)).to_pylist() == [{"SFZH": ID, "LXDH": PHONE, "_source_record_id": "1", "_row_hash": "h"}]


def test_arrow_ipc_refuses_personal_data(tmp_path):
    with pytest.raises(ValueError, match=r"Arrow IPC cannot be encrypted .*\(id_number\); write \.handoff\.parquet"):
        write_parquet(pd.DataFrame({"id_number": [ID]}), str(tmp_path / "person_0.arrow"))


def test_files_0600_in_0700_folders_whatever_the_umask_was(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_parquet(pd.DataFrame({"x": [1]}), str(tmp_path / "lake" / "run" / "dq" / "dq.parquet"))
        assert os.umask(0o022) == 0o077   # the lake set govdata's umask for the process
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert [_mode(tmp_path / p) for p in ("lake", "lake/run", "lake/run/dq")] == [0o700, 0o700, 0o700]


def test_files_written_before_a_key_rotation_stay_readable_with_the_previous_key(tmp_path, monkeypatch):
    old_key, new_key = "11" * 32, "22" * 32
    monkeypatch.setenv("GOVDATA_TOKEN_KEY", old_key)
    path = write_parquet(pd.DataFrame({"id_number": [ID]}), str(tmp_path / "current.parquet"))
    monkeypatch.setenv("GOVDATA_TOKEN_KEY", new_key)
    monkeypatch.setenv("GOVDATA_TOKEN_KEY_PREVIOUS", old_key)
    assert read_parquet(path)["id_number"].tolist() == [ID]
    monkeypatch.setenv("GOVDATA_TOKEN_KEY_PREVIOUS", "")
    with pytest.raises(LakeKeyMissing, match=r"lake file encrypted under key [0-9a-f]{12}, which this installation does not hold"):
        read_parquet(path)


def test_env_kms_backend_uses_the_deployment_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVDATA_LAKE_KMS", "env")
    monkeypatch.delenv("GOVDATA_LAKE_KEY", raising=False)
    with pytest.raises(RuntimeError, match="GOVDATA_LAKE_KMS=env but GOVDATA_LAKE_KEY"):
        write_parquet(pd.DataFrame({"id_number": [ID]}), str(tmp_path / "a.parquet"))
    monkeypatch.setenv("GOVDATA_LAKE_KEY", "33" * 32)
    path = write_parquet(pd.DataFrame({"id_number": [ID]}), str(tmp_path / "a.parquet"))
    assert lake.lake_root_keys() == [bytes.fromhex("33" * 32)]
    assert read_parquet(path)["id_number"].tolist() == [ID]
    assert not (tmp_path / "home" / "govdata.key").exists()   # the env backend never makes a key file


def test_a_group_readable_key_file_stops_govdata(key_home):
    settings = get_settings()
    settings.token_key()
    assert _mode(settings.key_file) == 0o600
    os.chmod(settings.key_file, 0o644)
    with pytest.raises(InsecureKeyFile) as err:
        get_settings()
    assert str(err.value) == (f"key file {settings.key_file} is readable by other users (mode 0644); "
                              f"run: chmod 600 {settings.key_file}")


def test_iter_tables_gives_tables_of_the_rows_asked_for_across_row_groups(tmp_path):
    frame = pd.DataFrame({"id_number": [f"{i:018d}" for i in range(10)], "n": range(10)})
    path = write_parquet(frame, str(tmp_path / "t.parquet"), row_group_rows=4)   # row groups of 4, 4, 2
    assert lake.is_encrypted(path)
    assert [t.num_rows for t in lake.iter_tables(path, 3)] == [3, 3, 3, 1]
    pd.testing.assert_frame_equal(pd.concat([t.to_pandas() for t in lake.iter_tables(path, 3)], ignore_index=True),
                                  frame)
    assert [t.column_names for t in lake.iter_tables(path, 100, ["n"])] == [["n"]]
    assert lake.parquet_schema(path).names == ["id_number", "n"]
    empty = write_parquet(frame.iloc[0:0], str(tmp_path / "e.parquet"))
    assert list(lake.iter_tables(empty, 3)) == []


def test_table_writer_appends_encrypted_and_removes_an_unfinished_file(tmp_path):
    path = str(tmp_path / "w" / "t.parquet")
    with lake.TableWriter(path) as writer:
        writer.write(pa.table({"phone": [PHONE], "n": pa.array([1], pa.int64())}))
        writer.write(pa.table({"phone": pa.nulls(1, pa.string()), "n": pa.array([2], pa.int32())}))  # cast to the first
    assert lake.is_encrypted(path) and _mode(path) == 0o600 and writer.rows == 2
    assert read_parquet(path).to_dict("list") == {"phone": [PHONE, None], "n": [1, 2]}
    unfinished = tmp_path / "w" / "u.parquet"
    with pytest.raises(RuntimeError, match="stop"), lake.TableWriter(str(unfinished)) as writer:
        writer.write(pa.table({"n": [1]}))
        raise RuntimeError("stop")
    assert not unfinished.exists()
    empty = lake.TableWriter(str(tmp_path / "w" / "e.parquet"), pa.schema([("n", pa.int64())])).close()
    assert read_parquet(empty).empty and list(read_parquet(empty).columns) == ["n"]


def test_a_copied_lake_file_stays_encrypted_and_private(tmp_path):
    source = write_parquet(pd.DataFrame({"id_number": [ID]}), str(tmp_path / "a.parquet"))
    copy = lake.copy_file(source, str(tmp_path / "b" / "c.parquet"))
    assert lake.is_encrypted(copy) and _mode(copy) == 0o600 and _mode(tmp_path / "b") == 0o700
    assert read_parquet(copy)["id_number"].tolist() == [ID]


def test_read_arrow_gives_the_named_text_columns_as_dictionaries(tmp_path):
    frame = pd.DataFrame({"source_system": ["gongan", "gongan", None], "name": ["张三", "李四", "张三"]})
    for path in (write_parquet(frame, str(tmp_path / "t.parquet")), write_parquet(frame, str(tmp_path / "t.arrow"))):
        table = read_arrow(path, ["source_system", "name"], dictionary=["source_system"])
        assert pa.types.is_dictionary(table.schema.field("source_system").type), path
        assert not pa.types.is_dictionary(table.schema.field("name").type), path
        assert table["source_system"].to_pylist() == ["gongan", "gongan", None]
        assert table["name"].to_pylist() == ["张三", "李四", "张三"]
