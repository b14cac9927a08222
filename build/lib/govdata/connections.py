"""Department database connections: a source's `connection:` as a SQLAlchemy URL and engine.

Kept apart from govdata/extract.py so that the preflight (govdata/preflight.py), which runs
before Airflow and before any heavy import, can open sources the same way extract does.
"""
from __future__ import annotations

import os

import sqlalchemy as sa

CONNECT_TIMEOUT_SECONDS = 10

_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
            "mariadb": "mysql+pymysql"}


def sqlalchemy_url(connection: str) -> str:
    """A source's connection as a SQLAlchemy URL: plain URL, ${ENV}, or airflow:<conn_id>."""
    url = os.path.expandvars(connection)
    if url.startswith("airflow:"):
        url = _airflow_connection_uri(url.removeprefix("airflow:"))
    scheme, sep, rest = url.partition("://")
    return f"{_DRIVERS.get(scheme, scheme)}{sep}{rest}"


def source_engine(connection: str) -> sa.Engine:
    """The engine of a department database, read-only where the driver allows it.

    SQLite is opened as a read-only URI (`file:…?mode=ro`): a wrong path is an error
    ("unable to open database file") and never creates an empty database file. Network
    databases get a connect timeout, so an unreachable server fails in seconds, not minutes."""
    url = sa.engine.make_url(sqlalchemy_url(connection))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        from urllib.parse import quote

        database = url.database if url.database.startswith("file:") else f"file:{quote(url.database)}"
        url = url.set(database=database, query={**url.query, "mode": "ro", "uri": "true"})
        return sa.create_engine(url)
    if url.get_backend_name() in ("postgresql", "mysql") and "connect_timeout" not in url.query:
        return sa.create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    return sa.create_engine(url)


def _airflow_connection_uri(conn_id: str) -> str:
    env = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env and "://" in env:
        return env
    from airflow.sdk import Connection  # only when a source names an Airflow connection

    return Connection.get(conn_id).get_uri()
