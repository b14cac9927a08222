"""The DAG folder parses the way Airflow's dag-processor parses it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = {"pandas", "pyarrow", "numpy", "recordlinkage", "great_expectations", "duckdb", "sqlalchemy"}


@pytest.fixture(scope="module")
def dagbag():
    """Parsed as a scheduler would (the test session's fail-fast override removed)."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    override = os.environ.pop("GOVDATA_TASK_RETRIES", None)
    try:
        return DagBag(dag_folder=str(DAGS))
    finally:
        if override is not None:
            os.environ["GOVDATA_TASK_RETRIES"] = override


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["govdata_marts", "govdata_pipeline"]


def test_pipeline_shape(dagbag):
    dag = dagbag.dags["govdata_pipeline"]
    assert dag.max_active_runs == 1
    assert dag.doc_md and "govdata_pipeline" in dag.doc_md
    order = ["plan", "sources", "extract", "normalise", "snapshot", "validate", "link_plan", "link", "link_merge",
             "load"]
    assert set(dag.task_ids) == set(order)
    # wired in stage order (a DAG cycle would fail DagBag import already); the stages after the
    # snapshot read its results (joined to normalise's by source name)
    for upstream, downstream in [("extract", "normalise"), ("normalise", "snapshot"), ("snapshot", "validate"),
                                 ("validate", "link_plan"), ("snapshot", "link_plan"), ("link_plan", "link"),
                                 ("link", "link_merge"), ("link_merge", "load"), ("snapshot", "load")]:
        assert downstream in dag.get_task(upstream).downstream_task_ids


def test_marts_dag_is_scheduled_by_the_warehouse_asset(dagbag):
    dag = dagbag.dags["govdata_marts"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["govdata_warehouse"]
    assert set(dag.task_ids) == {"manifest", "check_warehouse", "marts", "findings", "report", "expire_grants"}
    assert "report" in dag.get_task("findings").downstream_task_ids   # the run report links findings/review pages
    assert "marts" in dag.get_task("check_warehouse").downstream_task_ids
    assert "report" in dag.get_task("marts").downstream_task_ids


def test_mapped_per_source_tasks_are_labelled_with_the_source(dagbag):
    dag = dagbag.dags["govdata_pipeline"]
    for task_id in ("extract", "normalise", "snapshot"):
        assert dag.get_task(task_id).map_index_template == "{{ source_name }}", task_id


def test_retries_set_where_retrying_helps(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            expected = 0 if task.task_id in {"plan", "validate", "check_warehouse"} else 2
            assert task.retries == expected, task.task_id
    assert dagbag.dags["govdata_pipeline"].get_task("extract").retry_exponential_backoff


def test_load_emits_the_warehouse_asset(dagbag):
    outlets = dagbag.dags["govdata_pipeline"].get_task("load").outlets
    assert [a.name for a in outlets] == ["govdata_warehouse"]


def test_dag_files_have_no_heavy_top_level_imports():
    for path in DAGS.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {(n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
                 for n in top for a in getattr(n, "names", [])}
        assert not names & HEAVY, f"{path.name} imports {names & HEAVY} at top level"
