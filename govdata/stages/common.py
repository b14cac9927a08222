"""What every stage shares: timing, the progress line, source configs, entity kinds, errors."""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

from govdata.lake import private_umask

PERSON, ENTERPRISE = "person", "enterprise"
LINKERS = {PERSON: ("link_persons", "xref_person", "person_id"),
           ENTERPRISE: ("link_enterprises", "xref_enterprise", "enterprise_id")}
OUTPUTS = ("xref", "golden", "history", "review", "evidence")


class QualityGateError(RuntimeError):
    """A critical data-quality expectation failed: nothing of this run may be loaded."""


def _timed(fn):
    """Adds the stage's wall time to its result dict (shown in the run report)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        private_umask()   # every file a stage creates is the owner's only (docs/SECURITY.md)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        result["seconds"] = round(time.perf_counter() - start, 3)
        _progress(fn.__name__, result)
        return result

    return wrapper


def _progress(stage: str, result: dict) -> None:
    """One line per finished stage on the console of `govdata run` (the DAG log has the rest)."""
    if not os.environ.get("GOVDATA_PROGRESS"):
        return
    what = result.get("source") or ""
    rows = result.get("rows_in", result.get("rows"))
    detail = f"{rows:,} rows" if isinstance(rows, int) else ""
    print(f"  ✓ {stage:<15} {what:<12} {detail:>14}  {result['seconds']:.1f}s", file=sys.stderr, flush=True)


def _source(path: str):
    from govdata.standards.sources import load_source

    return load_source(Path(path))
