"""
### govdata_marts

Checks the warehouse's keys (GX), refreshes the analyst marts and writes the run report whenever `govdata_pipeline` has loaded
the warehouse (scheduled on the `govdata_warehouse` asset). The asset event's extra names the
loaded run's manifest in the lake; a manual run takes it from the `manifest` param.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from govdata.assets import WAREHOUSE
from govdata.errors import task_errors  # configuration/data errors fail at once; transient ones retry

# multiple_outputs=False: a dict is one XCom, not one per key (see govdata_pipeline.py)


@dag(
    dag_id="govdata_marts",
    schedule=[WAREHOUSE],
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "govdata", "retries": int(os.environ.get("GOVDATA_TASK_RETRIES", "2")), "retry_delay": timedelta(seconds=30),
                  "retry_exponential_backoff": True},
    doc_md=__doc__,
    tags=["govdata"],
    params={"manifest": Param("", type="string", description="lake path of a loaded run's manifest.json")},
)
def govdata_marts():
    @task(multiple_outputs=False)
    def manifest() -> dict:
        from govdata.stages import read_manifest

        ctx = get_current_context()
        path = ctx["params"]["manifest"]
        events = ctx.get("triggering_asset_events") or {}
        for asset_events in events.values():  # newest event wins
            for event in asset_events:
                path = (event.extra or {}).get("manifest", path)
        with task_errors("manifest"):
            if not path:
                raise ValueError("no manifest: trigger through the govdata_warehouse asset or pass params.manifest")
            return read_manifest(path)

    @task(retries=0, multiple_outputs=False)
    def check_warehouse(m: dict) -> dict:
        from govdata.stages import check_warehouse as stage

        with task_errors("check_warehouse"):  # broken keys are not fixed by retrying
            return stage(m)

    @task(multiple_outputs=False)
    def marts(m: dict, checked: dict) -> dict:
        from govdata.stages import marts as stage

        with task_errors("marts"):
            return stage(m)

    @task(multiple_outputs=False)
    def report(m: dict, marted: dict) -> dict:
        from govdata.stages import report as stage

        with task_errors("report"):
            return stage(m, marted)

    @task(multiple_outputs=False)
    def findings(m: dict, marted: dict) -> dict:
        # Findings report (findings.html) and the stewards' review page (review.html), linked from the run report.
        from govdata.stages import findings as stage

        with task_errors("findings"):
            return stage(m, marted)

    @task(multiple_outputs=False)
    def expire_grants(m: dict, marted: dict) -> dict:
        # Sharing: revoke grants past their date; on PostgreSQL re-apply the consumer roles'
        # privileges (re-created marts lost theirs). See govdata/sharing/store.py.
        from govdata.sharing.store import expire_grants as expire

        return {"expired": expire(m["run"]["warehouse_url"])}

    m = manifest()
    marted = marts(m, check_warehouse(m))
    findings(m, marted) >> report(m, marted)   # before the report task's retention step tidies the run
    expire_grants(m, marted)


marts_dag = govdata_marts()
