"""The real govdata_pipeline DAG, run end to end with dag.test() on a small generated world."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from govdata.demo_data import generate
from govdata.runner import run_pipeline
from govdata.standards.sources import load_sources

pytestmark = pytest.mark.e2e

PERSONS = 1500
ID_LIKE = re.compile(r"\d{17}[\dXx]|\d{15}")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(out, persons=PERSONS, seed=3)
    return out


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    url = f"duckdb:///{base / 'warehouse.duckdb'}"
    summary = run_pipeline(world / "sources", warehouse_url=url, lake=str(base / "lake"), full_refresh=True)
    return {"summary": summary, "url": url, "db": base / "warehouse.duckdb", "base": base}


def _source_counts(world: Path) -> dict[str, int]:
    counts = {}
    for src in load_sources(world / "sources"):
        path = src.connection.removeprefix("sqlite:///")
        with sqlite3.connect(path) as con:
            counts[src.name] = con.execute(f'SELECT count(*) FROM "{src.table}"').fetchone()[0]
    return counts


def _query(db: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).df()


def test_every_source_row_is_loaded_or_quarantined(world, run):
    source_rows = _source_counts(world)
    loaded = _query(run["db"], """
        select source_system, count(*) as n from (
            select source_system, source_record_id from xref_person
            union all select source_system, source_record_id from xref_enterprise
            union all select source_system, source_record_id from fact_application
            union all select source_system, source_record_id from fact_certificate) group by 1""")
    rejected = _query(run["db"], """select source_system, count(distinct source_record_id) as n
                                     from quarantine where row_rejected group by 1""")
    loaded_n = dict(zip(loaded.source_system, loaded.n))
    rejected_n = dict(zip(rejected.source_system, rejected.n))
    for name, n in source_rows.items():
        assert loaded_n.get(name, 0) + rejected_n.get(name, 0) == n, name
    headline = run["summary"]["headline"]
    assert headline["records in"] == sum(source_rows.values())
    assert headline["records in"] == headline["standardised"] + headline["rows quarantined"]


def test_each_record_appears_once(run):
    dupes = _query(run["db"], """select source_system, source_record_id, count(*) c from xref_person
                                 group by 1, 2 having count(*) > 1""")
    assert dupes.empty


def test_persons_are_linked_across_departments(world, run):
    persons = _query(run["db"], "select count(*) n from dim_person").n[0]
    truth = pd.read_parquet(world / "truth" / "persons.parquet")
    # fewer master records than source records, and not fewer than the true persons minus a handful
    assert persons < len(truth)
    assert abs(persons - truth["true_person_id"].nunique()) / truth["true_person_id"].nunique() < 0.02
    orphans = _query(run["db"], """select count(*) n from xref_person x
                                   left join dim_person p using (person_id) where p.person_id is null""")
    assert orphans.n[0] == 0


def test_no_raw_identifier_in_analyst_tables(world, run):
    raw_ids = set()
    for src in load_sources(world / "sources"):
        if src.kind != "person":
            continue
        col = next((c for c, e in src.columns.items() if e == "id_number"), None)
        if col is None:   # a register without ID numbers (canlian) has none to leak
            continue
        with sqlite3.connect(src.connection.removeprefix("sqlite:///")) as con:
            raw_ids |= {r[0].strip().upper() for r in con.execute(f'SELECT "{col}" FROM "{src.table}"') if r[0]}
    raw_ids = {i for i in raw_ids if ID_LIKE.fullmatch(i)}
    tables = _query(run["db"], "select table_name from information_schema.tables")["table_name"]
    for table in tables:
        frame = _query(run["db"], f'select * from "{table}"')
        for column in frame.columns:
            if frame[column].dtype == object:
                values = set(frame[column].dropna().astype(str).str.upper())
                assert not values & raw_ids, f"raw ID number in {table}.{column}"


def test_run_is_recorded(run):
    runs = _query(run["db"], "select status from etl_run")
    assert runs.status.tolist() == ["success"]
    assert _query(run["db"], "select count(*) n from dq_result").n[0] > 0
    warehouse_checks = _query(run["db"], "select success from dq_result where source_system = 'warehouse'")
    assert len(warehouse_checks) == 6 and warehouse_checks.success.all()
    assert Path(run["summary"]["report_path"]).exists()


def test_second_run_keeps_master_ids(world, run):
    before = _query(run["db"], "select source_system, source_record_id, person_id from xref_person order by 1, 2")
    run_pipeline(world / "sources", warehouse_url=run["url"], lake=str(run["base"] / "lake"), full_refresh=True)
    after = _query(run["db"], "select source_system, source_record_id, person_id from xref_person order by 1, 2")
    pd.testing.assert_frame_equal(before, after)
    assert _query(run["db"], "select count(*) n from etl_run").n[0] == 2


def test_steward_decisions_apply_on_the_next_run(world, run, tmp_path):
    from govdata.operations import import_review

    xref = _query(run["db"], "select source_system, source_record_id, person_id from xref_person")
    sizes = xref.groupby("person_id").size()
    together = xref[xref.person_id == sizes[sizes >= 2].index[0]].iloc[:2]          # linked today
    apart = xref[xref.person_id.isin(sizes[sizes == 1].index)].iloc[:2]            # two singletons
    rows = []
    for pair, decision in ((together, "non_match"), (apart, "match")):
        left, right = pair.iloc[0], pair.iloc[1]
        rows.append({"left_source_system": left.source_system, "left_source_record_id": left.source_record_id,
                     "right_source_system": right.source_system, "right_source_record_id": right.source_record_id,
                     "decision": decision, "decided_by": "steward-li", "decided_at": "2026-11-01 09:00:00"})
    csv = tmp_path / "decisions.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert import_review(run["url"], csv) == 2

    run_pipeline(world / "sources", warehouse_url=run["url"], lake=str(run["base"] / "lake"), full_refresh=True)
    after = _query(run["db"], "select source_system, source_record_id, person_id, match_rule from xref_person")
    after = after.set_index(["source_system", "source_record_id"])
    key = lambda r: (r.source_system, r.source_record_id)  # noqa: E731
    t0, t1 = (after.loc[key(r)] for _, r in together.iterrows())
    a0, a1 = (after.loc[key(r)] for _, r in apart.iterrows())
    assert t0.person_id != t1.person_id
    assert a0.person_id == a1.person_id
    assert "steward" in {a0.match_rule, a1.match_rule}


def test_every_mart_meets_its_contract(run):
    """The marts DAG tests each refreshed mart against warehouse/marts/<mart>.yml."""
    from govdata.warehouse.mart_checks import load_contracts

    expected = sum(len(c.tests) + 1 for c in load_contracts().values())
    results = _query(run["db"], "select run_id, element, expectation, success, observed_value "
                                "from dq_result where source_system = 'marts'")
    assert set(results.groupby("run_id").size()) == {expected}   # every run of the module's tests
    assert results[~results.success].to_dict("records") == []


def test_the_weights_each_run_linked_with_are_kept_in_link_model(run):
    """link_model holds the run's Fellegi–Sunter weights per comparison; an incremental run reads
    the latest from it (previous_model), a model without weights as empty m and u."""
    from govdata.stages.link_inputs import previous_model

    rows = _query(run["db"], "select run_id, entity, comparison, m, u, source from link_model "
                             "where run_id = (select max(run_id) from link_model)")
    persons = rows[rows.entity == "person"]
    assert {"id", "name", "birth", "phone"} <= set(persons.comparison)
    assert ((persons.m > 0) & (persons.m < 1) & (persons.u > 0) & (persons.u < 1)).all()
    assert rows[rows.entity == "enterprise"].comparison.tolist() == ["(none)"]
    model = previous_model({"warehouse_url": run["url"]}, "person")
    assert model["m"] == dict(zip(persons.comparison, persons.m)) and model["source"] == persons.source.iloc[0]
    assert previous_model({"warehouse_url": run["url"]}, "enterprise")["m"] == {}
