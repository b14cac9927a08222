"""Copy demo departments from their SQLite files onto real database servers.

`govdata demo-data` writes every department as a SQLite file. Real departments run real
servers, so this copies chosen departments' tables into MariaDB / PostgreSQL and points
their source YAML at the server through an environment reference (`${DEPT_MARIADB_URL}`),
so no password lands in the YAML. Used by the compose init service
(docker/load_departments.py) and by the end-to-end tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
import yaml

CHUNK_ROWS = 20_000
KEY_LENGTH = 191  # MariaDB indexes at most 767 bytes: 191 utf8mb4 characters


def target_column(column: sa.Column) -> sa.Column:
    """Same name and kind of type; text keys become VARCHAR (MariaDB cannot index TEXT)."""
    declared = column.type
    if isinstance(declared, sa.Integer):
        kind: sa.types.TypeEngine = sa.BigInteger()
    elif isinstance(declared, (sa.Float, sa.Numeric)):
        kind = sa.Float()
    elif column.primary_key:
        kind = sa.String(KEY_LENGTH)
    else:
        kind = sa.Text()
    return sa.Column(column.name, kind, primary_key=column.primary_key, autoincrement=False)


def copy_table(sqlite_path: Path, table_name: str, target_url: str, chunk_rows: int = CHUNK_ROWS) -> int:
    """Replace `table_name` in the target with the SQLite table's rows; returns rows copied."""
    if not sqlite_path.is_file():
        raise FileNotFoundError(f"department database {sqlite_path} does not exist")
    source_engine = sa.create_engine(f"sqlite:///{sqlite_path}")
    target_engine = sa.create_engine(target_url)
    try:
        try:
            source = sa.Table(table_name, sa.MetaData(), autoload_with=source_engine)
        except sa.exc.NoSuchTableError:
            raise ValueError(f"{sqlite_path} has no table {table_name!r}") from None
        target = sa.Table(table_name, sa.MetaData(), *[target_column(c) for c in source.columns])
        copied = 0
        with source_engine.connect() as reader, target_engine.begin() as writer:
            target.drop(writer, checkfirst=True)
            target.create(writer)
            result = reader.execution_options(stream_results=True).execute(sa.select(source))
            while rows := result.fetchmany(chunk_rows):
                writer.execute(target.insert(), [dict(r._mapping) for r in rows])
                copied += len(rows)
        return copied
    finally:
        source_engine.dispose()
        target_engine.dispose()


def point_source_at(yaml_path: Path, env_var: str) -> dict:
    """Rewrite the source YAML's connection to `${env_var}`; returns the new document."""
    doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "connection" not in doc:
        raise ValueError(f"{yaml_path} is not a source YAML (no 'connection' key)")
    doc["connection"] = "${" + env_var + "}"
    yaml_path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return doc


def move_department(world: Path, source: str, env_var: str) -> int:
    """Copy one demo department to the server named by `env_var`, then repoint its YAML."""
    url = os.environ.get(env_var)
    if not url:
        raise ValueError(f"environment variable {env_var} (target of department {source}) is not set")
    yaml_path = world / "sources" / f"{source}.yaml"
    if not yaml_path.is_file():
        raise FileNotFoundError(f"no source YAML {yaml_path} for department {source}")
    doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    rows = copy_table(world / "departments" / f"{source}.sqlite", doc["table"], url)
    point_source_at(yaml_path, env_var)
    return rows
