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

from govdata.settings import layout_folder

DAG_ID = "govdata_pipeline"
DAGS_FOLDER = layout_folder("dags")


class PipelineFailed(RuntimeError):
    """A DAG run ended failed. `lines`: one line per failed task (task and its error), last line
    names the first failed task; identifiers redacted."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__(lines[-1] if lines else "pipeline failed")


def configure_airflow(home: Path) -> None:
    """Environment for a local, in-process Airflow; must be set before airflow is imported."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    quiet_console()


def quiet_console() -> None:
    """Keep the console of `govdata run` to govdata's own progress, warnings and failure lines.

    Must run before airflow is imported. GOVDATA_DEBUG=1 keeps Airflow's full console log."""
    import warnings

    # Airflow's in-process execution API (used by dag.test) imports fastapi.testclient, which
    # warns that starlette's test client will need `httpx2`: a note for Airflow's maintainers,
    # nothing a govdata user can act on.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated")
    if os.environ.get("GOVDATA_DEBUG"):
        return
    # `task`: a failed task logs its exception with a ~40-line traceback through Airflow's task
    # runner; govdata.errors.task_errors records the (redacted) message and `govdata run` prints
    # it as its last line, so the console needs neither. `airflow.sdk.definitions.dag`: dag.test
    # warns "No tasks to run. unrunnable tasks: {…}" once a second while the tasks downstream of
    # a failure wait to be marked upstream_failed; that is the failure above, said again.
    os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "task=CRITICAL airflow.sdk.definitions.dag=CRITICAL")


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
    """dag.test() with the run's task failures recorded (govdata.errors.task_errors) in a
    temporary error file, read back to name each failed task and its error."""
    import tempfile

    from govdata.errors import ERROR_FILE_ENV

    fd, error_file = tempfile.mkstemp(prefix="govdata-errors-", suffix=".jsonl")
    os.close(fd)
    previous = os.environ.get(ERROR_FILE_ENV)
    os.environ[ERROR_FILE_ENV] = error_file
    try:
        dag_run = dag.test(run_conf=conf)
        state = str(getattr(dag_run.state, "value", dag_run.state))
        if state != "success":
            raise PipelineFailed(failure_lines(dag.dag_id, dag_run.run_id, state, _failed_labels(dag_run), error_file))
    finally:
        if previous is None:
            os.environ.pop(ERROR_FILE_ENV, None)
        else:
            os.environ[ERROR_FILE_ENV] = previous
        Path(error_file).unlink(missing_ok=True)
    return dag_run


def failure_lines(dag_id: str, run_id: str, state: str, failed: list[str], error_file: str) -> list[str]:
    """`<dag> run <id> ended failed`, then `failed: <task>: <error>` per failed task (redacted).
    `failed` holds task labels as task_errors records them (`extract [gongan]`, `plan`). The
    last line is the task that failed first: the cause; later failures are usually its consequence."""
    from govdata.errors import read_failures, redact

    last: dict[str, dict] = {}  # label -> its last record (a retried transient failure leaves several)
    for record in read_failures(error_file):
        if record["task"] in failed or record["task"].split(" [")[0] in failed:
            last[record["task"]] = record
    lines = [f"failed: {label}: {record['message']}" for label, record in last.items()]
    lines += [f"failed: {label} (no message recorded; GOVDATA_DEBUG=1 shows Airflow's log)" for label in failed
              if label not in last and not any(seen.split(" [")[0] == label for seen in last)]
    head = f"{dag_id} run {run_id} ended {state}" + ("" if lines else "; no task failed")
    return [redact(line) for line in (head, *reversed(lines))]


def _failed_labels(dag_run) -> list[str]:
    labels = []
    for ti in dag_run.get_task_instances():
        if str(getattr(ti.state, "value", ti.state)) != "failed":
            continue
        rendered = getattr(ti, "rendered_map_index", None)
        labels.append(f"{ti.task_id} [{rendered}]" if ti.map_index >= 0 and rendered else ti.task_id)
    return labels


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
