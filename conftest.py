"""Loaded by pytest before any test module: Airflow must see a private, throwaway home
(SQLite metadata DB, this repo's dags/) before it is first imported."""
import os
import tempfile
from pathlib import Path

_home = Path(tempfile.mkdtemp(prefix="govdata-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home / 'airflow.db'}"
os.environ.setdefault("GOVDATA_TOKEN_KEY", "00" * 16 + "11" * 16)  # tests never touch a real key file
os.environ.setdefault("GOVDATA_TASK_RETRIES", "0")  # fail fast in tests; the DAG default is 2
# Every task of `govdata run` in the test process (dag.test's own loop): small worlds run faster
# so than on two LocalExecutor workers; tests/e2e/test_local_executor.py runs both and compares.
os.environ.setdefault("GOVDATA_RUN_WORKERS", "1")
