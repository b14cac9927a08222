"""Airflow Assets shared by the DAG files (kept light: DAG files import it at parse time)."""
from airflow.sdk import Asset

# Updated by govdata_pipeline's load task; schedules govdata_marts (data-aware scheduling).
WAREHOUSE = Asset(name="govdata_warehouse", uri="govdata://warehouse")
