"""Scratch folders of a task on local disk that a killed task does not leave behind.

A task's scratch (the load's copy of the previous owners and facts, link_plan's copy of the
previous xref: at 5M persons hundreds of MB each) is removed when the task ends. A task killed
by the kernel's OOM killer or by SIGKILL runs no cleanup, and Airflow's retry starts a new
folder: every attempt would leave its copy in the temporary directory. So each folder holds
a lock (flock) for as long as its task lives, and the next scratch folder of the same kind
removes those whose lock nobody holds. A lock held by a forked child counts as held.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
from typing import Iterator

LOCK = ".owner.lock"


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[str]:
    """A new folder in the temporary directory, removed on exit; folders of the same prefix
    left by dead processes are removed first."""
    remove_orphans(prefix)
    path = tempfile.mkdtemp(prefix=prefix)
    fd = _hold_lock(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _hold_lock(path: str) -> int:
    """Locks the folder for this process: the lock file is locked under another name and then
    renamed, so that a sweep never finds LOCK unlocked in a live folder."""
    pending = os.path.join(path, LOCK + ".new")
    fd = os.open(pending, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(pending, os.path.join(path, LOCK))
    return fd


def remove_orphans(prefix: str) -> list[str]:
    """Removes the prefix's folders in the temporary directory whose lock no process holds
    (a folder without a lock file is left alone: another program's, or not yet locked).
    Returns the folders removed."""
    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), glob.escape(prefix) + "*"))):
        try:
            fd = os.open(os.path.join(path, LOCK), os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue   # its task is alive
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


__all__ = ["remove_orphans", "scratch_dir"]
