"""Named points where a run can be held, so that a crash test kills it at a known moment.

Crash safety is tested from the outside: the test starts the real `govdata run`, waits until
the run reaches a failpoint, and kills its process group with SIGKILL. A failpoint is a no-op
unless GOVDATA_FAILPOINTS names it (comma-separated); a named failpoint writes a marker file
`<name>` into GOVDATA_FAILPOINT_DIR and then waits, so the killer knows where the run stands.
The same idea as the failpoints of TiKV or FreeBSD's fail(9), reduced to "hold here".
"""
from __future__ import annotations

import os
import time
from pathlib import Path

ENABLED = "GOVDATA_FAILPOINTS"
MARKERS = "GOVDATA_FAILPOINT_DIR"
HOLD_SECONDS = 600   # long enough for any test to kill the run; never reached in operation


def failpoint(name: str) -> None:
    """Hold the run here when the failpoint `name` is enabled (tests only)."""
    enabled = os.environ.get(ENABLED)
    if not enabled or name not in {n.strip() for n in enabled.split(",")}:
        return
    folder = Path(os.environ.get(MARKERS, "."))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(str(os.getpid()))
    time.sleep(HOLD_SECONDS)
