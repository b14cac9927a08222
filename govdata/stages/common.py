"""What every stage shares: timing, the progress line, source configs, entity kinds, errors."""
from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from pathlib import Path

from govdata.lake import private_umask
from govdata.memory import peak_rss_mb, release_memory, reset_peak_rss

PERSON, ENTERPRISE = "person", "enterprise"
LINKERS = {PERSON: ("link_persons", "xref_person", "person_id"),
           ENTERPRISE: ("link_enterprises", "xref_enterprise", "enterprise_id")}
OUTPUTS = ("xref", "golden", "history", "review", "evidence")


class QualityGateError(RuntimeError):
    """A critical data-quality expectation failed: nothing of this run may be loaded."""


def _timed(fn):
    """Adds the stage's timing to its result dict (shown in the run report):

    - `seconds`: the stage's work, measured from after its imports: the modules its body imports
      (found in its source) are imported first and counted as start-up;
    - `started` / `finished`: wall-clock times (epoch seconds) of that work, from which the report
      takes each stage's wall time (first start to last finish over its tasks);
    - `peak_rss_mb`: the process's peak resident memory during the work (Linux; 0 elsewhere);
    - `startup_seconds`: the task's start-up before the work: the stage's imports, plus, in a task
      process an executor forked (Celery, Local), the time since the fork (parsing the DAG file,
      the task body's imports); dag.test runs every task in one process and has no such part.
    - `inputs_span`, `inputs_startup_seconds`: for a stage that gathers mapped results (a list of
      stage results, e.g. link_merge over the link partitions), the wall span [first start, last
      finish] of those and their summed start-up.
    """
    imports = _body_imports(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        private_umask()   # every file a stage creates is the owner's only (docs/SECURITY.md)
        global _STAGES_IN_PROCESS
        startup_begin = time.perf_counter()
        for module in imports:
            importlib.import_module(module)
        startup = time.perf_counter() - startup_begin
        if _STAGES_IN_PROCESS == 0 and _forked_task_process():
            startup = max(startup, _process_age())   # since the fork: the imports above included
        _STAGES_IN_PROCESS += 1
        reset_peak_rss()
        started, start = time.time(), time.perf_counter()
        result = fn(*args, **kwargs)
        result["seconds"] = round(time.perf_counter() - start, 3)
        result["peak_rss_mb"] = peak_rss_mb()
        result["started"], result["finished"] = round(started, 3), round(started + result["seconds"], 3)
        result["startup_seconds"] = round(startup, 3)
        span = _inputs_span(args[0] if args else None)
        if span:
            result["inputs_span"], result["inputs_startup_seconds"] = span
        _progress(fn.__name__, result)
        release_memory()
        return result

    return wrapper


_STAGES_IN_PROCESS = 0


def _body_imports(fn) -> tuple[str, ...]:
    """Absolute modules imported inside fn's body (`from govdata.report import x` -> govdata.report)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return ()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return tuple(dict.fromkeys(found))


def _forked_task_process() -> bool:
    """This process runs one Airflow task, forked by an executor's supervisor (Celery, Local): its
    task runner talks to the supervisor over a socket (a CommsDecoder). Under dag.test (`govdata
    run`) the tasks run inside the one long-lived process, whose age is no task's start-up."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return type(getattr(runner, "SUPERVISOR_COMMS", None)).__name__ == "CommsDecoder"


def _process_age() -> float:
    """Seconds since this process began (a forked task process: since the fork)."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - start-up is reported when available
        return 0.0


def _inputs_span(value) -> tuple[list[float], float] | None:
    """([first start, last finish], summed start-up) of the stage results a gathering stage got."""
    if not isinstance(value, list | tuple):
        return None
    timed = [v for v in value if isinstance(v, dict) and "started" in v and "finished" in v]
    if not timed:
        return None
    return ([min(v["started"] for v in timed), max(v["finished"] for v in timed)],
            round(sum(v.get("startup_seconds", 0) for v in timed), 3))


def _progress(stage: str, result: dict) -> None:
    """One line per finished stage on the console of `govdata run` (the DAG log has the rest).
    GOVDATA_PROGRESS: 1 prints it on stderr; a path appends it to that file, which `govdata run`
    relays to its console when the tasks run in processes of their own (runner.progress_relay)."""
    target = os.environ.get("GOVDATA_PROGRESS")
    if not target:
        return
    what = result.get("source") or ""
    rows = result.get("rows_in", result.get("rows"))
    detail = f"{rows:,} rows" if isinstance(rows, int) else ""
    line = f"  ✓ {stage:<15} {what:<12} {detail:>14}  {result['seconds']:.1f}s"
    if target == "1":
        print(line, file=sys.stderr, flush=True)
        return
    with open(target, "a", encoding="utf-8") as out:   # one short append: lines never interleave
        out.write(line + "\n")


def _source(path: str):
    from govdata.standards.sources import load_source

    return load_source(Path(path))
