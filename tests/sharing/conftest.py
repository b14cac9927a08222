"""Fixtures of the sharing tests: a fresh PostgreSQL database holding the sharing world."""
from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa

from govdata.warehouse.load import pg_conninfo

try:
    from tests.sharing import world
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]


def _fresh_database(postgres_url: str):
    name = f"share_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(**pg_conninfo(postgres_url), autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    url = sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    return admin, name, url


@pytest.fixture
def pg_world(postgres_url, monkeypatch):
    """A PostgreSQL warehouse loaded with the sharing world; dropped afterwards."""
    monkeypatch.setenv("GOVDATA_TOKEN_KEY", world.KEY_HEX)
    admin, name, url = _fresh_database(postgres_url)
    world.load_world(url)
    yield url
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(scope="module")
def pg_world_module(postgres_url):
    mp = pytest.MonkeyPatch()
    mp.setenv("GOVDATA_TOKEN_KEY", world.KEY_HEX)
    admin, name, url = _fresh_database(postgres_url)
    world.load_world(url)
    yield url
    mp.undo()
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()
