"""A real distributed run: both DAGs under Airflow 3's CeleryExecutor, every component its own
process on this machine (issue 14, item 3).

Redis (broker) and PostgreSQL (Airflow's metadata database and Celery's result backend) are the
tests' throwaway servers; `airflow db migrate`, then api-server (the execution API the workers'
tasks report to, one JWT secret for all), scheduler, dag-processor and two `airflow celery worker`s
start as separate process groups. The lake is one folder both workers share. At 20,000 persons the
test triggers govdata_pipeline, lets the scheduler start govdata_marts on the asset, waits for
both to succeed and asserts that

- both workers ran tasks (each worker writes its task logs under its own log folder), and
- the warehouse equals the one `govdata run` (dag.test, in-process) loads from the same data,
  table by table, minus run ids and times (tests/e2e/warehouse_content.py).

Every process is stopped, as a process group, whatever happens (fixture finalizers).

Measured here (2 cores shared): 171 s for the module at load average 3 (cluster up 34 s with db
migrate 9 s, both DAGs 109 s under Celery, `govdata run` alongside 143 s); 227 s at load 8. The
Celery run's report (stage_clock) at load 8: 116 s pipeline wall, 130 task seconds, 45 s
start-up over 29 tasks.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from govdata.demo_data import generate
from govdata.lake import run_path
from govdata.runner import DAGS_FOLDER
from tests.e2e.warehouse_content import RUN_COLUMNS, content, differing_tables
from tests.servers import free_port, fresh_database

pytestmark = pytest.mark.e2e

PERSONS = 20_000
WORKERS = ("worker1", "worker2")
CONCURRENCY = 2          # task slots per worker: 4 side by side on the 2-core CI machine
RUN_TIMEOUT = 240        # seconds for both DAG runs, after the cluster is up
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# Two warehouses loaded by two runs: also the column naming the run that first saw an entity.
CROSS_RUN_COLUMNS = RUN_COLUMNS | {"first_seen_run"}


class Cluster:
    """Airflow components as separate processes, each in its own process group (stopped as a group)."""

    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.env = folder, env
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], program: str = AIRFLOW, **extra_env: str) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as log:
            process = subprocess.Popen([program, *args], env={**self.env, **extra_env}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder)
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"Airflow component(s) exited: {dead}; logs in {self.folder}: "
                                 + "; ".join(f"{n}: {self.tail(n)}" for n in dead))

    def tail(self, name: str, chars: int = 1500) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, grace: float = 15) -> None:
        """SIGTERM to every group, SIGKILL to what is left after `grace` seconds."""
        for p in self.processes.values():
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.processes.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.processes.values():
            _signal_group(p, signal.SIGKILL)   # also the groups' children (task processes, pool workers)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _stop_group(process: subprocess.Popen) -> None:
    _signal_group(process, signal.SIGKILL)
    process.wait(timeout=10)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)   # start_new_session: the group id is the leader's pid
    except ProcessLookupError:
        pass


def _airflow_env(home: Path, metadata_url: str, redis_url: str, api_port: int, govdata_home: Path) -> dict[str, str]:
    """One configuration for every component (as Airflow requires), nothing from the test process's
    own in-process Airflow (its AIRFLOW_* point at a SQLite home)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        # small pools: five components share the session's test server (max_connections 60)
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "6",
        # Airflow's async engine defaults to asyncpg: psycopg 3 (installed) does async as well
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url.replace("+psycopg:", "+psycopg_async:", 1),
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CONCURRENCY),
        # the workers import the tasks' modules once; each task's process is forked with them
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "govdata.celery_config.CELERY_CONFIG",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__PORT": str(api_port),
        # One JWT secret for every component: task tokens the scheduler issues are accepted by
        # the api-server the workers' tasks talk to.
        "AIRFLOW__API_AUTH__JWT_SECRET": "govdata-celery-test-only",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",   # as docker-compose.yml: slots freed sooner
        "GOVDATA_HOME": str(govdata_home),
    })
    return env


def _airflow(args: list[str], env: dict[str, str], timeout: float) -> None:
    """An Airflow CLI command; a failure names the command and ends with its output's tail."""
    res = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise AssertionError(f"airflow {args[0]} {args[1]} exited {res.returncode}: {(res.stdout + res.stderr)[-3000:]}")


def _wait(what: str, probe, timeout: float, cluster: Cluster | None = None, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster is not None:
            cluster.check_alive()
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _scalar(engine: sa.Engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def _rows(engine: sa.Engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def _task_logs(folder: Path) -> set[tuple[str, str, int]]:
    """(dag_id, task_id, map_index) of every task log a worker wrote (Airflow's log path template:
    dag_id=…/run_id=…/task_id=…[/map_index=…]/attempt=….log)."""
    out = set()
    for log in folder.rglob("attempt=*.log"):
        parts = dict(p.split("=", 1) for p in log.relative_to(folder).parts[:-1] if "=" in p)
        out.add((parts["dag_id"], parts["task_id"], int(parts.get("map_index", -1))))
    return out


@pytest.fixture(scope="module")
def distributed(tmp_path_factory, postgres_url, redis_url):
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    base = tmp_path_factory.mktemp("celery")
    world = base / "world"
    generate(world, persons=PERSONS, seed=42)
    timings["generate"] = time.perf_counter() - t0

    # The reference: `govdata run` (dag.test, in-process) on the same data, as its own process,
    # side by side with the cluster (its start-up is mostly waiting).
    reference_url = fresh_database(postgres_url, "govdata_celery_reference")
    reference_lake = base / "reference_lake"
    with open(base / "govdata-run.log", "wb") as log:
        reference_run = subprocess.Popen(
            [str(Path(sys.executable).with_name("govdata")), "run", "--sources", str(world / "sources"),
             "--warehouse", reference_url],
            env={**os.environ, "GOVDATA_LAKE": str(reference_lake), "GOVDATA_HOME": str(base / "reference_home")},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    reference_started = time.perf_counter()
    home = base / "airflow"
    home.mkdir()
    cluster = Cluster(home, {})
    with ExitStack() as stack:   # whatever fails from here on, every process started is stopped
        stack.callback(_stop_group, reference_run)
        stack.callback(cluster.stop)
        warehouse_url = fresh_database(postgres_url, "govdata_celery_warehouse")
        metadata_url = fresh_database(postgres_url, "airflow_celery")
        lake = base / "shared_lake"   # the folder both workers read and write
        api_port = free_port()
        env = cluster.env = _airflow_env(home, metadata_url, redis_url, api_port, base / "govdata_home")
        metadata = sa.create_engine(metadata_url, poolclass=sa.pool.NullPool)
        stack.callback(metadata.dispose)
        t = time.perf_counter()
        _airflow(["db", "migrate"], env, 180)
        timings["airflow db migrate"] = time.perf_counter() - t

        t = time.perf_counter()
        cluster.start("api-server", ["api-server", "-H", "127.0.0.1", "-p", str(api_port), "-w", "1"])
        cluster.start("scheduler", ["scheduler"])
        cluster.start("dag-processor", ["dag-processor"])
        logs = {}
        for name in WORKERS:
            logs[name] = home / f"logs-{name}"
            # Each worker its own log folder (the proof of who ran what) and no log-serving
            # process (two on one machine would want the same port).
            cluster.start(name, ["celery", "worker", "-H", f"{name}@%h", "-c", str(CONCURRENCY), "-s"],
                          AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(logs[name]))
        _wait("both DAGs parsed and unpaused", lambda: _scalar(
            metadata, "SELECT count(*) FROM dag WHERE dag_id IN ('govdata_pipeline', 'govdata_marts') "
                      "AND NOT is_paused AND NOT is_stale") == 2, 120, cluster)
        _wait("two Celery workers", lambda: all(b"ready" in (home / f"{n}.log").read_bytes() for n in WORKERS),
              120, cluster)
        timings["cluster up"] = time.perf_counter() - t

        t = time.perf_counter()
        conf = {"sources_dir": str(world / "sources"), "warehouse_url": warehouse_url, "lake": str(lake),
                "full_refresh": False}
        _airflow(["dags", "trigger", "govdata_pipeline", "-r", "celery_e2e", "-c", json.dumps(conf)], env, 120)

        def finished(dag_id: str):
            state = _scalar(metadata, "SELECT state FROM dag_run WHERE dag_id = :d ORDER BY id DESC LIMIT 1", d=dag_id)
            if state == "failed":
                failed = _rows(metadata, "SELECT task_id, map_index FROM task_instance WHERE dag_id = :d "
                                         "AND state = 'failed'", d=dag_id)
                raise AssertionError(f"{dag_id} failed: {failed}; worker logs under {home}")
            return state == "success"

        _wait("govdata_pipeline to succeed", lambda: finished("govdata_pipeline"), RUN_TIMEOUT, cluster)
        timings["govdata_pipeline (celery)"] = time.perf_counter() - t
        _wait("govdata_marts, started by the asset, to succeed", lambda: finished("govdata_marts"), RUN_TIMEOUT, cluster)
        timings["both DAGs (celery)"] = time.perf_counter() - t

        if reference_run.wait(timeout=RUN_TIMEOUT) != 0:
            raise AssertionError(f"govdata run exited {reference_run.returncode}: "
                                 f"{(base / 'govdata-run.log').read_text(errors='replace')[-2000:]}")
        timings["govdata run (dag.test, alongside)"] = time.perf_counter() - reference_started
        task_instances = _rows(metadata, "SELECT dag_id, task_id, map_index, state, "
                                         "extract(epoch FROM end_date - start_date) FROM task_instance")
        runs = _rows(metadata, "SELECT dag_id, run_id, run_type, state FROM dag_run ORDER BY id")
    # every Airflow process is stopped here (ExitStack), before the assertions read the results
    t = time.perf_counter()
    state = {"celery": content(warehouse_url, CROSS_RUN_COLUMNS), "reference": content(reference_url, CROSS_RUN_COLUMNS)}
    timings["compare"] = time.perf_counter() - t
    summary = json.loads(Path(run_path(str(lake), "celery_e2e", "report", "summary.json")).read_text(encoding="utf-8"))
    [reference_summary] = reference_lake.glob("*/report/summary.json")
    reference = json.loads(reference_summary.read_text(encoding="utf-8"))
    timings["total"] = time.perf_counter() - t0
    print("\ncelery e2e timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print("task seconds (start to end, as Airflow records them): " + ", ".join(
        f"{t}{'' if m < 0 else f'[{m}]'} {float(sec):.1f}" for d, t, m, _, sec in sorted(task_instances, key=lambda r: r[4] or 0)))
    return {"task_instances": task_instances, "runs": runs, "logs": {n: _task_logs(p) for n, p in logs.items()},
            "state": state, "summary": summary, "reference": reference, "timings": timings,
            "sources": len(list((world / "sources").glob("*.yaml")))}


def test_both_dags_succeed_the_marts_dag_started_by_the_asset(distributed):
    runs = distributed["runs"]
    assert [(d, t, s) for d, _, t, s in runs] == [("govdata_pipeline", "manual", "success"),
                                                 ("govdata_marts", "asset_triggered", "success")]
    assert {s for *_, s, _ in distributed["task_instances"]} == {"success"}


def test_both_workers_ran_tasks(distributed):
    logs = distributed["logs"]
    ran = {(d, t, m) for d, t, m, *_ in distributed["task_instances"]}
    assert all(logs[name] for name in WORKERS), {n: len(v) for n, v in logs.items()}
    assert logs["worker1"].isdisjoint(logs["worker2"])      # each task instance ran once, on one worker
    assert logs["worker1"] | logs["worker2"] == ran         # and every one of them on a worker
    # the mapped extracts alone (9 sources) spread over both
    extracts = {m for d, t, m in ran if t == "extract"}
    assert len(extracts) == distributed["sources"]


def test_the_same_warehouse_as_govdata_run(distributed):
    celery, reference = distributed["state"]["celery"], distributed["state"]["reference"]
    assert differing_tables(reference, celery, CROSS_RUN_COLUMNS) == {}
    assert len(celery["dim_person"]) > PERSONS * 0.9 and len(celery["fact_application"]) > 0


def test_the_same_run_report_headline(distributed):
    assert distributed["summary"]["headline"] == distributed["reference"]["headline"]


def test_stopping_the_cluster_stops_every_process_of_every_group(tmp_path):
    """The teardown the fixture relies on, also when a component has children of its own (as the
    workers' pool and task processes are) and ignores SIGTERM."""
    import psutil

    cluster = Cluster(tmp_path, dict(os.environ))
    stubborn = cluster.start("stubborn", ["-c", "trap '' TERM; sleep 300 & sleep 300 & wait"], program="/bin/bash")
    polite = cluster.start("polite", ["-c", "sleep 300 & wait"], program="/bin/bash")
    _wait("the children", lambda: len(psutil.Process(stubborn.pid).children()) == 2
          and len(psutil.Process(polite.pid).children()) == 1, 10, every=0.05)
    pids = [p.pid for leader in (stubborn, polite) for p in (psutil.Process(leader.pid), *psutil.Process(leader.pid).children())]
    cluster.stop(grace=1)

    def alive() -> list[int]:
        out = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    # SIGKILL is delivered asynchronously: a killed child may still be exiting when stop returns
    _wait("every process of both groups to end", lambda: not alive(), 10, every=0.05)
    assert alive() == []
