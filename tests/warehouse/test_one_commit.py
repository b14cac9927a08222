"""A run's warehouse and vault changes become visible together or not at all (warehouse/load.py),
and quarantine / dim_source hold the current state per source record, on real DuckDB files and a
real PostgreSQL server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from govdata.warehouse.load import LoadError, connect, duckdb_paths, load_tables
from govdata.warehouse.schema import metadata, qualified

try:
    from tests.warehouse import world
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]

COMMIT_LOG = ("vault_commit", "vault_load")
NEW_ID = "110105198502020021"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_database")


def dump(url: str) -> dict[str, list[tuple]]:
    out = {}
    with connect(url, vault=True) as db:
        for table in metadata.sorted_tables:
            if table.name not in COMMIT_LOG:
                out[table.name] = sorted(db.fetchall(f"SELECT * FROM {qualified(table)}"), key=repr)
    return out


def second_run() -> dict[str, pd.DataFrame]:
    """The world with a fourth person: new rows for the vault and the warehouse."""
    from govdata.warehouse.build import build_tables

    link = world.link_frames()
    golden = link["person_golden"]
    extra = golden.iloc[[0]].assign(person_id="P000000000004", id_number=NEW_ID, name="赵四", phone=None)
    link["person_golden"] = pd.concat([golden, extra], ignore_index=True)
    link["person_xref"] = pd.concat([link["person_xref"], pd.DataFrame({
        "source_system": ["gongan"], "source_record_id": ["4"], "person_id": ["P000000000004"],
        "match_rule": ["id"], "match_score": [1.0]})], ignore_index=True)
    std = world.std_frames()
    std["gongan"] = pd.concat([std["gongan"], pd.DataFrame({"source_system": ["gongan"], "source_record_id": ["4"],
                                                            "kind": ["person"], "id_number": [NEW_ID]})],
                              ignore_index=True)
    return build_tables(link, std, world.quarantine(), world.standards(), world.KEY, "r2")


def test_a_failing_load_leaves_warehouse_and_vault_as_they_were(warehouse_url):
    load_tables(warehouse_url, world.build_world(), world.RUN)
    before = dump(warehouse_url)
    tables = second_run()
    assert len(tables["vault_person"]) == 4                 # the vault would change …
    tables["fact_application"].loc[3, "rating"] = -5        # … but the warehouse refuses the load (CHECK)
    with pytest.raises(LoadError, match="fact_application"):
        load_tables(warehouse_url, tables, "r2")
    assert dump(warehouse_url) == before
    assert len(before["vault_person"]) == 3
    if warehouse_url.startswith("duckdb"):
        assert not os.path.exists(duckdb_paths(warehouse_url)[1] + ".pending")
    load_tables(warehouse_url, second_run(), "r2")          # the same load, unbroken, commits both
    after = dump(warehouse_url)
    assert (len(after["vault_person"]), len(after["dim_person"])) == (4, 4)


def _load_in_subprocess(url: str, failpoint: str, marker_dir: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests' / 'warehouse')!r})
        from tests.warehouse.test_one_commit import second_run
        from govdata.warehouse.load import load_tables
        load_tables({url!r}, second_run(), "r2")
    """)
    env = {**os.environ, "GOVDATA_FAILPOINTS": failpoint, "GOVDATA_FAILPOINT_DIR": str(marker_dir)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)


@pytest.mark.parametrize("failpoint, committed", [("load_vault_written", False), ("load_warehouse_committed", True)])
def test_duckdb_load_killed_between_its_two_files(tmp_path, failpoint, committed):
    """SIGKILL of the loading process after the vault copy was written (the warehouse not yet
    committed), and after the warehouse committed (the copy not yet renamed): the next
    connection shows the previous state, or the whole new one — never a mix."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    load_tables(url, world.build_world(), world.RUN)
    before = dump(url)
    load_tables(url, second_run(), "r2")
    new_state = dump(url)
    for name in ("warehouse.duckdb", "warehouse.vault.duckdb"):   # back to the first state
        os.unlink(tmp_path / name)
    load_tables(url, world.build_world(), world.RUN)
    assert dump(url) == before

    proc = _load_in_subprocess(url, failpoint, tmp_path / "markers")
    deadline = time.monotonic() + 120
    while not (tmp_path / "markers" / failpoint).exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the load never reached the failpoint"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    vault = duckdb_paths(url)[1]
    assert os.path.exists(vault + ".pending")               # the crash left the copy behind
    state = dump(url)                                       # the next connection settles it
    assert not os.path.exists(vault + ".pending")
    assert state == (new_state if committed else before)
    assert oct(os.stat(vault).st_mode & 0o777) == "0o600"


def test_quarantine_holds_each_records_current_rows(warehouse_url):
    q = world.quarantine()
    load_tables(warehouse_url, world.build_world(), "r1")
    full = world.build_world()
    for run in ("r2", "r3"):                                # full reloads: never doubled
        load_tables(warehouse_url, {**full, "quarantine": full["quarantine"].assign(run_id=run)}, run)
    with connect(warehouse_url) as db:
        rows = sorted(db.fetchall("SELECT source_system, source_record_id, element, run_id FROM quarantine"))
        sources = sorted(db.fetchall("SELECT source_system, rejected_rows, quarantined_values FROM dim_source"))
    assert rows == [("gongan", "2", "phone", "r3"), ("gongan", "7", "id_number", "r3"),
                    ("gongan", "8", "name", "r3"), ("shebao", "4", "birth_date", "r3")]
    gongan_shebao = [s for s in sources if s[0] in ("gongan", "shebao")]
    assert gongan_shebao == [("gongan", 2, 1), ("shebao", 0, 1)]
    # an incremental run re-normalised gongan 2 (now clean) and 9; nothing else was read
    scope = pd.DataFrame({"source_system": ["gongan", "gongan"], "source_record_id": ["2", "9"]})
    empty = q.iloc[0:0].assign(run_id="r4")
    load_tables(warehouse_url, {"quarantine": empty, "dim_source": full["dim_source"]}, "r4",
                scopes={"quarantine": scope})
    with connect(warehouse_url) as db:
        rows = sorted(db.fetchall("SELECT source_system, source_record_id FROM quarantine"))
        counts = sorted(db.fetchall("SELECT source_system, rejected_rows, quarantined_values FROM dim_source "
                                    "WHERE source_system IN ('gongan', 'shebao')"))
    assert rows == [("gongan", "7"), ("gongan", "8"), ("shebao", "4")]
    assert counts == [("gongan", 2, 0), ("shebao", 0, 1)]
