"""govdata's error hierarchy, the retry decision, and redaction of every error text shown to people.

- ConfigError: a source YAML, a connection, a table or column, the warehouse URL is wrong.
  Rerunning changes nothing: never retried.
- DataError: the data itself cannot go on (a failed quality gate, a broken invariant).
  Never retried either: a bad batch must not be retried into the warehouse.
- TransientError: the outside world was briefly unavailable (connection refused, timeout,
  a lock). Only these are retried, with Airflow's exponential backoff.

`is_transient` classifies any exception (also drivers' own) the same way; `task_errors` wraps a
DAG task's body so that non-transient failures raise AirflowFailException (Airflow then skips
the remaining retries) and every failure is recorded, redacted, for `govdata run`'s last line.

This module must stay importable without Airflow: `govdata run` runs its preflight before
Airflow is imported.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator

ERROR_FILE_ENV = "GOVDATA_ERROR_FILE"


class GovdataError(Exception):
    """Base of govdata's own errors; the message is written for the person reading the console."""


class ConfigError(GovdataError, ValueError):
    """Configuration is wrong (sources, connections, tables, columns, warehouse URL)."""


class DataError(GovdataError):
    """The data cannot go on as it is (quality gate, reconciliation, broken invariant)."""


class TransientError(GovdataError):
    """A resource was briefly unavailable; trying again later may succeed."""


# Texts of driver errors that mean "try again later". Anything else is deterministic:
# a wrong name, a missing table or file, a syntax error, bad data.
_TRANSIENT_TEXT = re.compile(
    r"connection refused|could not connect to server|connection (?:timed out|reset|was closed|closed unexpectedly)"
    r"|server closed the connection|timed? ?out|timeout expired|temporarily unavailable|too many connections"
    r"|database is locked|could not set lock|conflicting lock|lock wait timeout|deadlock detected|deadlock found"
    r"|could not serialize access|lost connection|gone away|the database system is (?:starting up|shutting down)"
    r"|no route to host|network is unreachable|name or service not known|temporary failure in name resolution",
    re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: only connection, timeout and lock failures qualify."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (ConfigError, DataError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):  # ConnectionRefusedError, ConnectionResetError, …
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the driver's error may be the cause
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)) or _TRANSIENT_TEXT.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


# Digit runs that may be a citizen ID (15/18 chars, last may be X), a phone number (11-digit
# mobile, landline with area code, +86 prefix) or any other long identifier. Seven or more
# digits never occur in govdata's own wording (counts are printed with thousands separators).
_IDENTIFIER = re.compile(
    r"(?<![0-9])(?:\+?86[- ]?)?(?:1[3-9][0-9][- ]?[0-9]{4}[- ]?[0-9]{4}|0[0-9]{2,3}-[0-9]{7,8}|[0-9]{7,}[Xx]?)(?![0-9])")


def redact(text: str) -> str:
    """The text with every ID-, phone- or other long number replaced by `<redacted>`."""
    return _IDENTIFIER.sub("<redacted>", str(text))


def describe(exc: BaseException) -> str:
    """One line for a person: govdata's message as is, other exceptions with their type; redacted."""
    message = " ".join(str(exc).split())  # one line, whatever the driver printed
    if not message or not isinstance(exc, (GovdataError, ValueError, RuntimeError)):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return redact(message)[:1000]


def record_failure(task: str, message: str, transient: bool) -> None:
    """Appends the failure of a task to the run's error file (set by `govdata run`), if any."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"task": task, "message": message, "transient": transient}, ensure_ascii=False) + "\n")


def read_failures(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def task_errors(task: str) -> Iterator[None]:
    """Wraps a DAG task's body: transient failures are re-raised (Airflow retries them with
    backoff), every other failure becomes AirflowFailException (no retry). Both carry the
    redacted one-line message only; the original traceback goes to the task log at INFO,
    redacted too (driver messages can quote the raw values of a row)."""
    try:
        yield
    except Exception as exc:
        import logging
        import traceback

        from airflow.sdk.exceptions import AirflowFailException

        logging.getLogger(__name__).info("%s failed:\n%s", task, redact("".join(traceback.format_exception(exc))))
        if isinstance(exc, AirflowFailException):
            record_failure(task, redact(str(exc)), False)
            raise
        message, transient = describe(exc), is_transient(exc)
        record_failure(task, message, transient)
        if transient:
            raise TransientError(message) from None
        raise AirflowFailException(message) from None
