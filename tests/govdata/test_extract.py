"""Extraction from real SQLite databases into Parquet."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from govdata.extract import SourceUnavailableError, build_query, extract_source, sqlalchemy_url
from govdata.lake import read_parquet
from govdata.standards.model import SourceConfig


def _db(tmp_path, rows):
    path = tmp_path / "dept.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE T_RK (RKBH INTEGER PRIMARY KEY, SFZHM TEXT, XM TEXT, NL INTEGER, ZHGXSJ TEXT)")
    con.executemany("INSERT INTO T_RK VALUES (?,?,?,?,?)", rows)
    con.commit()
    con.close()
    return path


def _source(path, incremental=True, **kw):
    return SourceConfig(name="gongan", department="公安", kind="person", connection=f"sqlite:///{path}",
                        table="T_RK", primary_key="RKBH", columns={"SFZHM": "id_number", "XM": "name", "NL": "age"},
                        incremental={"column": "ZHGXSJ"} if incremental else None, **kw)


ROWS = [(1, "11010519491231002X", "张三", 30, "2024-01-01 08:00:00"),
        (2, "", None, None, "2024-01-02 08:00:00"),
        (3, None, "李四", 7, "2024-01-03 08:00:00")]


def test_values_kept_as_text_exactly(tmp_path):
    src = _source(_db(tmp_path, ROWS))
    result = extract_source(src, str(tmp_path / "raw.parquet"))
    raw = read_parquet(result.path)
    assert result.rows == 3
    assert raw["_source_record_id"].tolist() == ["1", "2", "3"]
    assert raw["SFZHM"].tolist()[:2] == ["11010519491231002X", ""]  # '' stays ''
    assert raw["SFZHM"].isna().tolist() == [False, False, True]     # NULL stays NULL
    assert raw["NL"].tolist()[0] == "30" and pd.isna(raw["NL"].tolist()[1])  # no 30.0
    assert raw["_row_hash"].nunique() == 3
    assert result.watermark == "2024-01-03 08:00:00"


def test_incremental_reads_only_newer_rows(tmp_path):
    src = _source(_db(tmp_path, ROWS))
    result = extract_source(src, str(tmp_path / "raw.parquet"), watermark="2024-01-01 08:00:00")
    assert read_parquet(result.path)["RKBH"].tolist() == ["2", "3"]
    assert result.watermark == "2024-01-03 08:00:00"
    again = extract_source(src, str(tmp_path / "raw2.parquet"), watermark=result.watermark)
    assert again.rows == 0 and again.watermark == "2024-01-03 08:00:00"
    assert list(read_parquet(again.path).columns)[:3] == ["RKBH", "SFZHM", "XM"]


def test_row_hash_changes_with_the_row(tmp_path):
    first = read_parquet(extract_source(_source(_db(tmp_path, ROWS)), str(tmp_path / "a.parquet")).path)
    (tmp_path / "dept.sqlite").unlink()
    changed = [ROWS[0], (2, "", "王五", None, "2024-01-02 08:00:00"), ROWS[2]]
    second = read_parquet(extract_source(_source(_db(tmp_path, changed)), str(tmp_path / "b.parquet")).path)
    assert (first["_row_hash"] == second["_row_hash"]).tolist() == [True, False, True]


def test_missing_table_names_the_source_without_leaking_the_url(tmp_path):
    src = _source(tmp_path / "nothing.sqlite", incremental=False)
    src = SourceConfig(**{**src.__dict__, "connection": "sqlite:///" + str(tmp_path / "nothing.sqlite")})
    with pytest.raises(SourceUnavailableError, match=r"source gongan: cannot read table T_RK"):
        extract_source(src, str(tmp_path / "raw.parquet"))


def test_unreachable_server_fails_clearly(tmp_path):
    src = SourceConfig(**{**_source(tmp_path / "x").__dict__,
                          "connection": "postgresql://loader:s3cret@127.0.0.1:1/dept"})
    with pytest.raises(SourceUnavailableError) as err:
        extract_source(src, str(tmp_path / "raw.parquet"))
    assert "source gongan" in str(err.value) and "s3cret" not in str(err.value)


def test_connection_forms(monkeypatch):
    monkeypatch.setenv("DEPT_URL", "mysql://u:p@h/db")
    assert sqlalchemy_url("${DEPT_URL}") == "mysql+pymysql://u:p@h/db"
    monkeypatch.setenv("AIRFLOW_CONN_SHEBAO", "postgres://u:p@h:5432/si")
    assert sqlalchemy_url("airflow:shebao") == "postgresql+psycopg://u:p@h:5432/si"
    assert sqlalchemy_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"


def test_query_quotes_identifiers_and_filters_by_watermark(tmp_path):
    import sqlalchemy as sa

    sql, params = build_query(sa.create_engine("sqlite://"), _source(tmp_path / "x"), "2024")
    assert sql == ('SELECT "RKBH", "SFZHM", "XM", "NL", "ZHGXSJ" FROM "T_RK" WHERE "ZHGXSJ" > :watermark '
                   'ORDER BY "RKBH"')
    assert params == {"watermark": "2024"}


def _untyped_db(tmp_path, rows):
    """Columns without declared types: SQLite keeps each value's storage class as written."""
    path = tmp_path / "hostile.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE T_RK (RKBH, SFZHM, XM, NL, ZHGXSJ)")
    con.executemany("INSERT INTO T_RK VALUES (?,?,?,?,?)", rows)
    con.execute("UPDATE T_RK SET XM = CAST(X'E5BCA0FFFE' AS TEXT) WHERE RKBH = 'bad-utf8'")
    con.commit()
    con.close()
    return path


def test_hostile_values_are_decoded_never_raised(tmp_path):
    """Invalid UTF-8 stored as TEXT, BLOBs, REAL keys and codes, padded keys: the extract goes on,
    bad bytes become U+FFFD (normalise quarantines them as undecodable), integral REALs are
    integer text and keys are canonical."""
    rows = [(1.1e17, "11010519491231002X", "张三", 4.0, "2024-01-01"),
            ("bad-utf8", None, "x", 2.5, "2024-01-01"),
            ("  P7 ", None, b"\x89PNG\r\n", None, "2024-01-01"),
            ("\uff18", None, b"\xe6\x9d\x8e\xe5\x9b\x9b", 7, "2024-01-01"),
            ("   ", None, "王五", None, "2024-01-01")]
    src = _source(_untyped_db(tmp_path, rows), incremental=False)
    raw = read_parquet(extract_source(src, str(tmp_path / "raw.parquet")).path)
    by_key = raw.set_index("RKBH")
    # SQLite orders a REAL before any TEXT
    assert raw["_source_record_id"].tolist() == ["110000000000000000", None, "P7", "bad-utf8", "8"]
    assert by_key.loc["110000000000000000", "NL"] == "4"
    assert by_key.loc["bad-utf8", "XM"] == "张\ufffd\ufffd"
    assert by_key.loc["bad-utf8", "NL"] == "2.5"
    assert by_key.loc["  P7 ", "XM"] == "\ufffdPNG\r\n"
    assert by_key.loc["\uff18", "XM"] == "李四"


def test_chunk_row_hash_is_row_hashes_of_the_text_values():
    """The chunk's row hash (hashed value by value, str columns as the driver returned them) is
    exactly row_hashes over the text frame: snapshots written before compare equal."""
    import pandas as pd

    from types import SimpleNamespace

    from govdata.extract import ROW_HASH, _chunk_table, row_hashes

    rows = [(1, "张三", None, 1.0, b"\xe5\xbc\xa0", "a"), (2, None, "x", 2.5, None, "a"),
            (3, "", "y", None, b"\xff", None), (4, "李四", None, 7.0, b"", "b")]
    names = ["ID", "XM", "BZ", "JE", "RAW", "DM"]
    source = SimpleNamespace(primary_key="ID")   # all _chunk_table reads of the source
    table = _chunk_table(source, names, rows)
    text = pd.DataFrame({n: table[n].to_pylist() for n in names})
    assert table[ROW_HASH].to_pylist() == row_hashes(text).tolist()
    assert table["JE"].to_pylist() == ["1", "2.5", None, "7"]
