"""Crash safety: the real `govdata run` is killed with SIGKILL (its whole process group) while
it extracts, normalises, advances the snapshot, links and loads; the next run must leave the warehouse exactly as a
run that was never interrupted does, and clean up the killed run's lake folder.

The run is held at a named failpoint (govdata/failpoints.py) so that the kill lands in the
stage under test, not wherever the clock happens to be."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from govdata.demo_data import generate

pytestmark = pytest.mark.e2e

GOVDATA = str(Path(sys.executable).with_name("govdata"))
# Every analyst-visible table whose content a run decides, without run ids and timestamps.
CONTENT = {
    "dim_person": "select * exclude (first_seen_run, last_run) from dim_person",
    "dim_enterprise": "select * exclude (first_seen_run, last_run) from dim_enterprise",
    "xref_person": "select * exclude (run_id) from xref_person",
    "xref_enterprise": "select * exclude (run_id) from xref_enterprise",
    "fact_application": "select * exclude (run_id) from fact_application",
    "fact_certificate": "select * exclude (run_id) from fact_certificate",
    "quarantine": "select * exclude (run_id) from quarantine",
    "review_queue": "select pair_id, status from review_queue",
    "dim_source": "select * exclude (last_run) from dim_source",
    "vault_person": "select person_id, person_token, phone_token from vault.vault_person",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash_world")
    generate(folder, persons=800, seed=21)
    return folder


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    """One private Airflow home for every run of this module (migrated once)."""
    home = tmp_path_factory.mktemp("crash_airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVDATA_FAILPOINT")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
               GOVDATA_HOME=str(home / "govdata"))
    return env


def _run(world: Path, base: Path, env: dict, failpoint: str | None = None,
         full_refresh: bool = False) -> subprocess.CompletedProcess | None:
    """`govdata run`; with a failpoint, held there and killed (returns None)."""
    cmd = [GOVDATA, "run", "--sources", str(world / "sources"), "--warehouse", f"duckdb:///{base / 'w.duckdb'}",
           "--lake", str(base / "lake")] + (["--full-refresh"] if full_refresh else [])
    if failpoint is None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done
    markers = base / "failpoints"
    env = {**env, "GOVDATA_FAILPOINTS": failpoint, "GOVDATA_FAILPOINT_DIR": str(markers)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not (markers / failpoint).exists():
        assert proc.poll() is None, f"run ended before reaching {failpoint}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"run never reached {failpoint}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    (markers / failpoint).unlink()
    return None


def _content(base: Path) -> dict[str, pd.DataFrame]:
    out = {}
    with duckdb.connect(str(base / "w.duckdb"), read_only=True) as con:
        con.execute(f"ATTACH '{base / 'w.vault.duckdb'}' AS vault (READ_ONLY)")
        for name, sql in CONTENT.items():
            frame = con.sql(sql).df()
            out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def _assert_same(got: dict, want: dict, when: str) -> None:
    for name in CONTENT:
        assert len(want[name]) or name in ("review_queue", "quarantine"), name
        pd.testing.assert_frame_equal(got[name], want[name], obj=f"{name} {when}", check_dtype=False)


@pytest.fixture(scope="module")
def clean(world, airflow_env, tmp_path_factory):
    base = tmp_path_factory.mktemp("crash_clean")
    _run(world, base, airflow_env)
    return _content(base)


@pytest.mark.parametrize("stage", ["extract", "normalise", "snapshot", "link", "load"])
def test_a_first_run_killed_then_rerun_equals_a_clean_run(stage, world, airflow_env, clean, tmp_path):
    _run(world, tmp_path, airflow_env, failpoint=stage)
    killed = [p for p in (tmp_path / "lake").iterdir() if p.is_dir()]
    assert len(killed) == 1
    _run(world, tmp_path, airflow_env)
    _assert_same(_content(tmp_path), clean, f"after a run killed in {stage}")
    assert not killed[0].exists(), "the killed run's lake folder is removed by the next run"


def test_a_rerun_killed_inside_the_load_commit_leaves_a_consistent_state(world, airflow_env, clean, tmp_path):
    """Killed after the vault copy is written (before the warehouse commits), then after the
    warehouse commits (before the copy replaces the vault): either way the next reader sees
    warehouse and vault of one and the same run. Full refreshes, so that every table and the
    vault are rewritten."""
    _run(world, tmp_path, airflow_env)
    for point in ("load", "load_vault_written", "load_warehouse_committed"):
        _run(world, tmp_path, airflow_env, failpoint=point, full_refresh=True)
        _assert_same(_content(tmp_path), clean, f"after a rerun killed at {point}")
    _run(world, tmp_path, airflow_env)
    _assert_same(_content(tmp_path), clean, "after the run that followed")
    assert not list(tmp_path.glob("*.pending")), "no pending vault copy is left behind"
