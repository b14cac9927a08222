"""The memory a process holds: its peak (VmHWM) per stage, and handing freed memory back."""
from __future__ import annotations

from pathlib import Path


def peak_rss_mb() -> int:
    """This process's peak resident set since the last reset_peak_rss (VmHWM), in MB; 0 when the
    system does not say (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window for this process (Linux: `5` to /proc/self/clear_refs resets
    VmHWM), so each stage reports its own peak even when one process runs them all."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Hands the memory a finished stage freed back to the OS. `govdata run` (dag.test) runs
    every task in one process and a Celery worker reuses its process: without this, the heap
    high-water mark of one stage stays resident under the next (glibc keeps freed arenas, Arrow's
    allocator keeps freed pages)."""
    import ctypes

    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - an allocator without the call keeps its pages
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc (macOS, musl): nothing to trim
        pass


__all__ = ["peak_rss_mb", "release_memory", "reset_peak_rss"]
