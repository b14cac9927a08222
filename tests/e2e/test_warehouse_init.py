"""The README's route: `govdata warehouse init`, then `govdata run`, then a rerun — on DuckDB
and on PostgreSQL. An initialised but empty warehouse is the same previous state as none:
the run into it loads exactly what a run into a warehouse that never existed loads."""
from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from govdata.demo_data import generate
from govdata.runner import run_pipeline
from govdata.warehouse.load import init_warehouse
from tests.servers import fresh_database

pytestmark = pytest.mark.e2e

# Content an analyst sees, without the columns that name the run that wrote a row.
CONTENT = {
    "dim_person": "select person_id, person_token, id_number_masked, name, sex, birth_date from dim_person",
    "xref_person": "select source_system, source_record_id, person_id, match_rule from xref_person",
    "xref_enterprise": "select source_system, source_record_id, enterprise_id, match_rule from xref_enterprise",
    "fact_application": "select source_system, source_record_id, applicant_person_id, applicant_enterprise_id "
                        "from fact_application",
    "fact_certificate": "select source_system, source_record_id, holder_person_id, holder_enterprise_id "
                        "from fact_certificate",
}


def _content(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {name: pd.read_sql(sa.text(sql), conn).astype("string")
                    .sort_values(list(pd.read_sql(sa.text(sql + " limit 0"), conn).columns[:2]))
                    .reset_index(drop=True) for name, sql in CONTENT.items()}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init_world")
    generate(folder, persons=500, seed=13)
    return folder


def _init_run_rerun(world, url: str, reference_url: str, lake) -> None:
    init_warehouse(url)
    run_pipeline(world / "sources", warehouse_url=url, lake=str(lake / "a"), full_refresh=True)
    run_pipeline(world / "sources", warehouse_url=reference_url, lake=str(lake / "b"), full_refresh=True)
    first, reference = _content(url), _content(reference_url)
    for name in CONTENT:
        assert len(first[name]) > 0, name
        pd.testing.assert_frame_equal(first[name], reference[name], obj=name)
    run_pipeline(world / "sources", warehouse_url=url, lake=str(lake / "a"))
    again = _content(url)
    for name in CONTENT:
        pd.testing.assert_frame_equal(again[name], first[name], obj=f"{name} after a rerun")


def test_init_run_rerun_on_duckdb(world, tmp_path):
    _init_run_rerun(world, f"duckdb:///{tmp_path / 'init.duckdb'}", f"duckdb:///{tmp_path / 'fresh.duckdb'}",
                    tmp_path / "lake")


@pytest.mark.postgres
def test_init_run_rerun_on_postgres(world, tmp_path, postgres_url):
    _init_run_rerun(world, fresh_database(postgres_url, "govdata_init"),
                    fresh_database(postgres_url, "govdata_fresh"), tmp_path / "lake")
