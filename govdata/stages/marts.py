"""Stages 6-8 of the marts DAG: warehouse checks, mart refresh, findings and review pages."""
from __future__ import annotations

from govdata.stages.common import QualityGateError, _timed


# 6 warehouse checks -------------------------------------------------------------------------
@_timed
def check_warehouse(manifest: dict) -> dict:
    """Key uniqueness and xref → master integrity on the loaded warehouse, kept in dq_result."""
    from govdata.expectations.warehouse import validate_warehouse
    from govdata.warehouse.load import load_tables

    run = manifest["run"]
    outcome = validate_warehouse(run["warehouse_url"], run["run_id"])
    load_tables(run["warehouse_url"], {"dq_result": outcome.results}, run["run_id"])
    if outcome.critical_failed:
        raise QualityGateError("warehouse checks failed: " + "; ".join(outcome.failures))
    return {"checks": len(outcome.results), "failed": int((~outcome.results["success"].astype(bool)).sum())}


# 7 marts ------------------------------------------------------------------------------------
@_timed
def marts(manifest: dict) -> dict:
    """Refresh every mart, then test it against its contract (warehouse/marts/<mart>.yml, the
    dbt convention), results kept in dq_result: a broken mart stops the DAG before the
    findings are written from it."""
    from govdata.warehouse.load import load_tables, refresh_marts
    from govdata.warehouse.mart_checks import run_mart_tests

    run = manifest["run"]
    refreshed = refresh_marts(run["warehouse_url"])
    outcome = run_mart_tests(run["warehouse_url"], run["run_id"])
    load_tables(run["warehouse_url"], {"dq_result": outcome.results}, run["run_id"])
    if outcome.critical_failed:
        raise QualityGateError("mart tests failed: " + "; ".join(outcome.failures))
    return {"marts": refreshed, "mart_tests": len(outcome.results),
            "mart_tests_failed": int((~outcome.results["success"].astype(bool)).sum())}


# 8 findings ---------------------------------------------------------------------------------
@_timed
def findings(manifest: dict, marted: dict) -> dict:
    """The findings report (report/findings.html, from the marts) and the stewards' review page
    (report/review.html); GOVDATA_LANG picks the language (zh-CN by default)."""
    from govdata.findings import write_findings
    from govdata.review_page import write_review_page

    written = write_findings(manifest)
    review = write_review_page(manifest)
    return {"findings_path": written["findings_path"], "review_path": review["review_path"],
            "review_pairs": review["pairs"], "review_open_pairs": review["open_pairs"]}
