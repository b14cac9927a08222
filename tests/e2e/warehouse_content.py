"""A warehouse's content, for comparing two warehouses (or one before and after) table by table:
every table, vault included, rows sorted, without the columns that name a run, a time or a lake
folder of a run, and without the tables that hold one entry per run by design. Shared by the e2e
tests that compare runs (tests/e2e/test_celery.py, tests/e2e/test_rerun_stability.py)."""
from __future__ import annotations

from govdata.warehouse.load import connect
from govdata.warehouse.schema import metadata, qualified

# Columns that name the run, or a time, or the lake folder of a run; and this run's own
# extraction count (an incremental rerun extracts nothing).
RUN_COLUMNS = frozenset({"run_id", "last_run", "assigned_run", "started_at", "finished_at", "updated_at",
                         "committed_at", "counts", "state", "rows_extracted"})
# One entry per run by design (dq_result; findings_history: the findings report's trends; link_model:
# the weights each run linked with).
LOGS = frozenset({"etl_run", "dq_result", "vault_commit", "vault_load", "findings_history", "link_model"})


def content(url: str, run_columns=RUN_COLUMNS, logs=LOGS) -> dict[str, list[tuple]]:
    """Every table, vault included, without its run columns: rows sorted (by repr, so that None
    and mixed types sort)."""
    out = {}
    with connect(url, vault=True) as db:
        for table in metadata.sorted_tables:
            if table.name in logs:
                continue
            cols = [c.name for c in table.columns if c.name not in run_columns]
            rows = db.fetchall(f"SELECT {', '.join(cols)} FROM {qualified(table)}")
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def columns(table: str, run_columns=RUN_COLUMNS) -> list[str]:
    """The columns content() reads of a table, in its order."""
    return [c.name for c in metadata.tables[table].columns if c.name not in run_columns]


def differing_tables(a: dict[str, list[tuple]], b: dict[str, list[tuple]], run_columns=RUN_COLUMNS) -> dict[str, str]:
    """Table -> a one-line description of how b differs from a (row counts, the first differing
    sorted row and its differing columns); empty when the two are the same. Names columns, never
    values (they may be personal)."""
    out = {}
    for table in sorted(set(a) | set(b)):
        ra, rb = a.get(table), b.get(table)
        if ra == rb:
            continue
        if ra is None or rb is None:
            out[table] = "missing on one side"
            continue
        first = next((i for i, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y), min(len(ra), len(rb)))
        names = columns(table, run_columns)
        cols = ([n for n, x, y in zip(names, ra[first], rb[first], strict=False) if x != y]
                if first < min(len(ra), len(rb)) else [])
        out[table] = f"{len(ra)} vs {len(rb)} rows, first difference at sorted row {first} in {cols}"
    return out
