"""Runs the govdata_pipeline DAG with Airflow's dag.test() — the same DAG a scheduler runs.

A project-local AIRFLOW_HOME with a SQLite metadata database is created on first use, so
`govdata run` works on a fresh clone without an Airflow deployment. With one worker every task
runs in this process; with more (the default on a machine with two cores or more), dag.test
hands the tasks to Airflow's LocalExecutor, so mapped tasks (sources, link partitions) run side
by side, each in a process forked for it that reports to an execution API served from here.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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


# A task's supervisor can notice its process's exit only at its next poll, up to
# [workers] min_heartbeat_interval seconds (Airflow's default: 5) after the process closed its
# sockets; the executor slot stays taken meanwhile. A task that frees a large heap at exit
# (a million-row source) kept its slot ~5 s idle. One second bounds that wait; the cost is one
# heartbeat a second per running task to the execution API.
SUPERVISOR_POLL_SECONDS = 1


def configure_airflow(home: Path) -> None:
    """Environment for a local, in-process Airflow; must be set before airflow is imported."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_FOLDER))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    os.environ.setdefault("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", str(SUPERVISOR_POLL_SECONDS))
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
    # `airflow.sdk.api.client`: a task process's first call to the execution API logs "Starting
    # call to … 1st time" as a warning (its retry policy's before-log); no retry has happened.
    os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "task=CRITICAL airflow.sdk.definitions.dag=CRITICAL "
                                                               "airflow.sdk.api.client=ERROR")


def _quiet_stdlib_loggers() -> None:
    """quiet_console's levels on the stdlib loggers too: dag.test's loop logs through one
    (airflow.sdk.definitions.dag), which Airflow's namespace levels only reach once it has
    configured a task's logging in this process (never when an executor runs the tasks)."""
    import logging

    for entry in os.environ.get("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "").split():
        name, _, level = entry.partition("=")
        if name and level.upper() in logging.getLevelNamesMapping():
            logging.getLogger(name).setLevel(level.upper())


WORKERS_ENV = "GOVDATA_RUN_WORKERS"
# Imported before the LocalExecutor forks its workers, so a task process starts with them loaded
# (a forked task would otherwise import pandas and pyarrow again for every task).
# GX (~4 s to import) is used by validate and by the marts DAG's check_warehouse: imported once
# here rather than by each of those tasks. recordlinkage imports scikit-learn (~0.8 s) for the ECM
# that every person link partition fits: once here rather than in each of the partitions' tasks.
PRELOADED = ("pandas", "pyarrow.parquet", "pyarrow.compute", "pyarrow.dataset", "duckdb", "sqlalchemy",
             "govdata.lake", "govdata.extract", "govdata.stages.common", "great_expectations", "recordlinkage")


def run_workers(workers: int | None = None) -> int:
    """Task slots of `govdata run`: `workers`, else GOVDATA_RUN_WORKERS, else one per usable core
    (at most two, govdata.forking.default_workers). One runs every task in this process."""
    from govdata.errors import ConfigError
    from govdata.forking import default_workers

    if workers is None:
        raw = os.environ.get(WORKERS_ENV, "").strip()
        if not raw:
            return default_workers()
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{WORKERS_ENV}={raw!r} is not a whole number of workers: set it to 1 or more, "
                              "or unset it for one per core")
        workers = int(raw)
    if workers < 1:
        raise ConfigError(f"--workers {workers}: give 1 or more task workers")
    return workers


LOCAL_EXECUTOR = "govdata.executors.MapIndexOrderedLocalExecutor"


def use_executor(path: str) -> None:
    """Makes `path` the executor dag.test loads, also where this process loaded another one before
    (Airflow keeps the configured executors' names for the life of the process)."""
    os.environ["AIRFLOW__CORE__EXECUTOR"] = path
    from airflow.executors import executor_loader

    for cache in ("_executor_names", "_alias_to_executors_per_team", "_module_to_executors_per_team",
                  "_classname_to_executors_per_team", "_team_name_to_executors"):
        held = getattr(executor_loader, cache, None)
        if held is not None:
            held.clear()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_executor(workers: int) -> Iterator[None]:
    """Airflow's LocalExecutor with `workers` task slots for dag.test(use_executor=True): its
    task processes report to an execution API served by this process on a free localhost port,
    under a JWT secret made for this process."""
    import secrets

    port = _free_port()
    # Airflow's LocalExecutor, starting a mapped task's instances in map-index order as a
    # scheduler would (the plan puts the largest sources first)
    use_executor(LOCAL_EXECUTOR)
    os.environ["AIRFLOW__CORE__PARALLELISM"] = str(workers)
    os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
    import uvicorn
    from airflow.api_fastapi.app import create_app
    from airflow.sdk.log import configure_logging

    # the task SDK's logging, with quiet_console's levels: dag.test configures it when it runs a
    # task in this process, never when an executor runs them (its workers inherit it)
    configure_logging()
    _quiet_stdlib_loggers()
    server = uvicorn.Server(uvicorn.Config(create_app(apps="execution"), host="127.0.0.1", port=port,
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="govdata-execution-api", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    if not thread.is_alive():
        raise RuntimeError(f"the execution API for the task workers did not start on 127.0.0.1:{port}")
    for module in PRELOADED:
        __import__(module)
    try:
        yield
    finally:
        # dag.test ends the executor's workers when the run ends; on an exception (Ctrl-C) it
        # does not, and they are not daemons: this process would wait for them at exit.
        import multiprocessing

        for worker in multiprocessing.active_children():
            worker.terminate()
            worker.join(timeout=5)
            if worker.is_alive():   # a worker waiting on its queue may not heed SIGTERM
                worker.kill()
                worker.join(timeout=5)
        server.should_exit = True
        thread.join(timeout=10)


_OPEN_SLOTS: list[int] = []   # the task_slots contexts open in this process


@contextlib.contextmanager
def task_slots(workers: int) -> Iterator[None]:
    """With more than one worker: one LocalExecutor API (local_executor) and progress relay for
    every dag.test inside, opened by the outermost call only. A run's two DAGs share them: a new
    execution API builds its versioned routes on its first request (~5 s of CPU)."""
    if workers < 2 or _OPEN_SLOTS:
        yield
        return
    _OPEN_SLOTS.append(workers)
    try:
        with local_executor(workers), progress_relay():
            yield
    finally:
        _OPEN_SLOTS.pop()


@contextlib.contextmanager
def progress_relay() -> Iterator[None]:
    """The stages' progress lines (govdata.stages.common._progress) from task processes: each
    appends its line to a file named by GOVDATA_PROGRESS; a thread here prints them as they come
    (a task process's own stderr goes to its task log)."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="govdata-progress-", suffix=".txt")
    os.close(fd)
    previous = os.environ.get("GOVDATA_PROGRESS")
    os.environ["GOVDATA_PROGRESS"] = path
    done = threading.Event()

    def relay() -> None:
        with open(path, encoding="utf-8") as source:
            pending = ""
            while True:
                finished = done.is_set()
                pending += source.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    print(line, file=sys.stderr, flush=True)
                if finished:
                    return
                done.wait(0.2)

    thread = threading.Thread(target=relay, name="govdata-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
        os.environ["GOVDATA_PROGRESS"] = previous or "1"
        Path(path).unlink(missing_ok=True)


def ensure_metadata_db(home: Path) -> None:
    finish_metadata_db(start_metadata_db(home), home)


def start_metadata_db(home: Path) -> subprocess.Popen | None:
    """`airflow db migrate` for a new home, started in its own process (~6 s of CPU), so that
    this process's imports run beside it; None when the home was migrated before."""
    if (home / ".migrated").exists():
        return None
    return subprocess.Popen([sys.executable, "-m", "airflow", "db", "migrate"], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL)


def finish_metadata_db(migrating: subprocess.Popen | None, home: Path) -> None:
    if migrating is None:
        return
    if migrating.wait() != 0:
        raise subprocess.CalledProcessError(migrating.returncode, migrating.args)
    (home / ".migrated").write_text("ok")


def load_dag(file: str, attribute: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"govdata_dag_{attribute}", DAGS_FOLDER / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def _test_run(dag, conf: dict, workers: int = 1):
    """dag.test() with the run's task failures recorded (govdata.errors.task_errors) in a
    temporary error file, read back to name each failed task and its error. More than one
    worker: the tasks run on a LocalExecutor with that many slots (local_executor)."""
    import tempfile

    from govdata.errors import ERROR_FILE_ENV

    fd, error_file = tempfile.mkstemp(prefix="govdata-errors-", suffix=".jsonl")
    os.close(fd)
    previous = os.environ.get(ERROR_FILE_ENV)
    os.environ[ERROR_FILE_ENV] = error_file
    try:
        if workers > 1:
            with task_slots(workers):
                from govdata.executors import dag_test_wakes_on_results

                with dag_test_wakes_on_results():
                    dag_run = dag.test(run_conf=conf, use_executor=True)
        else:
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
                 full_refresh: bool = False, airflow_home: Path | None = None, workers: int | None = None) -> dict:
    """Runs the DAG once and returns the run summary written by its report task. `workers`:
    task slots (run_workers)."""
    from govdata.settings import get_settings

    settings = get_settings()
    workers = run_workers(workers)
    home = airflow_home or Path(os.environ.get("AIRFLOW_HOME", settings.home / "airflow"))
    configure_airflow(home)
    migrating = start_metadata_db(home)
    os.environ["GOVDATA_PROGRESS"] = "1"
    conf = {
        "sources_dir": str(Path(sources_dir).resolve()),
        "warehouse_url": warehouse_url or settings.warehouse_url,
        "lake": lake or settings.lake,
        "full_refresh": full_refresh,
    }
    from govdata.lake import run_path

    with task_slots(workers):   # the task workers' imports and API beside the metadata DB's migration
        finish_metadata_db(migrating, home)
        dag_run = _test_run(load_dag("govdata_pipeline.py", "pipeline"), conf, workers)
        manifest = run_path(conf["lake"], dag_run.run_id, "manifest.json")
        # dag.test() does not fire asset-triggered DAGs: run the consumer as the scheduler would,
        # on the same task slots.
        _test_run(load_dag("govdata_marts.py", "marts_dag"), {"manifest": manifest}, workers)
    summary_path = Path(run_path(conf["lake"], dag_run.run_id, "report", "summary.json"))
    return json.loads(summary_path.read_text(encoding="utf-8"))
