"""warehouse.load.open_load: tables handed over one by one as each is complete (DuckDB merges each
at once, on its own thread), committed together or not at all — on real DuckDB files and a real
PostgreSQL server."""
from __future__ import annotations

from pathlib import Path

import pytest

from govdata.warehouse.load import LoadError, duckdb_paths, load_tables, open_load

try:
    from tests.warehouse import world
    from tests.warehouse.test_one_commit import dump
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]
    from test_one_commit import dump  # type: ignore[no-redef]


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("pg_database")


def test_tables_added_one_by_one_load_as_load_tables_does(warehouse_url, tmp_path):
    counts = load_tables(warehouse_url, world.build_world(), world.RUN)
    expected = dump(warehouse_url)
    with open_load(warehouse_url, world.RUN) as load:
        for name, frame in world.build_world().items():
            load.add(name, frame)
        assert load.commit() == counts
    assert dump(warehouse_url) == expected


def test_leaving_without_commit_loads_nothing(warehouse_url):
    load_tables(warehouse_url, world.build_world(), "r1")
    before = dump(warehouse_url)
    tables = world.build_world()
    tables["dim_person"].loc[0, "name"] = "改名"
    with open_load(warehouse_url, "r2") as load:
        for name, frame in tables.items():
            load.add(name, frame)
    assert dump(warehouse_url) == before
    if warehouse_url.startswith("duckdb"):
        assert not Path(duckdb_paths(warehouse_url)[1] + ".pending").exists()


def test_a_failed_merge_stops_the_next_add_before_commit(tmp_path):
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    load_tables(url, world.build_world(), "r1")
    before = dump(url)
    tables = world.build_world()
    tables["fact_application"].loc[3, "rating"] = 7      # violates CHECK rating 1..5
    with open_load(url, "r2") as load:
        load.add("dim_person", tables["dim_person"])
        load.add("fact_application", tables["fact_application"])
        load._thread.join(timeout=60)   # the merges' thread ends at the failure
        with pytest.raises(LoadError, match="^loading table fact_application failed, nothing was loaded"):
            load.add("dim_region", tables["dim_region"])
    assert dump(url) == before


def test_a_table_added_twice_is_refused(warehouse_url):
    with open_load(warehouse_url, "r1") as load:
        load.add("dim_region", world.build_world()["dim_region"])
        with pytest.raises(ValueError, match="^table dim_region was added to this load twice"):
            load.add("dim_region", world.build_world()["dim_region"])


def test_yielding_the_cpu_loads_the_same_at_a_lower_priority(tmp_path):
    """yield_cpu: the merges' thread (and the database threads it starts) at niceness 10, the
    caller's thread untouched; the warehouse the same as a load at full priority."""
    import os
    import time

    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    counts = load_tables(url, world.build_world(), world.RUN)
    expected = dump(url)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    with open_load(url, world.RUN, yield_cpu=True) as load:
        tid = load._thread.native_id
        for name, frame in world.build_world().items():
            load.add(name, frame)
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, tid) == mine and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, tid) == mine + 10
        assert load.commit() == counts
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine
    assert dump(url) == expected
