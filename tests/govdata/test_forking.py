"""govdata.forking.beside: work in a forked process beside the caller, its result or its failure
brought back, and no process left behind."""
from __future__ import annotations

import os
import signal
import time

import pytest

from govdata.forking import beside


def test_the_result_comes_from_a_forked_process():
    parent = os.getpid()
    with beside(lambda: {"pid": os.getpid(), "rows": [1, 2, 3]}) as result:
        here = sum(range(10))
        got = result()
    assert (here, got["rows"]) == (45, [1, 2, 3])
    assert got["pid"] != parent


def test_the_childs_exception_is_raised_by_the_caller():
    def fails():
        raise ValueError("table fact_application: column rating cannot be read as int8")

    with beside(fails) as result, pytest.raises(ValueError, match="^table fact_application: column rating"):
        result()


def test_an_exception_that_cannot_be_pickled_comes_back_as_its_text():
    class Local(Exception):   # a local class: pickle cannot name it
        pass

    def fails():
        raise Local("owners: 3 holders")

    with beside(fails) as result, pytest.raises(RuntimeError, match="^Local: owners: 3 holders$"):
        result()


def test_a_child_killed_by_the_kernel_is_an_error_naming_its_exit_code():
    with beside(lambda: os.kill(os.getpid(), signal.SIGKILL)) as result, \
            pytest.raises(RuntimeError, match=r"ended without a result \(exit code -9"):
        result()


def test_a_caller_failing_first_leaves_no_child_running(tmp_path):
    marker = tmp_path / "pid"

    def waits():
        marker.write_text(str(os.getpid()))
        time.sleep(600)

    with pytest.raises(KeyError), beside(waits):
        while not marker.exists():
            time.sleep(0.01)
        raise KeyError("the caller's own failure")
    with pytest.raises(ProcessLookupError):   # terminated and reaped
        os.kill(int(marker.read_text()), 0)


def test_items_reach_the_caller_while_the_child_still_works(tmp_path):
    """beside_items: the first item is the caller's before the child makes the second (the child
    waits for a file the caller writes once it has the first)."""
    from govdata.forking import beside_items

    go_on = tmp_path / "go_on"

    def work():
        yield ("table", "identifier_owner", os.getpid())
        deadline = time.monotonic() + 30
        while not go_on.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield ("table", "fact_application", go_on.exists())

    with beside_items(work) as items:
        first = next(items)
        go_on.touch()
        rest = list(items)
    assert first[:2] == ("table", "identifier_owner") and first[2] != os.getpid()
    assert rest == [("table", "fact_application", True)]


def test_an_exception_after_some_items_comes_in_place_of_the_next():
    from govdata.forking import beside_items

    def work():
        yield 1
        raise ValueError("fact_certificate: 2 owners")

    with beside_items(work) as items:
        assert next(items) == 1
        with pytest.raises(ValueError, match="^fact_certificate: 2 owners$"):
            next(items)
