"""Fixtures shared by the warehouse tests."""
from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa

from govdata.warehouse.load import pg_conninfo


@pytest.fixture
def pg_database(postgres_url):
    """A fresh database on the throwaway server; dropped afterwards."""
    name = f"wh_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(**pg_conninfo(postgres_url), autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    yield sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()
