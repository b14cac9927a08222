"""Forked worker processes for work a stage splits (validate's sources, normalise's chunks): a
task process may use the cores its executor gave it, and a forked worker starts in milliseconds
with every module the task imported."""
from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(jobs: int | None = None) -> int:
    """Worker processes for a stage's work: one per usable core, at most two (the machines are
    shared), never more than there are jobs."""
    return max(1, min(2, usable_cores(), jobs if jobs is not None else 2))


def can_fork() -> bool:
    """Whether this process may fork workers (not on platforms without fork, nor from a daemonic
    process, which multiprocessing forbids children: a Celery prefork worker's tasks run one)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _forking_with_default_sigterm() -> Iterator[None]:
    """The first workers are forked with SIGTERM's default action already: a terminate right after
    a failure could reach a worker before its initializer ran, into a handler inherited from the
    parent that ignores SIGTERM, and join would then wait forever. Only the main thread may set
    handlers; elsewhere the initializer alone resets it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def fork_pool(workers: int, **options) -> Iterator:
    """A pool of forked workers, ended by close + join, not the context manager's terminate():
    terminate SIGTERMs idle workers, and in an Airflow task process the workers inherit a SIGTERM
    handler that ignores it, so the parent would wait for them forever. terminate only when the
    work failed (then nothing waits on the workers' results); the workers take SIGTERM's default
    action again, so that terminate (or the task being killed) ends them."""
    with _forking_with_default_sigterm():
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_default_sigterm, **options)
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


@contextmanager
def beside(work: Callable[[], T]) -> Iterator[Callable[[], T]]:
    """Runs `work` in a forked process while the caller goes on; yields the function that waits
    for its (pickled) result, re-raising the exception it raised. The child takes SIGTERM's
    default action and is terminated if the caller leaves without its result (it failed). Where
    this process may not fork (can_fork), `work` runs in this process when its result is asked for."""
    def one() -> Iterator[T]:
        yield work()

    with beside_items(one) as items:
        def result() -> T:
            value = next(items)
            for _ in items:   # the child's end: joined
                pass
            return value

        yield result


@contextmanager
def beside_items(work: Callable[[], Iterable[T]]) -> Iterator[Iterator[T]]:
    """beside for work that yields its results one by one: each reaches the caller as soon as
    the child sent it (pickled), so the caller may use the first while the child builds the
    next; the exception the work raised comes in its place. Where this process may not fork,
    the work runs in this process as the items are asked for."""
    if not can_fork():
        yield iter(work())
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    with _forking_with_default_sigterm():
        child = context.Process(target=_send_items, args=(work, sender), name="govdata-beside", daemon=False)
        child.start()
    sender.close()

    def items() -> Iterator[T]:
        while True:
            try:
                kind, value = receiver.recv()
            except EOFError:
                child.join()
                raise RuntimeError(f"the forked process building beside this task ended without a result "
                                   f"(exit code {child.exitcode}; -9 is the kernel's out-of-memory kill)") from None
            if kind == "item":
                yield value
                continue
            child.join()
            if kind == "error":
                raise value
            return

    try:
        yield items()
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        receiver.close()


def _send_items(work: Callable[[], Iterable[T]], sender) -> None:
    _default_sigterm()
    try:
        for item in work():
            sender.send(("item", item))
        outcome = ("done", None)
    except BaseException as exc:   # sent to the parent, which raises it
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        outcome = ("error", exc)
    sender.send(outcome)
    sender.close()
