"""Throwaway PostgreSQL and MariaDB servers for tests.

CI and sessions run as root and both servers refuse root, so each server runs as its system
user (`postgres` / `mysql`) via runuser, in a temporary folder owned by that user, on a free
port. Durability is switched off: the data is thrown away at the end anyway.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("GOVDATA_PG_BIN", "/usr/lib/postgresql/15/bin"))
MARIADB_INSTALL_DB = "mariadb-install-db"
MARIADBD = "mariadbd"
TEST_USER = "govdata"
TEST_PASSWORD = "govdata"


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not come up."""


@dataclass
class Server:
    url: str                       # SQLAlchemy URL for the test superuser
    folder: Path                   # temporary folder holding data + socket
    process: subprocess.Popen | None = None
    stop_cmd: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, capture_output=True, timeout=30)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(binary: str | Path, package: str) -> str:
    path = shutil.which(str(binary))
    if path is None:
        raise ServerUnavailable(
            f"{binary} not found: install the Debian package {package} (apt-get install {package})")
    return path


def _folder_for(user: str, prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(folder, user=user, group=user)
    return folder


def _as_user(user: str, cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", user, "--", *cmd]
    return cmd


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise ServerUnavailable(f"{what} failed (exit {res.returncode}): {res.stderr[-2000:]}")


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen | None, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerUnavailable(f"{what} exited with {process.returncode} during startup")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServerUnavailable(f"{what} did not listen on port {port} within {timeout} s")


def start_postgres(durable: bool = False) -> Server:
    """initdb + pg_ctl start as `postgres`; superuser `govdata` (password `govdata`).
    Tests trade durability for speed (fsync off); `durable=True` keeps the server defaults,
    as a production warehouse runs (the benchmark uses it)."""
    initdb = _require(PG_BIN / "initdb", "postgresql-15")
    pg_ctl = _require(PG_BIN / "pg_ctl", "postgresql-15")
    folder = _folder_for("postgres", "govdata-pg-")
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(TEST_PASSWORD)
    shutil.chown(pwfile, user="postgres", group="postgres")
    _run(_as_user("postgres", [initdb, "-D", str(data), "-U", TEST_USER, "--pwfile", str(pwfile),
                               "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                               "--no-sync", "--no-instructions"]), "initdb")
    port = free_port()
    fast = "" if durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 {fast}-c max_connections=60"
    server = Server(url=f"postgresql+psycopg://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{port}/postgres",
                    folder=folder,
                    stop_cmd=_as_user("postgres", [pg_ctl, "-D", str(data), "-m", "immediate", "stop"]))
    try:
        _run(_as_user("postgres", [pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"),
                                   "-w", "-t", "30", "start"]), "pg_ctl start")
        _wait_for_port(port, 10, None, "postgres")
    except Exception:
        server.stop()
        raise
    return server


def start_mariadb() -> Server:
    """mariadb-install-db + mariadbd as `mysql`; user `govdata`@'%' with all privileges."""
    install = _require(MARIADB_INSTALL_DB, "mariadb-server")
    mariadbd = _require(MARIADBD, "mariadb-server")
    folder = _folder_for("mysql", "govdata-maria-")
    data = folder / "data"
    init = folder / "init.sql"
    init.write_text(
        f"CREATE USER IF NOT EXISTS '{TEST_USER}'@'%' IDENTIFIED BY '{TEST_PASSWORD}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{TEST_USER}'@'%' WITH GRANT OPTION;\n"
        "CREATE DATABASE IF NOT EXISTS govdata CHARACTER SET utf8mb4;\n")
    shutil.chown(init, user="mysql", group="mysql")
    _run(_as_user("mysql", [install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
                            "--auth-root-authentication-method=socket", "--skip-name-resolve"]),
         "mariadb-install-db")
    port = free_port()
    cmd = _as_user("mysql", [mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}",
                             "--bind-address=127.0.0.1", f"--socket={folder / 'mysqld.sock'}",
                             f"--pid-file={folder / 'mysqld.pid'}", f"--init-file={init}",
                             "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0",
                             "--innodb-doublewrite=0", "--innodb-buffer-pool-size=64M",
                             "--character-set-server=utf8mb4", "--skip-log-bin"])
    log = open(folder / "log", "wb")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = Server(url=f"mysql+pymysql://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{port}/govdata?charset=utf8mb4",
                    folder=folder, process=process)
    try:
        _wait_for_port(port, 30, process, "mariadbd")
        _wait_for_login(server.url, 15)
    except Exception:
        server.stop()
        raise
    return server


def _wait_for_login(url: str, timeout: float) -> None:
    """The port opens before the init file has created the test user: wait until it can log in."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1 FROM DUAL"))
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = exc
                time.sleep(0.1)
    finally:
        engine.dispose()
    raise ServerUnavailable(f"cannot log in to the test server: {last}")
