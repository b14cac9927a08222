"""Preflight: everything a run needs, checked before anything is extracted (like `dbt debug`).

- the sources folder and every source YAML in it (all problems, not only the first),
- every source's connection: scheme and driver, the database file (SQLite: it must exist; it
  is never created) or server, the table, and every mapped column, the primary key and the
  watermark column (schema drift: a renamed or dropped column is named with its source and YAML),
- the warehouse URL: a supported scheme, and reachable (DuckDB: the folder is writable and the
  file not locked by another process; PostgreSQL: a login succeeds),
- a local lake folder is writable.

`govdata run` calls it in-process before Airflow is imported (so a wrong path fails in about a
second with one line per problem) and the DAG's plan task calls it again (a scheduler runs the
DAG without the CLI). `govdata check` shows every check. Nothing here imports Airflow, except to
resolve an `airflow:<conn_id>` connection inside a task.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from govdata.errors import ConfigError, redact

WAREHOUSE_BACKENDS = ("duckdb", "postgresql")
WAREHOUSE_FIX = "pass --warehouse (or set GOVDATA_WAREHOUSE_URL) as duckdb:///path/warehouse.duckdb " \
                "or postgresql+psycopg://user@host/db"
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Check:
    """One check: what was checked (`where`), and its problem and fix when it failed."""

    where: str
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        """One line for a person: where, what is wrong, how to fix it (identifiers redacted)."""
        text = f"{self.where}: {self.what}" + (f" — {self.fix}" if self.fix and not self.ok else "")
        return redact(text)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    sources: list = field(default_factory=list)  # SourceConfig of every valid source YAML
    # the database's own cheap estimate of each source table's rows (catalogue statistics, never
    # a count): the plan starts the largest extracts first
    estimated_rows: dict = field(default_factory=dict)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def ok(self, where: str, what: str) -> None:
        self.checks.append(Check(where, True, what))

    def fail(self, where: str, what: str, fix: str) -> None:
        self.checks.append(Check(where, False, what, fix))

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ConfigError("; ".join(c.line() for c in self.problems))


def preflight(sources_dir: str | Path, warehouse_url: str | None, lake: str | None = None,
              connect: bool = True, resolve_airflow_connections: bool = False) -> Report:
    """Every check of a run's configuration; `report.problems` is empty when the run can start.
    `connect=False` checks the files and URLs only (no database is opened)."""
    report = Report()
    report.sources = check_sources(Path(sources_dir), report)
    if connect:
        for config in report.sources:
            check_source_database(config, report, resolve_airflow_connections)
    if warehouse_url is not None:
        check_warehouse(warehouse_url, report, connect)
    if lake:
        check_lake(lake, report)
    return report


# sources --------------------------------------------------------------------------------------
def check_sources(folder: Path, report: Report) -> list:
    from govdata.standards.registry import StandardsError, load_standards
    from govdata.standards.sources import SourceConfigError, load_source, source_files

    where = str(folder)
    if not folder.exists():
        report.fail(where, "sources folder does not exist",
                    "pass --sources the folder that holds one YAML file per department table")
        return []
    if not folder.is_dir():
        report.fail(where, "--sources is a file, not a folder", "pass the folder that holds the source YAML files")
        return []
    files = source_files(folder.resolve())
    if not files:
        report.fail(where, "no source YAML files (*.yaml, *.yml) in the folder",
                    "add one YAML per department table (see docs/CONTRACTS.md)")
        return []
    try:
        standards = load_standards()
    except StandardsError as exc:
        report.fail(exc.file, f"{exc.key}: the standards do not load (expected {exc.expected})",
                    "run `govdata standards check` and fix what it lists")
        return []
    configs, names = [], {}
    for path in files:
        try:
            config = load_source(path, standards)
        except SourceConfigError as exc:
            for issue in exc.issues:
                _yaml_problem(report, exc, issue)
            continue
        if config.name in names:
            report.fail(str(path), f"source name {config.name!r} is also used by {names[config.name]}",
                        "give each source YAML a unique name:")
            continue
        names[config.name] = path
        report.ok(str(path), f"source {config.name}: YAML valid ({config.kind}, {len(config.columns)} mapped columns)")
        configs.append(config)
    return sorted(configs, key=lambda c: c.name)


def _yaml_problem(report: Report, exc, issue) -> None:
    if issue.expected == "valid YAML":
        cause = getattr(exc.__cause__, "problem", None) or "syntax error"
        report.fail(f"{exc.file} {issue.key}", f"not valid YAML ({cause})", "correct the YAML syntax at that line")
    elif issue.key == "(file)":
        report.fail(exc.file, f"expected {issue.expected}", "save the file as UTF-8 YAML")
    else:
        report.fail(exc.file, f"key '{issue.key}': expected {issue.expected}", "correct that key in the source YAML")


# source databases -----------------------------------------------------------------------------
def check_source_database(config, report: Report, resolve_airflow_connections: bool = False) -> None:
    """The source's database opens (read-only), has the table and every column the YAML names."""
    import sqlalchemy as sa

    from govdata.connections import source_engine, sqlalchemy_url

    where = f"{config.path} (source {config.name})"
    connection_fix = "correct connection: in the source YAML"
    if config.connection.startswith("airflow:") and not resolve_airflow_connections \
            and not os.environ.get(f"AIRFLOW_CONN_{config.connection.removeprefix('airflow:').upper()}"):
        report.ok(where, f"connection {config.connection} is resolved and checked by the DAG's plan task")
        return
    try:
        url = sa.engine.make_url(sqlalchemy_url(config.connection))
    except Exception as exc:  # noqa: BLE001 - a connection that cannot be resolved is a problem, whatever raised
        report.fail(where, f"connection cannot be resolved ({_reason(exc)})", connection_fix)
        return
    scheme = url.drivername
    try:
        url.get_dialect()
    except Exception:  # noqa: BLE001 - NoSuchModuleError (unknown scheme) or ImportError (driver)
        report.fail(where, f"unknown database scheme {scheme!r} in connection:",
                    "use sqlite:///path, postgresql://user@host/db or mysql://user@host/db")
        return
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        path = Path(database.removeprefix("file:").split("?")[0])
        if database in ("", ":memory:"):
            report.fail(where, "connection names no SQLite database file", connection_fix)
            return
        if not path.is_file():
            report.fail(where, f"database file {path} does not exist",
                        "correct connection: in the source YAML (a relative path is taken from the YAML's folder)")
            return
    engine = None
    try:
        engine = source_engine(config.connection)
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(config.table):
                tables = inspector.get_table_names()
                report.fail(where, f"table {config.table} does not exist in the database",
                            "correct table: in the source YAML" + _did_you_mean(config.table, tables, "tables there"))
                return
            columns = [c["name"] for c in inspector.get_columns(config.table)]
            report.estimated_rows[config.name] = estimated_rows(conn, config.table)
    except Exception as exc:  # noqa: BLE001 - driver errors of every kind become one line
        shown = url.render_as_string(hide_password=True)
        _fail_by_kind(report, where, exc,
                      transient=(f"cannot connect to {shown}", "start the database server or correct host and port in connection:"),
                      permanent=(f"cannot open {shown}", "correct connection: (user, password, database)"))
        return
    finally:
        if engine is not None:
            engine.dispose()
    _check_columns(config, columns, where, report)


def estimated_rows(conn, table: str) -> int | None:
    """The rows of `table` as the database estimates them without reading it (None when it cannot):
    SQLite the rowid span, PostgreSQL reltuples (its planner's count, kept by ANALYZE and
    autovacuum), MariaDB/MySQL information_schema.tables.table_rows, DuckDB estimated_size."""
    import sqlalchemy as sa

    backend = conn.dialect.name
    mysql = "SELECT table_rows FROM information_schema.tables WHERE table_schema = database() AND table_name = :table"
    queries = {
        "sqlite": f'SELECT max(rowid) - min(rowid) + 1 FROM "{table}"',
        "postgresql": "SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)",
        "mysql": mysql, "mariadb": mysql,
        "duckdb": "SELECT estimated_size FROM duckdb_tables() WHERE table_name = :table",
    }
    if backend not in queries or '"' in table:
        return None
    try:
        value = conn.execute(sa.text(queries[backend]), {"table": table}).scalar()
    except Exception:  # noqa: BLE001 - an estimate only orders the extracts; the read itself checks the table
        conn.rollback()
        return None
    return None if value is None or float(value) < 0 else int(value)   # PostgreSQL: -1 = never analysed


def by_estimated_rows(sources: list, estimates: dict) -> list:
    """Largest estimated first (unknown last), ties by name: the longest extracts start first, so
    the last to finish is not a large one started late."""
    return sorted(sources, key=lambda s: (-(estimates.get(s.name) or -1), s.name))


def _check_columns(config, columns: list[str], where: str, report: Report) -> None:
    needed = {config.primary_key: f"primary key column {config.primary_key}"}
    if config.incremental:
        needed.setdefault(config.incremental["column"], f"incremental column {config.incremental['column']}")
    for column, element in config.columns.items():
        needed.setdefault(column, f"column {column} (mapped to {element})")
    present = set(columns)
    unmapped = [c for c in columns if c not in needed]
    missing = [(c, role) for c, role in needed.items() if c not in present]
    for column, role in missing:
        report.fail(where, f"{role} is not in table {config.table}: renamed or dropped at the source?",
                    "correct the column name in the YAML" + _did_you_mean(column, unmapped, "unmapped columns"))
    if not missing:
        report.ok(where, f"table {config.table}: primary key and {len(config.columns)} mapped columns present")


def _did_you_mean(name: str, candidates: list[str], label: str) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5) \
        or [c for c in candidates if c.lower() == name.lower()]
    if close:
        return f" (did you mean {close[0]}?)"
    if candidates:
        shown = ", ".join(sorted(candidates)[:8]) + (", …" if len(candidates) > 8 else "")
        return f" ({label}: {shown})"
    return ""


def _fail_by_kind(report: Report, where: str, exc: BaseException, *, transient: tuple[str, str],
                  permanent: tuple[str, str]) -> None:
    """One failure line: (what, fix) for an error a retry may cure (server down, file locked),
    or for one it will not (wrong login, not a database); the driver's reason in brackets."""
    from govdata.errors import is_transient

    what, fix = transient if is_transient(exc) else permanent
    report.fail(where, f"{what} ({_reason(exc)})", fix)


def _reason(exc: BaseException) -> str:
    """The driver's own first line (sqlalchemy wraps it), without URLs that may hold passwords."""
    import re

    inner = getattr(exc, "orig", None) or exc
    text = " ".join(str(inner).split("\n")[0].split()) or type(inner).__name__
    return re.sub(r"\w+://\S+", "<url>", text)[:300]


# warehouse and lake ---------------------------------------------------------------------------
def check_warehouse(url_text: str, report: Report, connect: bool = True) -> None:
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(url_text)
    except Exception:  # noqa: BLE001 - ArgumentError for text that is not a URL
        report.fail(f"warehouse {url_text!r}", "not a database URL", WAREHOUSE_FIX)
        return
    shown = f"warehouse {url.render_as_string(hide_password=True)}"
    backend = url.get_backend_name()
    if backend not in WAREHOUSE_BACKENDS:
        report.fail(shown, f"unsupported warehouse scheme {url.drivername!r}", WAREHOUSE_FIX)
        return
    if backend == "duckdb":
        _check_duckdb(url, shown, report, connect)
    elif connect:
        _check_postgres(url, shown, report)
    else:
        report.ok(shown, "PostgreSQL URL (not connected)")


def _check_duckdb(url, shown: str, report: Report, connect: bool) -> None:
    from govdata.warehouse.load import duckdb_paths

    try:
        paths = duckdb_paths(url.render_as_string(hide_password=False))
    except ValueError as exc:
        report.fail(shown, str(exc), WAREHOUSE_FIX)
        return
    for path in map(Path, paths):
        problem = _writable_file(path)
        if problem:
            report.fail(shown, problem, "choose a warehouse file in a folder you can write to")
            return
        if connect and path.exists():
            import duckdb

            try:
                duckdb.connect(str(path), read_only=True).close()
            except duckdb.Error as exc:
                _fail_by_kind(report, shown, exc,
                              transient=(f"{path} is in use by another process",
                                         "wait for the other run to finish (or stop it), then run again"),
                              permanent=(f"{path} is not a DuckDB database this version can open",
                                         "pass another warehouse file, or move this one away"))
                return
    report.ok(shown, "DuckDB warehouse folder writable")


def _check_postgres(url, shown: str, report: Report) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - every driver error becomes one line
        _fail_by_kind(report, shown, exc,
                      transient=("cannot connect", "start PostgreSQL or correct host and port in --warehouse / GOVDATA_WAREHOUSE_URL"),
                      permanent=("login failed", "correct user, password and database in --warehouse / GOVDATA_WAREHOUSE_URL"))
        return
    finally:
        engine.dispose()
    report.ok(shown, "PostgreSQL reachable")


def _writable_file(path: Path) -> str | None:
    """Why `path` cannot be created or written, or None. Folders are created by the loader."""
    if path.exists():
        if not path.is_file():
            return f"{path} exists and is not a file"
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    return None if os.access(folder, os.W_OK | os.X_OK) else f"folder {folder} is not writable"


def check_lake(lake: str, report: Report) -> None:
    if "://" in lake and not lake.startswith("file://"):
        return  # fsspec URLs (s3://…) are checked by the first write
    path = Path(lake.removeprefix("file://"))
    folder = path
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        report.fail(f"lake {lake}", f"{folder} is a file, not a folder", "pass --lake (or GOVDATA_LAKE) a folder")
    elif not os.access(folder, os.W_OK | os.X_OK):
        report.fail(f"lake {lake}", f"folder {folder} is not writable", "pass --lake (or GOVDATA_LAKE) a writable folder")
    else:
        report.ok(f"lake {lake}", "lake folder writable")
