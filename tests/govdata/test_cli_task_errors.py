"""Task failures: deterministic ones fail at once (no retry), transient ones are retried, and the
run's last line names the failed task and its (redacted) error. Real Airflow, real drivers."""
from __future__ import annotations

import sqlite3
import time

import pytest
import sqlalchemy as sa

from govdata.errors import (ConfigError, DataError, TransientError, describe, is_transient, read_failures, redact,
                            task_errors)


def test_redact_ids_phones_and_long_numbers():
    assert redact("ID 110101199003071234 and 11010119900307123X, old 110101900307123") == \
        "ID <redacted> and <redacted>, old <redacted>"
    assert redact("call 13812345678, +86 138-1234-5678 or 010-62345678") == \
        "call <redacted>, <redacted> or <redacted>"
    # govdata's own wording keeps its numbers: counts, ports, dates, run ids
    kept = "1,921 rows; port 5432; run manual__2026-12-02T02:39:36.799425+00:00"
    assert redact(kept) == kept


def test_describe_is_one_redacted_line():
    exc = KeyError("110101199003071234")
    assert describe(exc) == "KeyError: '<redacted>'"
    assert describe(ValueError("bad\n  value 13812345678\n")) == "bad value <redacted>"
    assert describe(ConfigError("x: table T does not exist")) == "x: table T does not exist"


def _refused_postgres_error(free_port) -> Exception:
    engine = sa.create_engine(f"postgresql+psycopg://u:p@127.0.0.1:{free_port}/db", connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("connected to a port nobody listens on")


def _locked_sqlite_error(tmp_path) -> Exception:
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sqlite3.connect(path, timeout=0).execute("SELECT * FROM t")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        holder.close()
    raise AssertionError("read a table under an exclusive lock")


def _missing_table_error(tmp_path) -> Exception:
    try:
        sqlite3.connect(tmp_path / "empty.sqlite").execute("SELECT * FROM T_RK_JBXX")
    except sqlite3.OperationalError as exc:
        return exc
    raise AssertionError("read a missing table")


def test_only_connection_timeout_and_lock_failures_are_transient(tmp_path):
    from tests.servers import free_port

    assert is_transient(_refused_postgres_error(free_port()))
    assert is_transient(_locked_sqlite_error(tmp_path))
    assert is_transient(TimeoutError("read timed out"))
    assert is_transient(TransientError("x"))
    assert not is_transient(_missing_table_error(tmp_path))
    assert not is_transient(ConfigError("connection refused"))  # govdata's own class decides
    assert not is_transient(DataError("critical checks failed"))
    assert not is_transient(ValueError("invalid literal"))
    assert not is_transient(KeyError("id_number"))


def test_task_errors_fail_deterministic_errors_at_once_and_retry_transient_ones(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    errors = tmp_path / "errors.jsonl"
    monkeypatch.setenv("GOVDATA_ERROR_FILE", str(errors))
    with pytest.raises(AirflowFailException) as failed:
        with task_errors("extract [gongan]"):
            raise _missing_table_error(tmp_path)
    assert str(failed.value) == "OperationalError: no such table: T_RK_JBXX"
    assert failed.value.__cause__ is None and failed.value.__suppress_context__  # the raw driver text stays out
    with pytest.raises(TransientError) as retried:
        with task_errors("extract [shebao]"):
            raise _locked_sqlite_error(tmp_path)
    assert str(retried.value) == "OperationalError: database is locked"
    with pytest.raises(AirflowFailException):
        with task_errors("normalise [gongan]"):
            raise ValueError("row with ID 110101199003071234 has no key")
    assert read_failures(str(errors)) == [
        {"task": "extract [gongan]", "message": "OperationalError: no such table: T_RK_JBXX", "transient": False},
        {"task": "extract [shebao]", "message": "OperationalError: database is locked", "transient": True},
        {"task": "normalise [gongan]", "message": "row with ID <redacted> has no key", "transient": False},
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_task_is_named_last_and_not_retried(tmp_path, monkeypatch, workers):
    """The real govdata_marts DAG with retries on (2, 30 s backoff) and a manifest that is not
    there: the manifest task fails once, at once, and the last line says so; with 2 workers the
    task ran in a process of its own (LocalExecutor), which recorded its error for this one."""
    import os
    from pathlib import Path

    from govdata.runner import PipelineFailed, _test_run, configure_airflow, ensure_metadata_db, load_dag

    home = Path(os.environ["AIRFLOW_HOME"])  # the session's throwaway home (conftest.py)
    configure_airflow(home)
    ensure_metadata_db(home)
    monkeypatch.setenv("GOVDATA_TASK_RETRIES", "2")   # the DAG default, read when the file is loaded
    missing = tmp_path / "lake" / "run" / "manifest.json"
    start = time.monotonic()
    with pytest.raises(PipelineFailed) as failed:
        _test_run(load_dag("govdata_marts.py", "marts_dag"), {"manifest": str(missing)}, workers)
    assert time.monotonic() - start < 30  # a retry would have waited 30 s first
    lines = failed.value.lines
    assert lines[0].startswith("govdata_marts run manual__") and lines[0].endswith(" ended failed")
    assert lines[1:] == [f"failed: manifest: FileNotFoundError: [Errno 2] No such file or directory: '{missing}'"]
