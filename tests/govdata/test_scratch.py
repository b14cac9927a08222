"""Scratch folders: removed on exit, and those of a killed process removed by the next one."""
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from govdata.scratch import remove_orphans, scratch_dir

PREFIX = "govdata-test-scratch-"

# a process that takes a scratch folder, writes a file in it, prints its path and waits
HOLDER = f"""
import sys, time
from govdata.scratch import scratch_dir
with scratch_dir({PREFIX!r}) as path:
    open(path + "/previous.parquet", "w").write("rows")
    print(path, flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def _holder() -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=os.environ.copy())
    return process, Path(process.stdout.readline().strip())


def test_a_scratch_folder_is_removed_on_exit_even_after_an_error(temp_root):
    with pytest.raises(RuntimeError), scratch_dir(PREFIX) as path:
        assert Path(path).parent == temp_root
        Path(path, "previous.parquet").write_text("rows")
        raise RuntimeError("task failed")
    assert list(temp_root.iterdir()) == []


def test_a_killed_tasks_folder_is_removed_by_the_next_and_a_live_ones_is_kept(temp_root):
    killed, killed_path = _holder()
    alive, alive_path = _holder()
    other = temp_root / f"{PREFIX}not-a-scratch-folder"   # no lock file: another program's
    other.mkdir()
    try:
        os.kill(killed.pid, signal.SIGKILL)   # as the OOM killer does: no cleanup runs
        killed.wait()
        assert (killed_path / "previous.parquet").exists()
        with scratch_dir(PREFIX) as path:
            assert sorted(p.name for p in temp_root.iterdir()) == \
                sorted([alive_path.name, Path(path).name, other.name])
        assert (alive_path / "previous.parquet").read_text() == "rows"
    finally:
        alive.communicate("\n")
    assert alive.returncode == 0
    assert sorted(p.name for p in temp_root.iterdir()) == [other.name]
    assert remove_orphans(PREFIX) == []
