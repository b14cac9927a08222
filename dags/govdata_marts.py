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
    @task
    def manifest() -> dict:
        from govdata.stages import read_manifest

        ctx = get_current_context()
        path = ctx["params"]["manifest"]
        events = ctx.get("triggering_asset_events") or {}
        for asset_events in events.values():  # newest event wins
            for event in asset_events:
                path = (event.extra or {}).get("manifest", path)
        if not path:
            raise ValueError("no manifest: trigger through the govdata_warehouse asset or pass params.manifest")
        return read_manifest(path)

    @task(retries=0)
    def check_warehouse(m: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from govdata.stages import QualityGateError, check_warehouse as stage

        try:
            return stage(m)
        except QualityGateError as exc:  # broken keys are not fixed by retrying
            raise AirflowFailException(str(exc)) from exc

    @task
    def marts(m: dict, checked: dict) -> dict:
        from govdata.stages import marts as stage

        return stage(m)

    @task
    def report(m: dict, marted: dict) -> dict:
        from govdata.stages import report as stage

        return stage(m, marted)

    m = manifest()
    report(m, marts(m, check_warehouse(m)))


marts_dag = govdata_marts()
