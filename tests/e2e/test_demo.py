"""`govdata demo` (what `make demo`, the README's first command, runs): a small world generated
and loaded end to end by the real command, its warehouse where the README says."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.e2e

GOVDATA = str(Path(sys.executable).with_name("govdata"))


def test_demo_generates_a_world_and_loads_its_warehouse(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"}
    env.pop("GOVDATA_HOME", None)
    env.pop("GOVDATA_WAREHOUSE_URL", None)
    env.pop("GOVDATA_LAKE", None)
    done = subprocess.run([GOVDATA, "demo", "--out", str(out), "--persons", "300", "--seed", "5"], env=env,
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert len(list((out / "world" / "sources").glob("*.yaml"))) == 11
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
        persons = con.execute("SELECT count(*) FROM dim_person").fetchone()[0]
        runs = con.execute("SELECT count(*) FROM etl_run").fetchone()[0]
    assert persons >= 300 and runs == 1
    assert list((out / "lake").glob("*/report/index.html"))
