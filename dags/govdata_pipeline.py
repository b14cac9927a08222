"""
### govdata_pipeline

Pulls every department table named by the source YAMLs, brings it onto the national data
standards, checks quality, links persons and enterprises to stable master IDs and loads the
shared warehouse.

extract (one mapped task per source) → normalise (per source) → snapshot (per source: the
source's current state, deletions and changes) → validate (GX quality gate) → link (one mapped
task per blocking partition) → load. The load updates the `govdata_warehouse` asset, which schedules `govdata_marts`
(marts → report) through data-aware scheduling; the asset event carries the run's manifest.

Params: `sources_dir`, `warehouse_url`, `lake`, `full_refresh` (ignore watermarks).
Data moves as Parquet files in the lake; XCom carries paths and counts only.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from govdata.assets import WAREHOUSE
from govdata.errors import task_errors  # light: no heavy imports (the DAG file stays quick to parse)

# Retries are for transient failures only (connection refused, timeouts, locks): every task body
# runs inside task_errors, which turns configuration, data and quality-gate errors into
# AirflowFailException, so Airflow fails them at once instead of retrying them with backoff.
DEFAULT_ARGS = {
    "owner": "govdata",
    "retries": int(os.environ.get("GOVDATA_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
# Tasks returning a dict say multiple_outputs=False: Airflow would otherwise infer True from
# the annotation and push every key as an XCom of its own (one API call each, ~14 per task),
# which no task reads.


def _items(mapped) -> list:
    """Materialise a mapped task's results by index (iterating probes one past the end)."""
    return [mapped[i] for i in range(len(mapped))]


def _run() -> dict:
    return get_current_context()["ti"].xcom_pull(task_ids="plan")


@dag(
    dag_id="govdata_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["govdata"],
    params={
        "sources_dir": Param(os.environ.get("GOVDATA_SOURCES_DIR", "standards/sources"), type="string"),
        "warehouse_url": Param(os.environ.get("GOVDATA_WAREHOUSE_URL", ""), type="string"),
        "lake": Param(os.environ.get("GOVDATA_LAKE", ""), type="string"),
        "full_refresh": Param(False, type="boolean"),
    },
)
def govdata_pipeline():
    @task(retries=0, multiple_outputs=False)
    def plan() -> dict:
        from govdata.settings import get_settings
        from govdata.stages import plan_run

        ctx = get_current_context()
        p, settings = ctx["params"], get_settings()
        with task_errors("plan"):
            return plan_run(p["sources_dir"], p["lake"] or settings.lake, p["warehouse_url"] or settings.warehouse_url,
                            ctx["run_id"], p["full_refresh"])

    @task
    def sources(run: dict) -> list[dict]:
        return run["sources"]

    @task(map_index_template="{{ source_name }}", multiple_outputs=False)
    def extract(source: dict) -> dict:
        from govdata.stages import extract as stage

        get_current_context()["source_name"] = source["name"]
        with task_errors(f"extract [{source['name']}]"):
            return stage(source, _run())

    @task(map_index_template="{{ source_name }}", multiple_outputs=False)
    def normalise(extracted: dict) -> dict:
        from govdata.stages import normalise as stage

        get_current_context()["source_name"] = extracted["name"]
        with task_errors(f"normalise [{extracted['name']}]"):
            return stage(extracted, _run())

    @task(map_index_template="{{ source_name }}", multiple_outputs=False)
    def snapshot(normalised: dict) -> dict:
        from govdata.stages import snapshot as stage

        get_current_context()["source_name"] = normalised["source"]
        with task_errors(f"snapshot [{normalised['source']}]"):
            return stage(normalised, _run())

    @task(retries=0, multiple_outputs=False)
    def validate(normalised: list[dict], snapshots: list[dict]) -> dict:
        from govdata.stages import validate as stage, with_snapshots

        with task_errors("validate"):  # a failed quality gate is never retried into the warehouse
            return stage(with_snapshots(_items(normalised), _items(snapshots)), _run())

    @task
    def link_plan(normalised: list[dict], snapshots: list[dict], validated: dict) -> list[dict]:
        from govdata.stages import link_plan as stage, with_snapshots

        with task_errors("link_plan"):
            return stage(with_snapshots(_items(normalised), _items(snapshots)), _run())["partitions"]

    @task(map_index_template="{{ partition_name }}", multiple_outputs=False)
    def link(part: dict) -> dict:
        from govdata.stages import link_partition as stage

        get_current_context()["partition_name"] = f"{part['kind']} {part['partition']}"
        with task_errors(f"link [{part['kind']} {part['partition']}]"):
            return stage(part, _run())

    @task(multiple_outputs=False)
    def link_merge(parts: list[dict]) -> dict:
        from govdata.stages import link_merge as stage

        with task_errors("link_merge"):
            return stage(_items(parts), _run())

    @task(outlets=[WAREHOUSE], multiple_outputs=False)
    def load(extracted: list[dict], normalised: list[dict], snapshots: list[dict], validated: dict, linked: dict, *,
             outlet_events=None) -> dict:
        from govdata.stages import load as stage, with_snapshots, write_manifest

        run = _run()
        with task_errors("load"):
            sources = with_snapshots(_items(normalised), _items(snapshots))
            loaded = stage(sources, validated, linked, run)
            manifest = write_manifest(run, _items(extracted), sources, validated, linked, loaded,
                                      snapshots=_items(snapshots))
        outlet_events[WAREHOUSE].extra = {"run_id": run["run_id"], "manifest": manifest}
        return {**loaded, "manifest": manifest}

    run = plan()
    extracted = extract.expand(source=sources(run))
    normalised = normalise.expand(extracted=extracted)
    snapshots = snapshot.expand(normalised=normalised)
    validated = validate(normalised, snapshots)
    linked = link_merge(link.expand(part=link_plan(normalised, snapshots, validated)))
    load(extracted, normalised, snapshots, validated, linked)


pipeline = govdata_pipeline()
