"""Every failure of `govdata run` / `govdata check` is one line a person can act on (where, what,
how to fix), with no traceback and a non-zero exit, found before anything is extracted.

The real CLI runs as a subprocess on a small generated world; each case breaks one thing.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from govdata.demo_data import generate

pytestmark = pytest.mark.e2e

GOVDATA = str(Path(sys.executable).with_name("govdata"))
PREFLIGHT_SECONDS = 60  # generous on a busy 2-core machine; Airflow's retries alone took 146 s before


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errors_world").resolve()
    generate(out, persons=300, seed=5)
    return out


@pytest.fixture
def sources(world, tmp_path) -> Path:
    """A copy of the world's source YAMLs with absolute connections, free to break."""
    folder = tmp_path / "sources"
    folder.mkdir()
    for path in sorted((world / "sources").glob("*.yaml")):
        text = path.read_text(encoding="utf-8").replace("sqlite:///../departments/",
                                                        f"sqlite:///{world / 'departments'}/")
        (folder / path.name).write_text(text, encoding="utf-8")
    return folder


def govdata(*args: str, tmp_path: Path) -> tuple[int, list[str], float]:
    env = {**os.environ, "GOVDATA_HOME": str(tmp_path / "home")}
    env.pop("GOVDATA_WAREHOUSE_URL", None)
    start = time.monotonic()
    res = subprocess.run([GOVDATA, *args], capture_output=True, text=True, env=env, timeout=600)
    lines = (res.stdout + res.stderr).splitlines()
    return res.returncode, lines, time.monotonic() - start


def run(sources: Path, tmp_path: Path, warehouse: str | None = None) -> tuple[int, list[str], float]:
    warehouse = warehouse or f"duckdb:///{tmp_path / 'wh' / 'warehouse.duckdb'}"
    return govdata("run", "--sources", str(sources), "--warehouse", warehouse, "--lake", str(tmp_path / "lake"),
                   tmp_path=tmp_path)


def assert_one_line(code: int, lines: list[str], seconds: float, expected: str) -> None:
    assert lines == [expected]
    assert code == 1
    assert seconds < PREFLIGHT_SECONDS


def test_missing_sources_folder(tmp_path):
    missing = tmp_path / "no-such-folder"
    assert_one_line(*run(missing, tmp_path),
                    f"error: {missing}: sources folder does not exist — "
                    "pass --sources the folder that holds one YAML file per department table")
    assert not (tmp_path / "lake").exists()  # nothing was started


def test_malformed_yaml(sources, tmp_path):
    (sources / "gongan.yaml").write_text("name: gongan\n  department: [\n", encoding="utf-8")
    assert_one_line(*run(sources, tmp_path),
                    f"error: {sources / 'gongan.yaml'} line 2: not valid YAML (mapping values are not allowed here) — "
                    "correct the YAML syntax at that line")


def test_unknown_warehouse_scheme(sources, tmp_path):
    url = f"foo:///{tmp_path / 'x.db'}"
    assert_one_line(*run(sources, tmp_path, warehouse=url),
                    f"error: warehouse {url}: unsupported warehouse scheme 'foo' — pass --warehouse (or set "
                    "GOVDATA_WAREHOUSE_URL) as duckdb:///path/warehouse.duckdb or postgresql+psycopg://user@host/db")


def test_missing_sqlite_file_is_named_and_never_created(sources, world, tmp_path):
    gone = world / "departments" / "gongan_2019.sqlite"
    yaml_path = sources / "gongan.yaml"
    yaml_path.write_text(yaml_path.read_text(encoding="utf-8").replace("gongan.sqlite", gone.name), encoding="utf-8")
    assert_one_line(*run(sources, tmp_path),
                    f"error: {yaml_path} (source gongan): database file {gone} does not exist — correct connection: "
                    "in the source YAML (a relative path is taken from the YAML's folder)")
    assert not gone.exists()


def test_renamed_column_names_source_column_and_yaml(sources, world, tmp_path):
    db = tmp_path / "gongan_renamed.sqlite"
    shutil.copy(world / "departments" / "gongan.sqlite", db)
    with sqlite3.connect(db) as con:
        con.execute('ALTER TABLE "T_RK_JBXX" RENAME COLUMN "XM" TO "XINGMING"')
    yaml_path = sources / "gongan.yaml"
    config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    yaml_path.write_text(yaml_path.read_text(encoding="utf-8").replace(config["connection"], f"sqlite:///{db}"),
                         encoding="utf-8")
    assert_one_line(*run(sources, tmp_path),
                    f"error: {yaml_path} (source gongan): column XM (mapped to name) is not in table T_RK_JBXX: "
                    "renamed or dropped at the source? — correct the column name in the YAML "
                    "(unmapped columns: XINGMING, ZXBZ)")


def test_unreachable_postgresql_warehouse_hides_the_password(sources, tmp_path):
    from tests.servers import free_port

    port = free_port()  # nothing listens there
    code, lines, seconds = run(sources, tmp_path, warehouse=f"postgresql+psycopg://govdata:s3cret@127.0.0.1:{port}/wh")
    assert_one_line(code, lines, seconds,
                    f"error: warehouse postgresql+psycopg://govdata:***@127.0.0.1:{port}/wh: cannot connect "
                    f'(connection failed: connection to server at "127.0.0.1", port {port} failed: Connection refused) '
                    "— start PostgreSQL or correct host and port in --warehouse / GOVDATA_WAREHOUSE_URL")
    assert "s3cret" not in "\n".join(lines)


def test_locked_duckdb_warehouse_is_named_before_the_run(sources, tmp_path):
    import duckdb

    path = tmp_path / "wh" / "warehouse.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)):  # this process holds the write lock, as a running load would
        code, lines, seconds = run(sources, tmp_path)
    assert code == 1 and len(lines) == 1 and seconds < PREFLIGHT_SECONDS
    assert lines[0].startswith(f"error: warehouse duckdb:///{path}: {path} is in use by another process (")
    assert lines[0].endswith("— wait for the other run to finish (or stop it), then run again")


def test_every_problem_is_listed_at_once(sources, world, tmp_path):
    (sources / "gongan.yaml").write_text("name: gongan\n  department: [\n", encoding="utf-8")
    config = yaml.safe_load((sources / "shebao.yaml").read_text(encoding="utf-8"))
    broken = {**config, "table": "SI_PERSON_INFO_V2"}
    (sources / "shebao.yaml").write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    code, lines, _ = run(sources, tmp_path, warehouse="foo:///x")
    assert code == 1
    assert [line.split(":")[0] for line in lines] == ["error"] * 3
    assert "gongan.yaml line 2: not valid YAML" in lines[0]
    assert lines[1] == (f"error: {sources / 'shebao.yaml'} (source shebao): table SI_PERSON_INFO_V2 does not exist "
                        "in the database — correct table: in the source YAML (did you mean SI_PERSON_INFO?)")
    assert "unsupported warehouse scheme 'foo'" in lines[2]


def test_no_raw_identifier_in_an_error_line(sources, tmp_path):
    yaml_path = sources / "gongan.yaml"
    config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    # a steward pasted a citizen's ID number and phone into the table name
    config["table"] = "T_RK_110101199003071234_13812345678"
    yaml_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    code, lines, _ = run(sources, tmp_path)
    assert code == 1
    assert lines == [f"error: {yaml_path} (source gongan): table T_RK_<redacted>_<redacted> does not exist in the "
                     "database — correct table: in the source YAML (tables there: T_RK_JBXX)"]
    assert not re.search(r"\d{11}", "\n".join(lines))


def test_check_lists_every_check_and_passes_on_a_good_world(sources, tmp_path):
    code, lines, _ = govdata("check", "--sources", str(sources), "--warehouse",
                             f"duckdb:///{tmp_path / 'warehouse.duckdb'}", tmp_path=tmp_path)
    assert code == 0
    assert lines[-1] == "all 24 checks passed"  # 11 YAMLs, 11 tables, the warehouse, the lake
    assert f"ok     {sources / 'gongan.yaml'} (source gongan): table T_RK_JBXX: primary key and 8 mapped columns present" in lines
    assert not (tmp_path / "warehouse.duckdb").exists()  # checking creates nothing


def test_check_fails_with_the_problem_last(sources, world, tmp_path):
    gone = world / "departments" / "weijian_old.sqlite"
    yaml_path = sources / "weijian.yaml"
    yaml_path.write_text(yaml_path.read_text(encoding="utf-8").replace("weijian.sqlite", gone.name), encoding="utf-8")
    code, lines, _ = govdata("check", "--sources", str(sources), "--warehouse",
                             f"duckdb:///{tmp_path / 'warehouse.duckdb'}", tmp_path=tmp_path)
    assert code == 1
    assert lines[-1] == (f"error  {yaml_path} (source weijian): database file {gone} does not exist — correct "
                         "connection: in the source YAML (a relative path is taken from the YAML's folder)")
    assert sum(line.startswith("ok ") for line in lines) == 23   # all 24 checks but weijian's table
    assert not gone.exists()
