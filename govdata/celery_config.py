"""Celery configuration for govdata's Airflow workers: Airflow's own, plus the modules the DAGs'
tasks import, imported once when a worker starts.

An Airflow 3 Celery worker runs every task in a process forked from its pool process, so a
module the worker has imported is already there in every task; without this each task imports
pandas, pyarrow, SQLAlchemy, Great Expectations and the stages again (about 10 s of CPU per
cold process; GX alone 6 s), on every task. Set

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=govdata.celery_config.CELERY_CONFIG

on the workers (docker-compose.yml and tests/e2e/test_celery.py do). Nothing here opens a
connection or starts a thread: forking after these imports is safe.

Measured (tests/e2e/test_celery.py, 20,000 persons, two workers, 2 cores at load average ~5):
both DAGs 130 s with these imports, 162 s without; an extract task 1.7-3.5 s instead of 4.3-8.7 s,
a normalise task 3.6-6.7 s instead of 5.1-13.0 s (Airflow's start-to-end task times).
"""
from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

# What the tasks of dags/govdata_pipeline.py and dags/govdata_marts.py import, heaviest first.
PRELOAD = (
    "pandas", "pyarrow.parquet", "pyarrow.compute", "pyarrow.dataset", "duckdb", "sqlalchemy", "fsspec",
    "govdata.expectations.run",            # Great Expectations (validate, check_warehouse)
    "recordlinkage",                       # linkage
    "govdata.extract", "govdata.stages", "govdata.stages.plan", "govdata.stages.extract",
    "govdata.stages.normalise", "govdata.stages.validate", "govdata.stages.link",
    "govdata.stages.link_inputs", "govdata.stages.load", "govdata.stages.marts", "govdata.stages.report",
    "govdata.transforms.normalise", "govdata.transforms.linkage", "govdata.transforms.linkage.merge",
    "govdata.transforms.linkage.incremental", "govdata.transforms.linkage.survivorship",
    "govdata.expectations.warehouse", "govdata.warehouse.load", "govdata.warehouse.build",
    "govdata.warehouse.vault", "govdata.warehouse.staging", "govdata.warehouse.state",
    "govdata.warehouse.mart_checks", "govdata.report", "govdata.findings", "govdata.review_page",
    "govdata.retention", "govdata.sharing.store",
)

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG,
                 "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), *PRELOAD)}
