"""Mart contracts (warehouse/marts/<mart>.yml): parsing, each test's failing-row count on a real
DuckDB (and PostgreSQL), and every shipped contract matching its mart."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
import yaml
from govdata.warehouse.mart_checks import (
    MARTS_DIR,
    MartContractError,
    failing_counts,
    load_contracts,
    run_mart_tests,
)

MART = """SELECT * FROM (VALUES
    ('a', 'window', 1, 0.5, 'p1'),
    ('a', 'window', 2, 1.5, 'p9'),
    ('b', 'fax',    NULL, 0.0, NULL),
    ('c', 'web',    4, NULL, 'p1')) AS t(item, channel, n, share, person_id)"""


def contract(**model) -> dict:
    base = {"name": "mart_demo", "description": "a demo mart",
            "columns": [{"name": c, "description": c} for c in ("item", "channel", "n", "share", "person_id")]}
    base.update(model)
    return {"version": 2, "models": [base]}


def with_tests(**tests) -> dict:
    """contract() with data_tests on the named columns."""
    spec = contract()
    for col in spec["models"][0]["columns"]:
        if col["name"] in tests:
            col["data_tests"] = tests[col["name"]]
    return spec


def write(folder: Path, spec: dict, sql: str = MART) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "mart_demo.sql").write_text(sql, encoding="utf-8")
    (folder / "mart_demo.yml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return folder


@pytest.fixture
def warehouse(tmp_path) -> str:
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute(f"CREATE VIEW mart_demo AS {MART}")
        db.execute("CREATE TABLE dim_person AS SELECT 'p1' AS person_id")
    return f"duckdb:///{path}"


def failing(url: str, folder: Path) -> dict[str, int | None]:
    out = run_mart_tests(url, "r1", folder).results
    return {f"{r.element} {r.expectation}": (None if r.unexpected_count is None or
                                              str(r.unexpected_count) == "<NA>" else int(r.unexpected_count))
            for r in out.itertuples() if not r.success}


def test_each_test_counts_its_failing_rows(warehouse, tmp_path):
    spec = with_tests(
        item=["not_null", "unique"],
        channel=[{"accepted_values": {"code_table": "channel"}}],
        n=["not_null", {"accepted_range": {"min_value": 1, "max_value": 3}}],
        share=[{"accepted_range": {"min_value": 0, "max_value": 1}}],
        person_id=[{"relationships": {"to": "dim_person", "field": "person_id"}}])
    spec["models"][0]["data_tests"] = [
        {"unique_combination_of_columns": {"combination_of_columns": ["item", "channel"]}}]
    assert failing(warehouse, write(tmp_path / "m", spec)) == {
        "mart_demo.item unique": 1,                           # 'a' twice
        "mart_demo.channel accepted_values": 1,               # fax is no channel code
        "mart_demo.n not_null": 1,
        "mart_demo.n accepted_range": 1,                      # 4 > 3; NULL passes a range
        "mart_demo.share accepted_range": 1,                  # 1.5
        "mart_demo.person_id relationships": 1,               # p9 not in dim_person
        "mart_demo unique_combination_of_columns": 1,         # ('a', 'window') twice
    }


def test_expression_is_true_counts_rows_where_it_is_false(warehouse, tmp_path):
    spec = contract(data_tests=[{"expression_is_true": {"expression": "share < 1"}}])
    # share 1.5 fails; share NULL makes the expression unknown, which dbt counts as passing
    assert failing(warehouse, write(tmp_path / "m", spec)) == {"mart_demo expression_is_true": 1}


def test_columns_are_the_contract(warehouse, tmp_path):
    spec = contract()
    spec["models"][0]["columns"] = spec["models"][0]["columns"][:4] + [{"name": "extra", "description": "x"}]
    results = run_mart_tests(warehouse, "r1", write(tmp_path / "m", spec)).results
    row = results[results.expectation == "contract_columns"].iloc[0]
    assert (bool(row.success), row.observed_value) == (False, "undeclared ['person_id'], missing ['extra']")


def test_a_test_the_database_cannot_run_fails_with_its_first_line(warehouse, tmp_path):
    spec = with_tests(item=[{"relationships": {"to": "dim_nowhere", "field": "id"}}], n=["not_null"])
    out = run_mart_tests(warehouse, "r1", write(tmp_path / "m", spec))
    bad = out.results[~out.results.success.astype(bool)]
    assert bad.element.tolist() == ["mart_demo.item", "mart_demo.n"]
    assert bad.observed_value.iloc[0].startswith("could not run: Catalog Error: Table with name dim_nowhere does not exist")
    assert out.critical_failed


def test_one_query_per_mart_counts_each_test_or_gives_way_to_one_query_per_test(warehouse, tmp_path):
    spec = with_tests(item=["unique"], n=["not_null", {"accepted_range": {"min_value": 2}}])
    broken = with_tests(item=["unique"], n=[{"relationships": {"to": "dim_nowhere", "field": "id"}}])
    engine = sa.create_engine(warehouse)
    with engine.connect() as conn:
        good = load_contracts(write(tmp_path / "g", spec))["mart_demo"]
        bad = load_contracts(write(tmp_path / "b", broken))["mart_demo"]
        assert failing_counts(conn, good) == (4, [1, 1, 1])   # 4 rows; 'a' twice; n NULL once; n = 1 below 2
        assert failing_counts(conn, bad) is None          # run_mart_tests then runs them one by one
    engine.dispose()


def test_warn_severity_does_not_stop(warehouse, tmp_path):
    spec = with_tests(n=[{"not_null": {"config": {"severity": "warn"}}}])
    out = run_mart_tests(warehouse, "r1", write(tmp_path / "m", spec))
    assert out.failures == ["[warning] marts mart_contracts: mart_demo.n not_null failed (1 of 4 rows unexpected)"]
    assert not out.critical_failed


@pytest.mark.parametrize(("spec", "message"), [
    (with_tests(n=["not_nul"]), ("mart_demo.yml: mart_demo.n: unknown column test 'not_nul' (known: "
                                "accepted_range, accepted_values, not_null, relationships, unique)")),
    (with_tests(n=[{"accepted_range": {"min": 0}}]),
     ("mart_demo.yml: mart_demo.n.accepted_range: accepted_range takes {min_value} or {max_value} or "
     "{max_value, min_value}, got ['min']")),
    (with_tests(n=[{"not_null": {"config": {"severity": "fatal"}}}]),
     "mart_demo.yml: mart_demo.n: severity 'fatal': use error or warn"),
    (contract(name="mart_other"), "mart_demo.yml: models[0].name: must be 'mart_demo' (the file's name)"),
    (contract(description=""), "mart_demo.yml: mart_demo: add a description"),
    (contract(data_tests=[{"unique_combination_of_columns": {"combination_of_columns": ["item", "nope"]}}]),
     "mart_demo.yml: mart_demo.unique_combination_of_columns: columns ['nope'] are not declared"),
])
def test_a_broken_contract_is_one_line(tmp_path, spec, message):
    with pytest.raises(MartContractError) as err:
        load_contracts(write(tmp_path / "m", spec))
    assert str(err.value) == message


def test_a_mart_without_its_contract(tmp_path):
    folder = write(tmp_path / "m", contract())
    (folder / "mart_demo.yml").unlink()
    with pytest.raises(MartContractError, match=r"^mart_demo.yml: mart_demo: mart_demo.yml is missing"):
        load_contracts(folder)


def test_every_shipped_mart_has_a_contract_with_tests():
    contracts = load_contracts(MARTS_DIR)
    assert sorted(contracts) == sorted(p.stem for p in MARTS_DIR.glob("mart_*.sql"))
    assert all(c.tests and all(c.columns.values()) for c in contracts.values())


def test_shipped_contracts_run_on_postgresql(pg_database):
    """The compiled tests are portable SQL: every contract on an empty PostgreSQL warehouse."""
    from govdata.warehouse.load import init_warehouse

    init_warehouse(pg_database)
    out = run_mart_tests(pg_database, "r1")
    contracts = load_contracts(MARTS_DIR)
    assert len(out.results) == sum(len(c.tests) + 1 for c in contracts.values())
    assert out.failures == []
    assert sa.engine.make_url(pg_database).get_backend_name() == "postgresql"
