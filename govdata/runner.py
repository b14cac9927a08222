"""Runs the govdata_pipeline DAG in-process with Airflow's dag.test() — the same DAG a scheduler runs.

A project-local AIRFLOW_HOME with a SQLite metadata database is created on first use, so
`govdata run` works on a fresh clone without an Airflow deployment.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from govdata.settings import PROJECT_ROOT

DAG_ID = "govdata_pipeline"
DAGS_FOLDER = PROJECT_ROOT / "dags"


class PipelineFailed(RuntimeError):
    pass


def configure_airflow(home: Path) -> None:
    """Environment for a local, in-process Airflow; must be set before airflow is imported."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")


def ensure_metadata_db(home: Path) -> None:
    marker = home / ".migrated"
    if marker.exists():
        return
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(),
                   stdout=subprocess.DEVNULL)
    marker.write_text("ok")


def load_dag(file: str, attribute: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"govdata_dag_{attribute}", DAGS_FOLDER / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def _test_run(dag, conf: dict):
    dag_run = dag.test(run_conf=conf)
    state = str(getattr(dag_run.state, "value", dag_run.state))
    if state != "success":
        failed = [ti.task_id for ti in dag_run.get_task_instances() if str(getattr(ti.state, "value", ti.state)) == "failed"]
        raise PipelineFailed(f"{dag.dag_id} run {dag_run.run_id} ended {state}; failed tasks: {', '.join(failed) or 'none'}")
    return dag_run


def run_pipeline(sources_dir: Path, warehouse_url: str | None = None, lake: str | None = None,
                 full_refresh: bool = False, airflow_home: Path | None = None) -> dict:
    """Runs the DAG once and returns the run summary written by its report task."""
    from govdata.settings import get_settings

    settings = get_settings()
    home = airflow_home or Path(os.environ.get("AIRFLOW_HOME", settings.home / "airflow"))
    configure_airflow(home)
    ensure_metadata_db(home)
    os.environ["GOVDATA_PROGRESS"] = "1"
    conf = {
        "sources_dir": str(Path(sources_dir).resolve()),
        "warehouse_url": warehouse_url or settings.warehouse_url,
        "lake": lake or settings.lake,
        "full_refresh": full_refresh,
    }
    from govdata.lake import run_path

    dag_run = _test_run(load_dag("govdata_pipeline.py", "pipeline"), conf)
    manifest = run_path(conf["lake"], dag_run.run_id, "manifest.json")
    # dag.test() does not fire asset-triggered DAGs: run the consumer as the scheduler would.
    _test_run(load_dag("govdata_marts.py", "marts_dag"), {"manifest": manifest})
    summary_path = Path(run_path(conf["lake"], dag_run.run_id, "report", "summary.json"))
    return json.loads(summary_path.read_text(encoding="utf-8"))
