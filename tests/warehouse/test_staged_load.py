"""Streamed loads: tables staged as lake Parquet (warehouse.staging.Stager) load the same warehouse
as tables in memory, on DuckDB and PostgreSQL; the load stage's lazy lake readers build the same
tables as frames in memory."""
from __future__ import annotations

import os
import stat

import pandas as pd
import pyarrow as pa
import pytest
from govdata.warehouse.build import build_tables, iter_tables
from govdata.warehouse.load import load_tables
from govdata.warehouse.staging import StagedTable, Stager

from govdata import lake
from govdata.stages.load import LinkFrames, SourceFrames

try:
    from tests.warehouse import world
    from tests.warehouse.test_warehouse import dump
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]
    from test_warehouse import dump  # type: ignore[no-redef]


@pytest.fixture(params=["duckdb", "postgresql"])
def two_urls(request, tmp_path):
    if request.param == "duckdb":
        return [f"duckdb:///{tmp_path / name / 'warehouse.duckdb'}" for name in ("memory", "staged")]
    first = request.getfixturevalue("pg_database")
    return [first, _second_pg(request)]


def _second_pg(request):
    import uuid

    import psycopg
    import sqlalchemy as sa
    from govdata.warehouse.load import pg_conninfo

    base = request.getfixturevalue("postgres_url")
    name = f"wh_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(**pg_conninfo(base), autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    request.addfinalizer(lambda: (admin.execute(f"DROP DATABASE {name} WITH (FORCE)"), admin.close()))
    return sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)


def _staged(tables: dict[str, pd.DataFrame], folder: str, sort: bool) -> Stager:
    stager = Stager(folder, sort=sort, min_rows=1)   # every non-empty table goes through a file
    for name, frame in tables.items():
        stager.add(name, frame)
    return stager


def test_staged_tables_load_the_same_warehouse_as_tables_in_memory(two_urls, tmp_path):
    memory_url, staged_url = two_urls
    for _ in range(2):   # a first load, then the same load again (merges into existing rows)
        load_tables(memory_url, world.build_world(), world.RUN)
        stager = _staged(world.build_world(), str(tmp_path / "lake" / "load"), sort=staged_url.startswith("postgres"))
        staged = [n for n, t in stager.tables.items() if isinstance(t, StagedTable)]
        assert {"dim_person", "vault_person", "xref_person", "fact_application", "quarantine"} <= set(staged)
        counts = load_tables(staged_url, stager.tables, world.RUN)
        assert counts["xref_person"] == 4 and counts["vault_person"] == 3
        stager.remove_files()
        assert not (tmp_path / "lake" / "load").exists()
    assert dump(staged_url) == dump(memory_url)


def test_staged_files_are_encrypted_private_lake_files_read_in_row_groups(tmp_path):
    """Staged files follow the lake's rules: PII elements (dim_person's address) encrypted,
    0600; tokens, masks and the vault's AES-GCM ciphertexts are no raw identifiers."""
    stager = _staged(world.build_world(), str(tmp_path / "lake" / "load"), sort=False)
    assert all(lake.is_encrypted(p) for p in stager.tables["dim_person"].paths)
    for table in stager.tables.values():
        for path in getattr(table, "paths", []):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    vault = stager.tables["vault_person"]
    assert isinstance(vault, StagedTable) and vault.num_rows == 3
    batches = list(vault.batches(rows=2))
    assert sum(b.num_rows for b in batches) == 3
    assert pa.Table.from_batches(batches).column("person_id").to_pylist() == ["P000000000001", "P000000000002",
                                                                               "P000000000003"]


def test_a_table_added_in_parts_is_one_table_and_small_ones_stay_in_memory(tmp_path):
    stager = Stager(str(tmp_path / "load"), min_rows=5)
    xref = world.link_frames()["person_xref"].assign(run_id="r1", is_deleted=False)
    stager.add("xref_person", xref.iloc[:2])
    assert isinstance(stager.tables["xref_person"], pa.Table)   # 2 rows: below min_rows
    stager.add("xref_person", xref.iloc[2:])
    assert stager.tables["xref_person"].num_rows == 4
    big = pd.concat([xref.assign(source_record_id=xref["source_record_id"] + f"-{i}") for i in range(2)])
    stager.add("xref_person", big)   # 4 + 8 rows: both parts go to files
    staged = stager.tables["xref_person"]
    assert isinstance(staged, StagedTable) and staged.num_rows == 12 and len(staged.paths) == 2
    assert sorted(staged.column("source_record_id").to_pylist())[:3] == ["1", "1-0", "1-1"]


def test_lazy_lake_readers_build_the_same_tables(tmp_path):
    """The load stage reads link outputs and standardised sources from the lake on demand
    (person and enterprise sources in the few columns the build uses): same tables."""
    link, std = world.link_frames(), world.std_frames()
    link_paths = {name: lake.write_parquet(frame, str(tmp_path / "link" / f"{name}.parquet"))
                  for name, frame in link.items()}
    normalised = [{"source": source, "kind": frame["kind"].iloc[0],
                   "current_path": lake.write_parquet(frame, str(tmp_path / "current" / f"{source}.parquet"))}
                  for source, frame in std.items()]
    expected = build_tables({k: lake.read_parquet(p) for k, p in link_paths.items()},
                            {n["source"]: lake.read_parquet(n["current_path"]) for n in normalised},
                            world.quarantine(), world.standards(), world.KEY, world.RUN)
    got: dict[str, pd.DataFrame] = {}
    for name, frame in iter_tables(LinkFrames(link_paths), SourceFrames(normalised), world.quarantine(),
                                   world.standards(), world.KEY, world.RUN):
        got[name] = frame if name not in got else pd.concat([got[name], frame], ignore_index=True)
    assert sorted(got) == sorted(expected)
    from govdata.warehouse.staging import to_arrow

    for name in expected:   # as the warehouse receives them: one path may give string[pyarrow] text, the other object
        pd.testing.assert_frame_equal(to_arrow(name, got[name]).to_pandas(), to_arrow(name, expected[name]).to_pandas(),
                                      obj=name)


def test_identifier_tokens_are_privacy_tokens():
    from govdata.transforms.privacy import token
    from govdata.warehouse.rows import crypto_workers, identifier_token

    values = pd.Series(["11010519491231002X", None, "11010519491231002X", "91110000MA0000001X"], dtype="string")
    first = identifier_token(values, world.KEY)
    with crypto_workers(2):
        again = identifier_token(values.iloc[::-1], world.KEY)
    other_key = identifier_token(values, b"\x22" * 32)
    assert first.tolist() == token(values, world.KEY).tolist() == again.iloc[::-1].tolist()
    assert first.iloc[1] is pd.NA and first.iloc[0] == first.iloc[2]
    assert other_key.tolist() == token(values, b"\x22" * 32).tolist() != first.tolist()


def test_completed_tables_hands_over_each_table_once_its_last_part_is_staged(tmp_path):
    from govdata.stages.load import completed_tables

    def part(n: int) -> pd.DataFrame:
        return pd.DataFrame({"run_id": ["r1"] * n, "source_system": ["gongan"] * n,
                             "source_record_id": [f"{n}-{i}" for i in range(n)]})

    stager = Stager(str(tmp_path / "owners"), min_rows=0)
    seen = []
    for name, last in completed_tables([("quarantine", part(2)), ("quarantine", part(3)), ("dim_source", None)],
                                       stager):
        seen.append((name, stager.tables.get(name).num_rows if name in stager.tables else None,
                     None if last is None else len(last)))
    assert seen == [("quarantine", 5, 3), ("dim_source", None, None)]
    assert isinstance(stager.tables["quarantine"], StagedTable)   # min_rows=0: every table a file

    with pytest.raises(RuntimeError, match="^the load's table quarantine was built in two separate parts$"):
        list(completed_tables([("quarantine", part(1)), ("dim_source", None), ("quarantine", part(1))],
                              Stager(str(tmp_path / "again"), min_rows=0)))
