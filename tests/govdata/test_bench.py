"""The bench's floors: what any pipeline must do at the least, measured on real DuckDB files."""
from __future__ import annotations

from govdata.bench import warehouse_write_floor
from govdata.warehouse.connections import connect
from govdata.warehouse.ddl import init_warehouse


def test_the_write_floor_writes_every_row_of_the_warehouse_and_the_vault_and_leaves_no_file(tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    init_warehouse(url)
    with connect(url, vault=True) as db:
        db.execute("INSERT INTO xref_person (source_system, source_record_id, person_id) "
                   "VALUES ('gongan', '1', 'P1'), ('shebao', '7', 'P1'), ('minzheng', '2', 'P2')")
        db.execute("INSERT INTO vault.vault_person (person_id, person_token, id_number_enc) "
                   "VALUES ('P1', 't1', '\\x01'::BLOB), ('P2', 't2', '\\x02'::BLOB)")
    floor = warehouse_write_floor(url, tmp_path / "floor")

    assert floor["load_write_floor_rows"] == 5
    assert floor["load_write_floor_seconds"] >= 0
    assert not (tmp_path / "floor").exists()   # the copies of tokens and ciphertexts are removed


def test_the_write_floor_is_measured_on_a_duckdb_warehouse_only(tmp_path):
    assert warehouse_write_floor("postgresql://govdata@localhost/warehouse", tmp_path / "floor") == {}
    assert not (tmp_path / "floor").exists()


def test_a_verdict_names_the_floor_that_already_misses_its_target():
    from govdata.bench import verdicts

    assert verdicts({"load_seconds": 159.2, "load_write_floor_seconds": 37.7})["load_seconds"] == \
        "short of <= 30 (out of reach here: the floor alone, load_write_floor_seconds, is 37.7)"
    assert verdicts({"load_seconds": 31.0, "load_write_floor_seconds": 7.3})["load_seconds"] == "short of <= 30"
    assert verdicts({"load_seconds": 28.6, "load_write_floor_seconds": 7.3})["load_seconds"] == "met"
    assert verdicts({"load_seconds": 40.0})["load_seconds"] == "short of <= 30"


def test_the_incremental_and_full_xrefs_are_compared_from_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from govdata.bench import _xref_differences

    def xref(name, persons, rules, ids=("a", "b", "c")):
        pq.write_table(pa.table({"source_system": ["gongan"] * len(ids), "source_record_id": list(ids),
                                 "person_id": persons, "match_rule": rules}), tmp_path / name)
        return str(tmp_path / name)

    inc = xref("inc.parquet", ["P1", "P1", "P2"], ["id", None, "prob"])
    full = xref("full.parquet", ["P1", "P2", "P2"], ["id", None, "id"])
    assert _xref_differences(inc, full) == {"incremental_vs_full_records_with_other_person_id": 1,
                                            "incremental_vs_full_records_with_other_rule": 1}
    other = xref("other.parquet", ["P1", "P1"], ["id", "id"], ids=("a", "z"))
    assert set(_xref_differences(inc, other).values()) == {"row sets differ"}
