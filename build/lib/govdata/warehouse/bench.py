"""Load throughput: `python -m govdata.warehouse.bench URL N [--reload]` prints rows/s (targets: PostgreSQL ≥ 300k,
DuckDB ≥ 1M rows/s). Times load_tables end to end (frame → Arrow → COPY/register → merge)."""
from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from govdata.warehouse.load import init_warehouse, load_tables


def synthetic_xref(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """xref_person rows: the widest-volume table of a run (one row per source record)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n_rows)
    return pd.DataFrame({
        "source_system": pd.Series(np.array(["gongan", "shebao", "minzheng", "weijian"])[ids % 4], dtype="string[pyarrow]"),
        "source_record_id": pd.Series(ids.astype(str), dtype="string[pyarrow]"),
        "person_id": pd.Series(np.char.add("P", np.char.zfill((ids // 3).astype(str), 12)), dtype="string[pyarrow]"),
        "match_rule": pd.Series(np.array(["id", "repaired_id", "probabilistic", "singleton"])[rng.integers(0, 4, n_rows)],
                                dtype="string[pyarrow]"),
        "match_score": rng.random(n_rows),
        "run_id": pd.Series(["bench"] * n_rows, dtype="string[pyarrow]"),
    })


def bench_load(url: str, n_rows: int, repeat_upsert: bool = False) -> float:
    """Rows per second of one load of n_rows xref_person rows (a second load of the same rows,
    i.e. a full upsert, when repeat_upsert)."""
    init_warehouse(url)
    frame = synthetic_xref(n_rows)
    if repeat_upsert:
        load_tables(url, {"xref_person": frame}, "bench")
    started = time.perf_counter()
    load_tables(url, {"xref_person": frame}, "bench")
    return n_rows / (time.perf_counter() - started)


if __name__ == "__main__":
    import os

    url, n = sys.argv[1], int(sys.argv[2])
    print(f"insert: {bench_load(url, n):,.0f} rows/s (load average {os.getloadavg()[0]:.2f})")
    if "--reload" in sys.argv[3:]:  # a fresh warehouse is needed for the first-load figure above
        print(f"reload (full upsert): {bench_load(url, n, repeat_upsert=True):,.0f} rows/s "
              f"(load average {os.getloadavg()[0]:.2f})")
