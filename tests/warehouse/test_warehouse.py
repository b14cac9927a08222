"""Warehouse build + load + vault + marts on real DuckDB files and a real PostgreSQL server."""
from __future__ import annotations

import os
import stat
import uuid
from datetime import date

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from govdata.warehouse.build import dim_date_rows, working_days_between
from govdata.warehouse.load import LoadError, analyst_connect, connect, load_tables, pg_conninfo, read_table
from govdata.warehouse.schema import analyst_table_names, metadata, qualified
from govdata.warehouse.state import read_state, write_state
from govdata.warehouse.vault import identify

try:
    from tests.warehouse import world
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]

MARTS = ["mart_certificate_reuse", "mart_data_quality", "mart_once_only", "mart_proactive_service",
         "mart_satisfaction", "mart_service_timeliness", "mart_sharing_use"]


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_database")


COMMIT_LOG = ("vault_commit", "vault_load")   # the one-commit protocol's own log: a new id per load


def dump(url: str) -> dict[str, list[tuple]]:
    """Every table (vault included), rows sorted: the complete warehouse state."""
    out = {}
    with connect(url, vault=True) as db:
        for table in metadata.sorted_tables:
            if table.name in COMMIT_LOG:
                continue
            rows = db.fetchall(f"SELECT * FROM {qualified(table)}")
            out[table.name] = sorted(rows, key=repr)
    return out


def mart(url: str, name: str) -> list[tuple]:
    with connect(url) as db:
        return sorted(db.fetchall(f"SELECT * FROM {name}"), key=repr)


def test_working_days_follow_the_chinese_calendar():
    cal = dim_date_rows(date(2024, 1, 1), date(2024, 12, 31))
    accepted = pd.Series(pd.to_datetime(["2024-09-27 10:00", "2024-09-13 09:00", "2024-10-08 00:00", None]))
    completed = pd.Series(pd.to_datetime(["2024-10-09 16:00", "2024-09-18 09:00", "2024-10-07 00:00", "2024-10-08 00:00"]))
    # National Day (29 Sep adjusted workday); Mid-Autumn 15-17 Sep with 14 Sep (Sat) worked;
    # completion before acceptance and missing times give NULL.
    assert working_days_between(accepted, completed, cal).tolist() == [4, 2, pd.NA, pd.NA]
    row = cal.set_index("date_key").loc[20241001]
    assert (bool(row.is_holiday), row.holiday_name, bool(row.is_workday), int(row.weekday)) == (
        True, "National Day", False, 2)
    assert bool(cal.set_index("date_key").loc[20240929, "is_workday"]) is True
    assert len(cal) == 366


def test_double_load_leaves_an_identical_warehouse(warehouse_url):
    counts = load_tables(warehouse_url, world.build_world(), world.RUN)
    first = dump(warehouse_url)
    assert load_tables(warehouse_url, world.build_world(), world.RUN) == counts
    assert dump(warehouse_url) == first
    assert (counts["dim_person"], counts["xref_person"], counts["fact_application"], counts["vault_person"]) == (3, 4, 5, 3)
    assert len(first["fact_application"]) == 5 and len(first["quarantine"]) == 4


def test_a_load_failing_midway_leaves_the_previous_state(warehouse_url):
    load_tables(warehouse_url, world.build_world(), world.RUN)
    before = dump(warehouse_url)
    tables = world.build_world()
    tables["dim_person"].loc[0, "name"] = "改名"          # merged before fact_application …
    tables["fact_application"].loc[3, "rating"] = 7      # … which violates CHECK rating 1..5
    with pytest.raises(LoadError, match="fact_application"):
        load_tables(warehouse_url, tables, "r2")
    after = dump(warehouse_url)
    assert after["dim_person"] == before["dim_person"]
    if warehouse_url.startswith("postgresql"):  # one transaction spans the vault too
        assert after == before
    else:  # DuckDB: the vault file commits separately (idempotent keyed rows: unchanged here)
        assert after == before


def test_first_seen_run_survives_later_runs(warehouse_url):
    load_tables(warehouse_url, world.build_world(), "r1")
    tables = world.build_world()
    tables["dim_person"]["first_seen_run"] = "r2"
    tables["dim_person"]["last_run"] = "r2"
    load_tables(warehouse_url, tables, "r2")
    people = read_table(warehouse_url, "dim_person")
    assert sorted(zip(people.first_seen_run, people.last_run)) == [("r1", "r2")] * 3


def test_no_raw_identifier_in_any_analyst_visible_table(warehouse_url):
    load_tables(warehouse_url, world.build_world(), world.RUN)
    from govdata.warehouse.load import refresh_marts

    refresh_marts(warehouse_url)
    seen = []
    with connect(warehouse_url) as db:
        for name in analyst_table_names() + MARTS:
            text = repr(db.fetchall(f"SELECT * FROM {name}"))
            seen.append(name)
            for secret in world.RAW_SECRETS:
                assert secret not in text, f"raw identifier in {name}"
    assert "dim_person" in seen and "fact_application" in seen and "quarantine" in seen
    # …while the vault holds them, encrypted: ciphertexts, never the plain value.
    vault = repr(dump(warehouse_url)["vault_person"])
    assert all(s.encode() not in vault.encode() for s in world.RAW_SECRETS)


def test_marts_equal_hand_computed_figures(warehouse_url):
    load_tables(warehouse_url, world.build_world(), world.RUN)
    from govdata.warehouse.load import refresh_marts

    assert refresh_marts(warehouse_url) == MARTS
    assert mart(warehouse_url, "mart_once_only") == [
        ("enterprise", "scjg", 1, 1, 0, 0.0), ("person", "gongan", 3, 3, 1, 1 / 3), ("person", "shebao", 1, 1, 1, 1.0)]
    assert mart(warehouse_url, "mart_service_timeliness") == [
        ("S1", "110105", "web", 202409, 3, 2, 2.5, pytest.approx(3.7), 1.0, 1.0),
        ("S1", "110105", "window", 202409, 1, 1, 9.0, 9.0, 0.0, 0.0),
        ("S2", "110106", "mobile", 202410, 1, 1, 0.0, 0.0, 1.0, 1.0)]
    assert mart(warehouse_url, "mart_satisfaction") == [
        ("S1", "110105", "web", 202409, 3, 2, 3.5, 0.5, 0.5),
        ("S1", "110105", "window", 202409, 1, 1, 4.0, 1.0, 0.0),
        ("S2", "110106", "mobile", 202410, 1, 1, 5.0, 1.0, 0.0)]
    assert mart(warehouse_url, "mart_certificate_reuse") == [
        ("business_licence", "市场监管局", 1, 1, 1, 1.0), ("marriage", "民政局", 1, 0, 0, 0.0),
        ("resident_id", "公安局", 3, 1, 2, 1 / 3)]
    assert mart(warehouse_url, "mart_data_quality") == [
        ("r1", "gongan", 3, 1, 1, 2 / 3, 2, 2, 1), ("r1", "shebao", 0, 0, 0, None, 0, 0, 1)]
    people = read_table(warehouse_url, "dim_person").set_index("person_id")["person_token"]
    certs = read_table(warehouse_url, "fact_certificate").set_index("certificate_no")["holder_token"]
    today, nm = date.today(), world.next_month(date.today())
    got = [(r[0], r[1], r[2], r[3], r[5], r[8], r[9]) for r in mart(warehouse_url, "mart_proactive_service")]
    expected = [
        ("certificate_expiry", 30, certs["C1"], None, "C1", today + pd.Timedelta(days=10), 10),
        ("certificate_expiry", 90, certs["C2"], "P000000000002", "C2", today + pd.Timedelta(days=60), 60),
        ("retirement", None, people["P000000000001"], "P000000000001", None, date(nm.year, nm.month, 15),
         (date(nm.year, nm.month, 15) - today).days),
        ("retirement", None, people["P000000000002"], "P000000000002", None, date(nm.year, nm.month, 1),
         (date(nm.year, nm.month, 1) - today).days),
    ]
    assert sorted(got, key=repr) == sorted([tuple(pd.Timestamp(v).date() if isinstance(v, pd.Timestamp) else v
                                                  for v in row) for row in expected], key=repr)


def test_state_round_trip(warehouse_url):
    assert read_state(warehouse_url, "gongan") is None
    write_state(warehouse_url, "gongan", {"watermark": "2024-10-01 00:00:00", "rows_extracted": 12,
                                          "snapshot": {"rows": 12}}, "r1")
    write_state(warehouse_url, "shebao", {"watermark": None}, "r1")
    assert read_state(warehouse_url, "gongan") == {"watermark": "2024-10-01 00:00:00", "rows_extracted": 12,
                                                   "snapshot": {"rows": 12}, "run_id": "r1"}
    write_state(warehouse_url, "gongan", {"watermark": "2024-11-01 00:00:00"}, "r2")
    assert read_state(warehouse_url, "gongan")["watermark"] == "2024-11-01 00:00:00"
    assert read_state(warehouse_url, "shebao")["watermark"] is None


def test_duckdb_vault_is_a_private_file_the_analyst_never_sees(tmp_path):
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    load_tables(url, world.build_world(), world.RUN)
    vault_file = tmp_path / "warehouse.vault.duckdb"
    assert stat.S_IMODE(os.stat(vault_file).st_mode) == 0o600
    con = analyst_connect(url)
    try:
        assert con.execute("SELECT count(*) FROM dim_person").fetchone() == (3,)
        with pytest.raises(Exception, match="vault"):
            con.execute("SELECT * FROM vault.vault_person")
        with pytest.raises(Exception, match="read-only|read only"):
            con.execute("DELETE FROM dim_person")
    finally:
        con.close()


def _login(admin: psycopg.Connection, role: str) -> str:
    user = f"{role.removeprefix('govdata_')}_{uuid.uuid4().hex[:6]}"
    admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'pw' IN ROLE {role}")
    return user


def test_postgres_roles_least_privilege(pg_database):
    load_tables(pg_database, world.build_world(), world.RUN)
    admin = psycopg.connect(**pg_conninfo(pg_database), autocommit=True)
    users = {role: _login(admin, role) for role in ("govdata_analyst", "govdata_loader", "govdata_steward")}
    as_user = {role: sa.engine.make_url(pg_database).set(username=u, password="pw").render_as_string(False)
               for role, u in users.items()}
    analyst = psycopg.connect(**pg_conninfo(as_user["govdata_analyst"]), autocommit=True)
    assert analyst.execute("SELECT count(*) FROM dim_person").fetchone() == (3,)
    assert analyst.execute("SELECT count(*) FROM mart_once_only").fetchone() == (3,)
    for forbidden in ("vault.vault_person", "review_queue", "identify_audit", "etl_state"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute(f"SELECT * FROM {forbidden}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("DELETE FROM dim_person")
    analyst.close()
    # The loader re-runs the load with its own login, but cannot read the vault's ciphertexts.
    assert load_tables(as_user["govdata_loader"], world.build_world(), world.RUN)["vault_person"] == 3
    loader = psycopg.connect(**pg_conninfo(as_user["govdata_loader"]), autocommit=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        loader.execute("SELECT id_number_enc FROM vault.vault_person")
    loader.close()
    tok = read_table(pg_database, "dim_person").set_index("person_id").loc["P000000000002", "person_token"]
    assert identify(as_user["govdata_steward"], tok, "proactive service", key=world.KEY) == world.ID_P2
    admin.close()


def test_bad_frames_are_refused_with_the_table_and_column_named(warehouse_url):
    tables = world.build_world()
    dup = pd.concat([tables["xref_person"], tables["xref_person"].iloc[:1]], ignore_index=True)
    with pytest.raises((ValueError, LoadError), match="xref_person"):
        load_tables(warehouse_url, {"xref_person": dup}, world.RUN)
    with pytest.raises(ValueError, match="table dim_person: unknown column\\(s\\) shoe_size"):
        load_tables(warehouse_url, {"dim_person": tables["dim_person"].assign(shoe_size=42)}, world.RUN)
    with pytest.raises(ValueError, match="table fact_application: column rating cannot be read as int64"):
        load_tables(warehouse_url, {"fact_application": tables["fact_application"].assign(rating="five")}, world.RUN)
    assert read_table(warehouse_url, "xref_person") is None or read_table(warehouse_url, "xref_person").empty


def test_bench_load_measures_a_real_load(tmp_path):
    from govdata.warehouse.bench import bench_load

    url = f"duckdb:///{tmp_path / 'bench.duckdb'}"
    assert bench_load(url, 1000) > 0
    assert len(read_table(url, "xref_person")) == 1000


def test_golden_records_whose_records_were_relinked_leave_the_dimension(warehouse_url):
    load_tables(warehouse_url, world.build_world(), world.RUN)
    tables = world.build_world()
    xref = tables["xref_person"]
    xref.loc[xref.source_record_id == "3", "person_id"] = "P000000000002"   # P3's record now belongs to P2
    tables["dim_person"] = tables["dim_person"][tables["dim_person"].person_id != "P000000000003"]
    tables["vault_person"] = tables["vault_person"][tables["vault_person"].person_id != "P000000000003"]
    load_tables(warehouse_url, tables, "r2")
    assert sorted(read_table(warehouse_url, "dim_person").person_id) == ["P000000000001", "P000000000002"]
    assert sorted(read_table(warehouse_url, "xref_person").person_id) == [
        "P000000000001", "P000000000001", "P000000000002", "P000000000002"]


def test_names_can_be_masked_to_the_surname(monkeypatch):
    from govdata.warehouse.build import build_tables

    monkeypatch.setenv("GOVDATA_NAME_MASKING", "surname")
    tables = build_tables(world.link_frames(), world.std_frames(), world.quarantine(), world.standards(),
                          world.KEY, world.RUN)
    assert tables["dim_person"]["name"].tolist() == ["张*", "李*", "王*"]
    with pytest.raises(ValueError, match="name_masking 'initials'"):
        build_tables(world.link_frames(), {}, world.quarantine(), world.standards(), world.KEY, world.RUN,
                     name_masking="initials")


def test_postgres_bulk_path_is_idempotent_and_refuses_duplicates(pg_database, monkeypatch):
    import govdata.warehouse.merge_postgres as merge

    monkeypatch.setattr(merge, "BULK_MIN_ROWS", 2)   # the bulk path on a tiny load
    load_tables(pg_database, world.build_world(), world.RUN)
    first = dump(pg_database)
    load_tables(pg_database, world.build_world(), world.RUN)
    assert dump(pg_database) == first
    tables = world.build_world()
    tables["xref_person"] = pd.concat([tables["xref_person"], tables["xref_person"].iloc[:1]], ignore_index=True)
    with pytest.raises(LoadError, match="xref_person"):
        load_tables(pg_database, tables, "r2")
    assert dump(pg_database) == first
    with connect(pg_database) as db:  # the primary key is back
        assert db.fetchall("SELECT conname FROM pg_constraint WHERE conname = 'xref_person_pkey'") == [
            ("xref_person_pkey",)]


def test_the_duckdb_warehouse_connection_has_a_bounded_memory_limit(tmp_path, monkeypatch):
    from govdata.errors import ConfigError
    from govdata.warehouse.connections import _DuckDB

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    monkeypatch.delenv("GOVDATA_DUCKDB_MEMORY", raising=False)
    db = _DuckDB(url, vault=False)
    assert db.fetchall("SELECT current_setting('memory_limit')") == [("1.8 GiB",)]   # 2GB, as DuckDB shows it
    db.close()
    monkeypatch.setenv("GOVDATA_DUCKDB_MEMORY", "512MB")
    db = _DuckDB(url, vault=False)
    assert db.fetchall("SELECT current_setting('memory_limit')") == [("488.2 MiB",)]
    db.close()
    monkeypatch.setenv("GOVDATA_DUCKDB_MEMORY", "lots")
    with pytest.raises(ConfigError, match=r"^GOVDATA_DUCKDB_MEMORY='lots' is not a memory size: give one such as 2GB"):
        _DuckDB(url, vault=False)


def test_every_duckdb_warehouse_reader_has_the_same_memory_limit(tmp_path, monkeypatch):
    """The warehouse checks, the mart tests and the analysts read with the loader's limit (at
    DuckDB's default a mart test took 80% of the machine)."""
    import sqlalchemy as sa
    from govdata.warehouse.connections import read_only_engine
    from govdata.warehouse.ddl import init_warehouse

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    init_warehouse(url)
    monkeypatch.setenv("GOVDATA_DUCKDB_MEMORY", "512MB")
    engine = read_only_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('memory_limit')")).all() == [("488.2 MiB",)]
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            conn.execute(sa.text("CREATE TABLE t (x INT)"))
    engine.dispose()
    con = analyst_connect(url)
    assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [("488.2 MiB",)]
    con.close()


def _hold_write_lock(path, seconds: float):
    """Another process opening the DuckDB file for writing for `seconds`; returns once it holds it."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(float(sys.argv[2]))", str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_warehouse_open_waits_for_another_process_lock(tmp_path):
    import duckdb

    from govdata.warehouse.connections import open_duckdb

    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = _hold_write_lock(path, 1.5)
    try:
        con = open_duckdb(str(path), read_only=True)   # waits out the holder's 1.5 s
        assert con.execute("SELECT 42").fetchone() == (42,)
        con.close()
    finally:
        holder.wait()


def test_a_lock_held_past_the_wait_is_the_lock_error(tmp_path):
    import duckdb

    from govdata.warehouse.connections import open_duckdb

    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = _hold_write_lock(path, 5)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            open_duckdb(str(path), read_only=True, wait_seconds=0.3)
    finally:
        holder.kill()
        holder.wait()


def test_the_previous_owner_state_is_copied_to_parquet_whole(warehouse_url, tmp_path, monkeypatch):
    """A rerun's load reads the owners and facts loaded before from files it writes, never in
    memory: every row, in the warehouse's types, PostgreSQL's a batch (here 2 rows) at a time."""
    import pyarrow.parquet as pq

    from govdata.stages.load import previous_owner_state
    from govdata.warehouse import state
    from govdata.warehouse.owners import PREVIOUS_COLUMNS
    from govdata.warehouse.state import read_arrow_table

    monkeypatch.setattr(state, "EXPORT_BATCH_ROWS", 2)
    assert previous_owner_state(warehouse_url, str(tmp_path / "none")) == {}   # nothing loaded yet
    load_tables(warehouse_url, world.build_world(), world.RUN)
    paths = previous_owner_state(warehouse_url, str(tmp_path / "previous"))
    assert sorted(paths) == sorted(PREVIOUS_COLUMNS)
    for table, path in paths.items():
        stored = read_arrow_table(warehouse_url, table, PREVIOUS_COLUMNS[table])
        copied = pq.read_table(path)
        assert [(f.name, f.type) for f in copied.schema] == [(f.name, f.type) for f in stored.schema]
        assert copied.num_rows == stored.num_rows > 0
        assert sorted(copied.to_pylist(), key=repr) == sorted(stored.to_pylist(), key=repr)
