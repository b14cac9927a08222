"""The executor `govdata run` hands its tasks to (govdata.runner.local_executor), and the wait
of dag.test's loop cut short when that executor has work to hand out.

Order: Airflow's scheduler queues the ready task instances by priority weight, then logical
date, then map index, so a mapped task's instances start in map-index order; the plan lists the
sources largest first (govdata.preflight.by_estimated_rows), so the longest extracts start
first. dag.test queues the ready instances in no particular order and the executor keeps that
order among equal weights: this one breaks the tie by map index, as the scheduler does.

Wait: dag.test's loop sleeps a whole second whenever no task became ready, so each task that
ends kept its slot idle up to a second before the next task was handed out (about 35 times on
a run's critical path). Inside dag_test_wakes_on_results that sleep ends as soon as a task
process reports to the executor or a queued task could take a free slot.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from airflow.executors.local_executor import LocalExecutor

_STARTED: list[MapIndexOrderedLocalExecutor] = []   # the executor a dag.test in this process runs on
POLL_SECONDS = 0.02   # a pipe poll (result_queue.empty()) this often while dag.test would sleep


def by_priority_then_map_index(queued: dict) -> list:
    """The executor's queued (key, workload) pairs, highest priority weight first, then lowest
    map index (an unmapped task's -1 first)."""
    def order(item) -> tuple:
        ti = getattr(item[1], "ti", None)
        return (-(getattr(ti, "priority_weight", 0) or 0), getattr(ti, "map_index", -1))

    return sorted(queued.items(), key=order)


class MapIndexOrderedLocalExecutor(LocalExecutor):
    """Airflow's LocalExecutor starting equal-weight tasks in map-index order."""

    def __init__(self, *args, **kwargs):
        # [core] parallelism as configured now: Airflow's default is read once, when its executor
        # module is first imported, which in a process that imported it before `govdata run`
        # set the task slots (a test session) left 32 slots instead of the run's two
        from airflow.configuration import conf

        if not args:
            kwargs.setdefault("parallelism", conf.getint("core", "parallelism"))
        super().__init__(*args, **kwargs)

    def order_queued_tasks_by_priority(self) -> list:
        return by_priority_then_map_index(self.queued_tasks)

    def start(self) -> None:
        super().start()
        _STARTED.append(self)

    def end(self) -> None:
        try:
            super().end()
        finally:
            if self in _STARTED:
                _STARTED.remove(self)

    def heartbeat(self) -> None:
        """The workers' reports read before the queued tasks are handed out (Airflow's order is the
        reverse), so a slot freed since the last heartbeat is filled in this one."""
        self._read_results()
        super().heartbeat()

    def has_work(self) -> bool:
        """A worker reported (a task started or ended), or a queued task fits a free slot."""
        return not self.result_queue.empty() or bool(self.queued_tasks and self.slots_available > 0)

    def wait_for_work(self, seconds: float, sleep=time.sleep) -> None:
        deadline = time.monotonic() + seconds
        sleep(min(POLL_SECONDS, seconds))   # never a busy loop, whatever has_work says
        while not self.has_work() and (left := deadline - time.monotonic()) > 0:
            sleep(min(POLL_SECONDS, left))


@contextlib.contextmanager
def dag_test_wakes_on_results() -> Iterator[None]:
    """Within: dag.test's one-second sleeps (its loop's, found by the caller's code object) last
    until this process's executor has work (MapIndexOrderedLocalExecutor.wait_for_work), at most
    the second asked for; every other sleep in the process is left as it is."""
    from airflow.sdk.definitions.dag import DAG

    loop, real = DAG.test.__code__, time.sleep

    def sleep(seconds: float) -> None:
        if _STARTED and sys._getframe(1).f_code is loop:
            _STARTED[-1].wait_for_work(seconds, real)
        else:
            real(seconds)

    time.sleep = sleep
    try:
        yield
    finally:
        time.sleep = real
