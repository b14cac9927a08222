"""Preflight on real databases: SQLite opened read-only (a wrong path never creates a file),
schema drift and unreachable servers on PostgreSQL sources, the plan task's ConfigError."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from govdata.connections import source_engine
from govdata.errors import ConfigError
from govdata.preflight import preflight


def _source_yaml(folder: Path, connection: str, table: str = "person_register", **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"name": "dept", "department": "测试局", "kind": "person", "connection": connection, "table": table,
              "primary_key": "rid", "columns": {"sfzh": "id_number", "xm": "name"}, **extra}
    path = folder / "dept.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def test_sqlite_sources_open_read_only_and_a_wrong_path_creates_nothing(tmp_path):
    db = tmp_path / "dept.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE person_register (rid TEXT, sfzh TEXT, xm TEXT)")
    engine = source_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly database"):
            conn.exec_driver_sql("INSERT INTO person_register VALUES ('1', NULL, NULL)")
    finally:
        engine.dispose()
    gone = tmp_path / "other dir" / "gone.sqlite"
    engine = source_engine(f"sqlite:///{gone}")
    with pytest.raises(sa.exc.OperationalError, match="unable to open database file"):
        engine.connect()
    engine.dispose()
    assert not gone.exists() and not gone.parent.exists()


def test_sources_suggest_on_a_wrong_path_creates_nothing(tmp_path):
    from govdata.suggest import SuggestError, suggest_sources
    from govdata.standards.registry import load_standards

    gone = tmp_path / "typo.sqlite"
    with pytest.raises(SuggestError, match="no SQLite database at"):
        suggest_sources(f"sqlite:///{gone}", load_standards())
    assert not gone.exists()


def test_preflight_passes_a_good_sqlite_source(tmp_path):
    db = tmp_path / "dept.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE person_register (rid TEXT, sfzh TEXT, xm TEXT, gxsj TEXT)")
    _source_yaml(tmp_path / "sources", f"sqlite:///{db}", incremental={"column": "gxsj"})
    report = preflight(tmp_path / "sources", f"duckdb:///{tmp_path / 'wh.duckdb'}", str(tmp_path / "lake"))
    assert report.problems == []
    assert [s.name for s in report.sources] == ["dept"]
    assert [c.line() for c in report.checks][1] == \
        f"{tmp_path / 'sources' / 'dept.yaml'} (source dept): table person_register: primary key and 2 mapped columns present"


@pytest.mark.postgres
def test_schema_drift_on_a_postgresql_source(postgres_url, tmp_path):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS person_register"))
        conn.execute(sa.text("CREATE TABLE person_register (rid text, sfzh text, xingming text, updated text)"))
    engine.dispose()
    yaml_path = _source_yaml(tmp_path / "sources", postgres_url, incremental={"column": "gxsj"})
    report = preflight(tmp_path / "sources", None)
    where = f"{yaml_path} (source dept)"
    assert [c.line() for c in report.problems] == [
        f"{where}: incremental column gxsj is not in table person_register: renamed or dropped at the source? — "
        "correct the column name in the YAML (unmapped columns: updated, xingming)",
        f"{where}: column xm (mapped to name) is not in table person_register: renamed or dropped at the source? — "
        "correct the column name in the YAML (unmapped columns: updated, xingming)",
    ]


def test_unreachable_postgresql_source_is_named_with_its_yaml(tmp_path):
    from tests.servers import free_port

    port = free_port()
    yaml_path = _source_yaml(tmp_path / "sources", f"postgresql://clerk:pw123@127.0.0.1:{port}/dept")
    report = preflight(tmp_path / "sources", None)
    assert [c.line() for c in report.problems] == [
        f"{yaml_path} (source dept): cannot connect to postgresql+psycopg://clerk:***@127.0.0.1:{port}/dept "
        f'(connection failed: connection to server at "127.0.0.1", port {port} failed: Connection refused) — '
        "start the database server or correct host and port in connection:"]


def test_airflow_connections_are_left_to_the_plan_task_outside_airflow(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_DEPT_DB", raising=False)
    _source_yaml(tmp_path / "sources", "airflow:dept_db")
    report = preflight(tmp_path / "sources", None)
    assert report.problems == []
    assert report.checks[-1].line().endswith("connection airflow:dept_db is resolved and checked by the DAG's plan task")


def test_plan_raises_one_config_error_with_every_problem(tmp_path):
    from govdata.stages import plan_run

    _source_yaml(tmp_path / "sources", f"sqlite:///{tmp_path / 'gone.sqlite'}")
    with pytest.raises(ConfigError) as raised:
        plan_run(str(tmp_path / "sources"), str(tmp_path / "lake"), "foo:///x", "manual__1")
    assert str(raised.value) == (
        f"{tmp_path / 'sources' / 'dept.yaml'} (source dept): database file {tmp_path / 'gone.sqlite'} does not exist — "
        "correct connection: in the source YAML (a relative path is taken from the YAML's folder); "
        "warehouse foo:///x: unsupported warehouse scheme 'foo' — pass --warehouse (or set GOVDATA_WAREHOUSE_URL) "
        "as duckdb:///path/warehouse.duckdb or postgresql+psycopg://user@host/db")
    assert not (tmp_path / "gone.sqlite").exists()


def _estimate(url: str, table: str = "person_register") -> int | None:
    from govdata.preflight import estimated_rows

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return estimated_rows(conn, table)
    finally:
        engine.dispose()


def _fill(url: str, rows: int, analyse: str | None = None) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS person_register")
            conn.exec_driver_sql("CREATE TABLE person_register (rid INTEGER PRIMARY KEY, xm VARCHAR(20))")
            conn.execute(sa.text("INSERT INTO person_register VALUES (:rid, :xm)"),
                         [{"rid": i, "xm": f"n{i}"} for i in range(1, rows + 1)])
            if analyse:
                conn.exec_driver_sql(analyse)
    finally:
        engine.dispose()


def test_estimated_rows_from_each_databases_catalogue(tmp_path, postgres_url, mariadb_url):
    sqlite_url = f"sqlite:///{tmp_path / 'dept.sqlite'}"
    _fill(sqlite_url, 1200)
    assert _estimate(sqlite_url) == 1200            # the rowid span: exact while no row was deleted
    assert _estimate(sqlite_url, "no_such_table") is None
    _fill(f"duckdb:///{tmp_path / 'dept.duckdb'}", 1200)
    assert _estimate(f"duckdb:///{tmp_path / 'dept.duckdb'}") == 1200
    _fill(postgres_url, 1200)
    assert _estimate(postgres_url) is None          # never analysed: PostgreSQL does not know
    _fill(postgres_url, 1200, analyse="ANALYZE person_register")
    assert _estimate(postgres_url) == 1200
    _fill(mariadb_url, 1200, analyse="ANALYZE TABLE person_register")
    assert _estimate(mariadb_url) == 1200            # InnoDB's estimate: exact on a fresh small table


def test_the_plan_lists_the_largest_sources_first(tmp_path):
    from govdata.stages import plan_run

    folder = tmp_path / "sources"
    for name, rows in (("small", 3), ("large", 30), ("middle", 10), ("also_middle", 10)):
        db = tmp_path / f"{name}.sqlite"
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE person_register (rid TEXT, sfzh TEXT, xm TEXT)")
            con.executemany("INSERT INTO person_register VALUES (?, NULL, NULL)", [(str(i),) for i in range(rows)])
        _source_yaml(folder, f"sqlite:///{db}").rename(folder / f"{name}.yaml")
        text = (folder / f"{name}.yaml").read_text(encoding="utf-8").replace("name: dept", f"name: {name}")
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    run = plan_run(str(folder), str(tmp_path / "lake"), f"duckdb:///{tmp_path / 'wh.duckdb'}", "manual__1")
    assert [(s["name"], s["estimated_rows"]) for s in run["sources"]] == [
        ("large", 30), ("also_middle", 10), ("middle", 10), ("small", 3)]
