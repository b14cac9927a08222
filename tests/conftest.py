"""Session-wide fixtures: throwaway PostgreSQL / MariaDB servers (see tests/servers.py).

GOVDATA_TEST_POSTGRES_URL / GOVDATA_TEST_MARIADB_URL point the fixtures at existing servers
instead (their login must be allowed to create roles / databases).
A missing server binary fails the test with the Debian package to install; nothing is skipped.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

try:  # tests/ as a package or as a plain rootdir folder on sys.path
    from tests.servers import start_mariadb, start_postgres
except ImportError:  # pragma: no cover - depends on how pytest was started
    from servers import start_mariadb, start_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (postgresql+psycopg://) of a superuser on a throwaway PostgreSQL 15."""
    existing = os.environ.get("GOVDATA_TEST_POSTGRES_URL")
    if existing:
        yield existing
        return
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """SQLAlchemy URL (mysql+pymysql://) of an all-privileges user on a throwaway MariaDB."""
    existing = os.environ.get("GOVDATA_TEST_MARIADB_URL")
    if existing:
        yield existing
        return
    server = start_mariadb()
    try:
        yield server.url
    finally:
        server.stop()
