"""Stage 0, plan: preflight of every source, connection and the warehouse, then the run's dict."""
from __future__ import annotations

from datetime import datetime, timezone

from govdata.lake import safe_run_id


def plan_run(sources_dir: str, lake: str, warehouse_url: str, run_id: str, full_refresh: bool = False) -> dict:
    """Preflight before any work (govdata/preflight.py): every source YAML, connection, table and
    mapped column, the warehouse URL and its reachability. All problems are raised together as
    one ConfigError (never retried)."""
    from govdata.preflight import by_estimated_rows, preflight

    report = preflight(sources_dir, warehouse_url, lake, resolve_airflow_connections=True)
    report.raise_for_problems()
    sources = by_estimated_rows(report.sources, report.estimated_rows)
    return {
        "run_id": run_id,
        "run_key": safe_run_id(run_id),
        "lake": lake,
        "warehouse_url": warehouse_url,
        "full_refresh": bool(full_refresh),
        "started_at": datetime.now(timezone.utc).isoformat(),
        # largest first: the mapped extracts start in this order (map_index), the longest first
        "sources": [{"name": s.name, "path": str(s.path), "kind": s.kind,
                     "estimated_rows": report.estimated_rows.get(s.name)} for s in sources],
    }
