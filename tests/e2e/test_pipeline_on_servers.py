"""The DAG against real servers: one department in MariaDB, one in PostgreSQL, the rest in
SQLite, and the warehouse in PostgreSQL (COPY loads, roles, vault schema)."""
from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from govdata.demo_data import generate
from govdata.extract import sqlalchemy_url
from govdata.runner import run_pipeline
from govdata.seeding import move_department
from govdata.standards.sources import load_sources
from tests.servers import fresh_database

pytestmark = pytest.mark.e2e


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        quoted = engine.dialect.identifier_preparer.quote(table)
        n = conn.execute(sa.text(f"SELECT count(*) FROM {quoted}")).scalar_one()
    engine.dispose()
    return n


@pytest.fixture(scope="module")
def served_world(tmp_path_factory, postgres_url, mariadb_url, request):
    world = tmp_path_factory.mktemp("served")
    generate(world, persons=600, seed=5)
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("GOVDATA_LINK_PARTITION_ROWS", "700")  # several mapped linkage partitions
    mp.setenv("DEPT_MARIADB_URL", fresh_database(mariadb_url, "dept_shebao"))
    mp.setenv("DEPT_POSTGRES_URL", fresh_database(postgres_url, "dept_shichang"))
    assert move_department(world, "shebao", "DEPT_MARIADB_URL") > 0
    assert move_department(world, "shichang", "DEPT_POSTGRES_URL") > 0
    warehouse = fresh_database(postgres_url, "govdata_e2e")
    base = tmp_path_factory.mktemp("served_run")
    summary = run_pipeline(world / "sources", warehouse_url=warehouse, lake=str(base / "lake"), full_refresh=True)
    return {"world": world, "warehouse": warehouse, "summary": summary, "lake": base / "lake"}


def test_sources_really_live_on_the_servers(served_world):
    sources = {s.name: s for s in load_sources(served_world["world"] / "sources")}
    assert sources["shebao"].connection.startswith("mysql")
    assert sources["shichang"].connection.startswith("postgresql")
    assert sources["gongan"].connection.startswith("sqlite")


def test_counts_reconcile_in_the_postgres_warehouse(served_world):
    sources = load_sources(served_world["world"] / "sources")
    source_rows = {s.name: _count(sqlalchemy_url(s.connection), s.table) for s in sources}
    engine = sa.create_engine(served_world["warehouse"])
    with engine.connect() as conn:
        loaded = pd.read_sql(sa.text("""
            select source_system, count(*) as n from (
                select source_system, source_record_id from xref_person
                union all select source_system, source_record_id from xref_enterprise
                union all select source_system, source_record_id from fact_application
                union all select source_system, source_record_id from fact_certificate) t group by 1"""), conn)
        rejected = pd.read_sql(sa.text("""select source_system, count(distinct source_record_id) as n
                                          from quarantine where row_rejected group by 1"""), conn)
        runs = conn.execute(sa.text("select count(*) from etl_run where status = 'success'")).scalar_one()
    engine.dispose()
    loaded_n, rejected_n = dict(zip(loaded.source_system, loaded.n)), dict(zip(rejected.source_system, rejected.n))
    for name, n in source_rows.items():
        assert loaded_n.get(name, 0) + rejected_n.get(name, 0) == n, name
    assert served_world["summary"]["headline"]["records in"] == sum(source_rows.values())
    assert runs == 1


def test_raw_identifiers_only_in_the_vault_schema(served_world):
    engine = sa.create_engine(served_world["warehouse"])
    with engine.connect() as conn:
        vault_rows = conn.execute(sa.text("select count(*) from vault.vault_person")).scalar_one()
        persons = conn.execute(sa.text("select count(*) from dim_person")).scalar_one()
    engine.dispose()
    assert vault_rows >= persons > 0


def test_linkage_ran_in_several_partitions_without_sharing_master_ids(served_world):
    # the partitions' hand-off files are deleted when the run ends: count them in the manifest
    import json

    from govdata.lake import read_parquet

    manifest = json.loads(next(served_world["lake"].glob("*/manifest.json")).read_text(encoding="utf-8"))
    assert manifest["linked"]["stats"]["person"]["partitions"] >= 3
    assert not list(served_world["lake"].glob("*/link/parts/*"))
    xrefs = [read_parquet(manifest["linked"]["paths"]["person_xref"])]
    engine = sa.create_engine(served_world["warehouse"])
    with engine.connect() as conn:
        per_person = pd.read_sql(sa.text("select person_id, count(*) n from xref_person group by 1"), conn)
    engine.dispose()
    assert per_person.n.sum() == sum(len(x) for x in xrefs)
