"""`govdata run --workers 2`: the same DAG on Airflow's LocalExecutor (mapped tasks side by side,
each task in a process forked for it, reporting to an execution API served by `govdata run`)
loads the same warehouse as `--workers 1` (every task in one process, dag.test's own loop), and
its console shows the same progress lines and nothing of Airflow's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from govdata.cli import app
from govdata.demo_data import generate
from tests.e2e.test_celery import CROSS_RUN_COLUMNS
from tests.e2e.warehouse_content import content, differing_tables

pytestmark = pytest.mark.e2e

PERSONS = 1500
PROGRESS = re.compile(r"^  ✓ (\S+)\s+(\S*)\s")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    world = tmp_path_factory.mktemp("world")
    generate(world, persons=PERSONS, seed=5)
    out = {}
    for workers in (1, 2):
        base = tmp_path_factory.mktemp(f"workers{workers}")
        url = f"duckdb:///{base / 'warehouse.duckdb'}"
        result = CliRunner().invoke(app, ["run", "--sources", str(world / "sources"), "--warehouse", url,
                                          "--lake", str(base / "lake"), "--full-refresh", "--workers", str(workers)])
        out[workers] = {"url": url, "exit": result.exit_code, "stderr": result.stderr, "base": str(base)}
    # an identical incremental rerun on two workers: its tasks read the warehouse's state side by side
    out["first"] = content(out[2]["url"], CROSS_RUN_COLUMNS)
    rerun = CliRunner().invoke(app, ["run", "--sources", str(world / "sources"), "--warehouse", out[2]["url"],
                                     "--lake", str(Path(out[2]["base"]) / "lake"), "--workers", "2"])
    out["rerun"] = {"exit": rerun.exit_code, "stderr": rerun.stderr}
    return out


def _progress(stderr: str) -> list[tuple[str, str]]:
    return sorted(m.groups() for line in stderr.splitlines() if (m := PROGRESS.match(line)))


def _rest(stderr: str, base: str) -> list[str]:
    """The console's other lines (the summary table, where things are), this run's folder and
    run id left out."""
    return [re.sub(r"manual__[^/\s]+", "<run>", line.replace(base, "<base>")) for line in stderr.splitlines()
            if not PROGRESS.match(line)]


def test_two_workers_load_the_same_warehouse_as_one(runs):
    assert runs[1]["exit"] == 0 and runs[2]["exit"] == 0, runs[2]["stderr"][-2000:]
    one, two = content(runs[1]["url"], CROSS_RUN_COLUMNS), content(runs[2]["url"], CROSS_RUN_COLUMNS)
    assert differing_tables(one, two, CROSS_RUN_COLUMNS) == {}
    assert len(two["dim_person"]) > PERSONS * 0.9 and len(two["fact_application"]) == PERSONS


def test_an_identical_rerun_on_two_workers_changes_nothing(runs):
    assert runs["rerun"]["exit"] == 0, runs["rerun"]["stderr"][-2000:]
    assert differing_tables(runs["first"], content(runs[2]["url"], CROSS_RUN_COLUMNS), CROSS_RUN_COLUMNS) == {}


def test_the_console_shows_every_tasks_progress_line_and_no_airflow_log(runs):
    assert _progress(runs[2]["stderr"]) == _progress(runs[1]["stderr"])
    assert len(_progress(runs[2]["stderr"])) == 43   # 11 sources x 3, validate, plan, 2 partitions, merge, load, 4 marts
    two, one = _rest(runs[2]["stderr"], runs[2]["base"]), _rest(runs[1]["stderr"], runs[1]["base"])
    assert two == one   # the same summary, and not one line of Airflow's own log
    assert any("persons" in line for line in two) and any(line.startswith("warehouse: duckdb:///<base>") for line in two)



def test_the_plan_lists_the_sources_largest_first(runs):
    """Every run's plan (the mapped extracts' order) by the source databases' own row estimates."""
    import json

    manifests = sorted(Path(runs[2]["base"], "lake").rglob("manifest.json"))
    assert len(manifests) == 2   # the full run and its rerun
    for path in manifests:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        sizes = [s["estimated_rows"] for s in manifest["run"]["sources"]]
        assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1] > 0
        assert sorted(e["name"] for e in manifest["extracted"]) == sorted(s["name"] for s in manifest["run"]["sources"])


def test_the_largest_extracts_start_first(runs):
    """The executor starts a mapped task's instances in map-index order on its two slots: the
    n-th extract to start is the plan's n-th, give or take the one started beside it."""
    import json

    for path in sorted(Path(runs[2]["base"], "lake").rglob("manifest.json")):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        planned = [s["name"] for s in manifest["run"]["sources"]]
        started = [e["name"] for e in sorted(manifest["extracted"], key=lambda e: e["started"])]
        assert max(abs(started.index(name) - i) for i, name in enumerate(planned)) <= 1, \
            f"{path.parent.name}: started {started}, planned {planned}"
