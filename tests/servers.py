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


def _pg_bin() -> Path:
    """GOVDATA_PG_BIN, else the newest /usr/lib/postgresql/<major>/bin holding initdb (Debian)."""
    if os.environ.get("GOVDATA_PG_BIN"):
        return Path(os.environ["GOVDATA_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
MARIADB_INSTALL_DB = os.environ.get("GOVDATA_MARIADB_INSTALL_DB", "mariadb-install-db")
MARIADBD = os.environ.get("GOVDATA_MARIADBD", "mariadbd")
REDIS_SERVER = os.environ.get("GOVDATA_REDIS_SERVER", "redis-server")
# server -> (binaries it needs, the Debian package that holds them)
PACKAGES = {"postgres": ((PG_BIN / "initdb", PG_BIN / "pg_ctl"), "postgresql"),
            "mariadb": ((MARIADB_INSTALL_DB, MARIADBD), "mariadb-server"),
            # the browser tests (tests/e2e/test_browser_pages.py): Debian's Chromium, and a CJK
            # font so that Chinese pages render as text, not boxes
            "chromium": ((Path("/usr/bin/chromium"),), "chromium"),
            "cjk-fonts": ((Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),), "fonts-noto-cjk"),
            # the Celery broker of the distributed run (tests/e2e/test_celery.py)
            "redis": ((REDIS_SERVER,), "redis-server")}
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
            subprocess.run(self.stop_cmd, check=False, capture_output=True, timeout=30)
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


def missing_packages(servers: set[str]) -> list[str]:
    """Debian packages to install for `servers` (keys of PACKAGES: the database servers, the browser)."""
    return [package for name, (binaries, package) in PACKAGES.items()
            if name in servers and not all(_present(b) for b in binaries)]


def _present(path: str | Path) -> bool:
    """A program on PATH, or a file (a font) at its absolute path."""
    return Path(path).exists() if Path(path).is_absolute() else shutil.which(str(path)) is not None


def ensure_servers(servers: set[str], log=print) -> None:
    """Makes sure the test servers can start: installs their Debian packages with apt-get when
    running as root where apt is available (GOVDATA_TEST_INSTALL=0 turns that off), else raises
    ServerUnavailable whose message is the one command to run."""
    missing = missing_packages(servers)
    if not missing:
        return
    command = f"apt-get install -y --no-install-recommends {' '.join(missing)}"
    may_install = os.geteuid() == 0 and shutil.which("apt-get") and os.environ.get("GOVDATA_TEST_INSTALL", "1") != "0"
    if not may_install:
        sudo = "" if os.geteuid() == 0 else "sudo "
        raise ServerUnavailable(f"the test servers need the Debian package(s) {', '.join(missing)}: "
                                f"run `{sudo}{command}`, then `make test` again")
    log_path = Path(tempfile.gettempdir()) / "govdata-apt-install.log"
    log(f"installing the test servers' Debian package(s) {', '.join(missing)} (apt-get; log: {log_path})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log_path, "w") as out:
        ok = all(subprocess.run(cmd, check=False, stdout=out, stderr=subprocess.STDOUT, env=env).returncode == 0
                 for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]))
    # The distribution's own instances are not used (the tests start throwaway servers): stop them.
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "stop", "mariadb", "postgresql", "redis-server"], check=False, capture_output=True)
    still = missing_packages(servers)
    if not ok or still:
        raise ServerUnavailable(f"installing {', '.join(missing)} failed (log: {log_path}): run `{command}` and read its output")


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
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
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
    initdb = _require(PG_BIN / "initdb", "postgresql")
    pg_ctl = _require(PG_BIN / "pg_ctl", "postgresql")
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
    with open(folder / "log", "wb") as log:   # the child keeps its own copy of the descriptor
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


def start_redis() -> Server:
    """redis-server on a free port of 127.0.0.1, in a throwaway folder, nothing persisted (no RDB
    snapshots, no append-only file): the Celery broker of the distributed run. Redis runs as root
    without complaint; its own process group, so that stopping it stops nothing else."""
    redis_server = _require(REDIS_SERVER, "redis-server")
    folder = Path(tempfile.mkdtemp(prefix="govdata-redis-"))
    port = free_port()
    with open(folder / "log", "wb") as log:
        process = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                    "--save", "", "--appendonly", "no", "--daemonize", "no",
                                    "--unixsocket", "", "--logfile", ""],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(url=f"redis://127.0.0.1:{port}/0", folder=folder, process=process)
    try:
        _wait_for_port(port, 15, process, "redis-server")
        _wait_for_redis(port, 10)
    except Exception:
        server.stop()
        raise
    return server


def _wait_for_redis(port: int, timeout: float) -> None:
    """The port opens before Redis has loaded: wait for PONG (the protocol by hand, no client needed)."""
    deadline = time.monotonic() + timeout
    reply = b""
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
        if reply.startswith(b"+PONG"):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"redis-server on port {port} did not answer PING: {reply!r}")


def fresh_database(server_url: str, name: str) -> str:
    """An empty database `name` on the server (dropped first if a previous test left it);
    returns its SQLAlchemy URL with the same login."""
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


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


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.servers [postgres] [mariadb] [redis] …` (default all): what `make test` runs first.
    Installs missing server packages (root + apt) or prints the one command to run; exit 1 then."""
    import sys

    servers = set(argv if argv is not None else sys.argv[1:]) or set(PACKAGES)
    unknown = servers - set(PACKAGES)
    if unknown:
        print(f"unknown server(s) {', '.join(sorted(unknown))}; expected {', '.join(PACKAGES)}", file=sys.stderr)
        return 2
    try:
        ensure_servers(servers, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ServerUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
