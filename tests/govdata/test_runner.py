"""govdata.runner's Airflow settings, read back through Airflow's own configuration in a fresh
process (they must be in place before airflow is imported)."""
from __future__ import annotations

import os
import subprocess
import sys

READ_POLL = ("import sys; from pathlib import Path; from govdata.runner import configure_airflow; "
             "configure_airflow(Path(sys.argv[1])); from airflow.configuration import conf; "
             "print(conf.getint('workers', 'min_heartbeat_interval'))")


def _poll_seconds(home, **env) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    out = subprocess.run([sys.executable, "-c", READ_POLL, str(home)], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_task_supervisors_poll_every_second(tmp_path):
    # Airflow's default (5 s) kept an executor slot idle up to 5 s after a large task exited
    assert _poll_seconds(tmp_path) == 1


def test_an_operators_own_poll_setting_wins(tmp_path):
    assert _poll_seconds(tmp_path, AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="3") == 3
