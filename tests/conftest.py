"""Session-wide fixtures: throwaway PostgreSQL / MariaDB servers (see tests/servers.py).

GOVDATA_TEST_POSTGRES_URL / GOVDATA_TEST_MARIADB_URL / GOVDATA_TEST_REDIS_URL point the fixtures at existing servers
instead (their login must be allowed to create roles / databases).
A missing server is installed before any test runs (apt-get, as root where apt is available),
or the session stops at once with the one command to run; nothing is skipped.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

try:  # tests/ as a package or as a plain rootdir folder on sys.path
    from tests.servers import (
        ServerUnavailable,
        ensure_servers,
        start_mariadb,
        start_postgres,
        start_redis,
    )
except ImportError:  # pragma: no cover - depends on how pytest was started
    from servers import (
        ServerUnavailable,
        ensure_servers,
        start_mariadb,
        start_postgres,
        start_redis,
    )

SERVER_FIXTURES = {"postgres_url": ("postgres", "GOVDATA_TEST_POSTGRES_URL"),
                   "mariadb_url": ("mariadb", "GOVDATA_TEST_MARIADB_URL"),
                   "redis_url": ("redis", "GOVDATA_TEST_REDIS_URL")}


def pytest_collection_modifyitems(session, config, items) -> None:
    """Before the first test: the servers the selected tests need can start, or stop here with one
    line (instead of one error per test that uses a missing server)."""
    needed = {server for item in items for fixture, (server, env) in SERVER_FIXTURES.items()
              if fixture in getattr(item, "fixturenames", ()) and not os.environ.get(env)}
    if not needed:
        return
    try:
        ensure_servers(needed, log=lambda line: print(f"\n{line}", flush=True))
    except ServerUnavailable as exc:
        pytest.exit(str(exc), returncode=4)


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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """redis:// URL of a throwaway Redis (nothing persisted): the Celery broker of tests/e2e/test_celery.py."""
    existing = os.environ.get("GOVDATA_TEST_REDIS_URL")
    if existing:
        yield existing
        return
    server = start_redis()
    try:
        yield server.url
    finally:
        server.stop()
