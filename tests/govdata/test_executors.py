"""govdata.executors: the LocalExecutor of `govdata run` hands out equal-weight tasks in map-index
order and tells dag.test's loop at once when a worker reported (tests/e2e/test_local_executor.py
runs it under a whole DAG)."""
from __future__ import annotations

import time
from types import SimpleNamespace

from govdata.executors import MapIndexOrderedLocalExecutor, by_priority_then_map_index, dag_test_wakes_on_results


def _workload(weight: int, map_index: int) -> SimpleNamespace:
    return SimpleNamespace(ti=SimpleNamespace(priority_weight=weight, map_index=map_index))


def test_queued_tasks_go_by_weight_then_map_index():
    queued = {"extract-2": _workload(1, 2), "load": _workload(5, -1), "extract-0": _workload(1, 0),
              "extract-10": _workload(1, 10), "extract-1": _workload(1, 1)}
    assert [key for key, _ in by_priority_then_map_index(queued)] == [
        "load", "extract-0", "extract-1", "extract-2", "extract-10"]


def test_the_executor_has_work_once_a_worker_reports_and_only_then():
    executor = MapIndexOrderedLocalExecutor(parallelism=2)
    executor.start()
    try:
        assert executor.has_work() is False
        begun = time.monotonic()
        executor.wait_for_work(0.3)
        assert time.monotonic() - begun >= 0.3   # nothing reported: the whole wait
        executor.result_queue.put(("a task's key", "running", None))
        assert executor.has_work() is True
        begun = time.monotonic()
        executor.wait_for_work(30)
        assert time.monotonic() - begun < 5      # a report ends the wait (30 s otherwise)
    finally:
        executor.end()


def test_other_sleeps_keep_their_length_and_time_sleep_comes_back():
    real = time.sleep
    with dag_test_wakes_on_results():
        assert time.sleep is not real
        begun = time.monotonic()
        time.sleep(0.2)   # not dag.test's loop: slept in full
        assert time.monotonic() - begun >= 0.2
    assert time.sleep is real


def test_govdata_run_gets_its_executor_where_the_process_loaded_another_before(monkeypatch):
    """Airflow keeps the executor names it read for the life of the process: a test process (or
    any caller) that loaded the plain LocalExecutor before still gets govdata's."""
    from airflow.executors.executor_loader import ExecutorLoader
    from airflow.executors.local_executor import LocalExecutor

    from govdata.runner import LOCAL_EXECUTOR, use_executor

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    use_executor("LocalExecutor")
    assert type(ExecutorLoader.get_default_executor()) is LocalExecutor
    use_executor(LOCAL_EXECUTOR)
    assert type(ExecutorLoader.get_default_executor()) is MapIndexOrderedLocalExecutor
    use_executor("LocalExecutor")   # as the process had it


def test_the_executor_takes_the_task_slots_configured_when_it_is_made(monkeypatch):
    """Airflow reads [core] parallelism once, when its executor module is imported (before this
    test, at collection): the executor of `govdata run` reads it when it is made."""
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "2")
    assert MapIndexOrderedLocalExecutor().parallelism == 2
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "3")
    assert MapIndexOrderedLocalExecutor().parallelism == 3
