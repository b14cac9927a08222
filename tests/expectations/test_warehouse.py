from __future__ import annotations

import duckdb
import pytest
import sqlalchemy as sa
from govdata.expectations.warehouse import validate_warehouse

TABLES = """
CREATE TABLE dim_person (person_id VARCHAR, name VARCHAR);
CREATE TABLE dim_enterprise (enterprise_id VARCHAR, name VARCHAR);
CREATE TABLE xref_person (source_system VARCHAR, source_record_id VARCHAR, person_id VARCHAR);
CREATE TABLE xref_enterprise (source_system VARCHAR, source_record_id VARCHAR, enterprise_id VARCHAR);
INSERT INTO dim_person VALUES ('P000000000001', '张三'), ('P000000000002', '李四');
INSERT INTO dim_enterprise VALUES ('E000000000001', '某某公司');
INSERT INTO xref_person VALUES ('gongan', '1', 'P000000000001'), ('shebao', '9', 'P000000000002');
INSERT INTO xref_enterprise VALUES ('shichang', 'A', 'E000000000001');
"""
# A dangling xref (P…9 is not in dim_person) and a duplicated source record.
BROKEN = """
INSERT INTO xref_person VALUES ('minzheng', '7', 'P000000000009'), ('gongan', '1', 'P000000000002');
"""

EXPECTED_ORDER = [
    ("expect_column_values_to_be_unique", "dim_person.person_id"),
    ("expect_column_values_to_be_unique", "dim_enterprise.enterprise_id"),
    ("expect_compound_columns_to_be_unique", "xref_person.(source_system, source_record_id)"),
    ("expect_compound_columns_to_be_unique", "xref_enterprise.(source_system, source_record_id)"),
    ("unexpected_rows_expectation", "xref_person.person_id -> dim_person.person_id"),
    ("unexpected_rows_expectation", "xref_enterprise.enterprise_id -> dim_enterprise.enterprise_id"),
]


def rows(outcome) -> list[tuple]:
    r = outcome.results
    return list(zip(r["expectation"], r["element"], r["success"], r["unexpected_count"], r["element_count"]))


def duckdb_warehouse(path, *scripts: str) -> str:
    con = duckdb.connect(str(path))
    for script in scripts:
        con.execute(script)
    con.close()
    return f"duckdb:///{path}"


def test_clean_duckdb_warehouse_passes(tmp_path):
    url = duckdb_warehouse(tmp_path / "wh.duckdb", TABLES)
    outcome = validate_warehouse(url, "run-1")
    assert [(e, el) for e, el, *_ in rows(outcome)] == EXPECTED_ORDER
    assert outcome.results["success"].all()
    assert outcome.critical_failed is False and outcome.failures == []
    assert set(outcome.results["source_system"]) == {"warehouse"}


# validate_warehouse rows on TABLES + BROKEN, whichever backend runs the checks
BROKEN_RESULTS = [
    ("expect_column_values_to_be_unique", "dim_person.person_id", True, 0, 2),
    ("expect_column_values_to_be_unique", "dim_enterprise.enterprise_id", True, 0, 1),
    ("expect_compound_columns_to_be_unique", "xref_person.(source_system, source_record_id)", False, 2, 4),
    ("expect_compound_columns_to_be_unique", "xref_enterprise.(source_system, source_record_id)", True, 0, 1),
    ("unexpected_rows_expectation", "xref_person.person_id -> dim_person.person_id", False, 1, 4),
    ("unexpected_rows_expectation", "xref_enterprise.enterprise_id -> dim_enterprise.enterprise_id", True, 0, 1),
]


def test_dangling_xref_and_duplicate_key_on_duckdb(tmp_path):
    url = duckdb_warehouse(tmp_path / "wh.duckdb", TABLES, BROKEN)
    outcome = validate_warehouse(url, "run-2")
    assert rows(outcome) == BROKEN_RESULTS
    assert outcome.critical_failed is True
    assert outcome.failures == [
        ("[critical] warehouse warehouse: xref_person.(source_system, source_record_id) "
         "expect_compound_columns_to_be_unique failed (2 of 4 rows unexpected)"),
        ("[critical] warehouse warehouse: xref_person.person_id -> dim_person.person_id "
         "unexpected_rows_expectation failed (1 of 4 rows unexpected)"),
    ]


def test_missing_table_is_named(tmp_path):
    url = duckdb_warehouse(tmp_path / "wh.duckdb", "CREATE TABLE dim_person (person_id VARCHAR)")
    with pytest.raises(ValueError, match=r"lacks tables \['dim_enterprise', 'xref_enterprise', 'xref_person'\]"):
        validate_warehouse(url, "run-3")


@pytest.mark.postgres
def test_dangling_xref_on_postgres_through_gx(postgres_url):
    from tests.servers import fresh_database

    url = fresh_database(postgres_url, "dq_wh_test")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in (TABLES + BROKEN).replace("VARCHAR", "TEXT").split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))
    engine.dispose()
    outcome = validate_warehouse(url, "run-4")
    assert rows(outcome) == BROKEN_RESULTS
    assert outcome.critical_failed is True


def test_dangling_xref_on_the_real_warehouse_schema(tmp_path):
    from govdata.warehouse.load import init_warehouse

    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    init_warehouse(url)
    duckdb_warehouse(tmp_path / "wh.duckdb", """
        INSERT INTO dim_person (person_id, name) VALUES ('P000000000001', '张三');
        INSERT INTO xref_person (source_system, source_record_id, person_id, match_rule)
        VALUES ('gongan', '1', 'P000000000001', 'id'), ('shebao', '2', 'P0000000000ff', 'id');
    """)
    outcome = validate_warehouse(url, "run-5")
    failed = outcome.results[~outcome.results["success"]]
    assert list(zip(failed["element"], failed["unexpected_count"], failed["element_count"])) == [
        ("xref_person.person_id -> dim_person.person_id", 1, 2)]
    assert outcome.critical_failed is True
