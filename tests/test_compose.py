"""Deployment: docker-compose.yml / Dockerfile structure (no Docker engine here), and the
department seeding script run for real against throwaway MariaDB and PostgreSQL servers."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from govdata.lake import read_arrow
from tests.servers import fresh_database

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
           "airflow-worker", "airflow-init"]
ONE_SHOT = {"airflow-init", "govdata-init"}
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)


def test_services_follow_the_official_airflow3_celery_layout_plus_govdata():
    assert sorted(SERVICES) == sorted(["postgres", "redis", *AIRFLOW, "warehouse", "dept-mariadb",
                                       "dept-postgres", "govdata-init", "reports"])
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"
    assert SERVICES["airflow-scheduler"]["command"] == "scheduler"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    assert SERVICES["airflow-triggerer"]["command"] == "triggerer"
    assert SERVICES["airflow-worker"]["command"] == "celery worker"
    env = SERVICES["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert SERVICES["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"


def test_images():
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["warehouse"]["image"] == "postgres:16"
    assert SERVICES["dept-postgres"]["image"] == "postgres:16"
    assert SERVICES["dept-mariadb"]["image"] == "mariadb:11.4"
    assert SERVICES["redis"]["image"] == "redis:7.2-bookworm"
    assert SERVICES["reports"]["image"] == "nginxinc/nginx-unprivileged:1.27-alpine"
    for name in [*AIRFLOW, "govdata-init"]:  # all built from this project's Dockerfile
        assert SERVICES[name]["build"] == "."
        assert SERVICES[name]["image"] == "${GOVDATA_IMAGE_NAME:-govdata-airflow:latest}"


def test_dockerfile_extends_airflow_and_installs_every_project_package():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^FROM (\S+)", dockerfile, flags=re.M) == ["apache/airflow:3.3.2-python3.11"]
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    copied = set(re.findall(r"^COPY \S+ (\w+) \./\1$", dockerfile, flags=re.M))
    assert copied == {"govdata", *folders}   # every folder the one package is built from
    assert 'pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" .' in dockerfile
    assert "COPY --chown=airflow:0 docker /opt/govdata/docker" in dockerfile


def test_every_long_running_service_has_a_healthcheck():
    for name in LONG_RUNNING:
        test = SERVICES[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    assert SERVICES["dept-mariadb"]["healthcheck"]["test"] == ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
    assert SERVICES["warehouse"]["healthcheck"]["test"] == ["CMD", "pg_isready", "-U", "govdata", "-d", "govdata"]
    for name in ONE_SHOT:
        assert "healthcheck" not in SERVICES[name]


def test_dependencies_use_conditions_that_can_be_met():
    for name, service in SERVICES.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec == {"condition": expected}, f"{name} -> {dep}"


def test_dependency_graph_is_acyclic_and_orders_the_start():
    deps = {n: set(s.get("depends_on") or {}) for n, s in SERVICES.items()}
    order: list[str] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if d <= set(order))
        assert ready, f"dependency cycle among {sorted(deps)}"
        order += ready
        for n in ready:
            del deps[n]
    assert set(SERVICES["airflow-worker"]["depends_on"]) == {
        "redis", "postgres", "warehouse", "airflow-apiserver", "airflow-init", "govdata-init",
        "dept-mariadb", "dept-postgres"}
    assert set(SERVICES["govdata-init"]["depends_on"]) == {"warehouse", "dept-mariadb", "dept-postgres", "airflow-init"}
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert set(SERVICES[name]["depends_on"]) == {"redis", "postgres", "warehouse", "airflow-init"}


def test_volumes_are_declared_and_the_lake_is_shared():
    declared = set(COMPOSE["volumes"])
    assert declared == {"postgres-db-volume", "warehouse-db-volume", "dept-mariadb-volume",
                        "dept-postgres-volume", "govdata-data"}
    used = set()
    for service in SERVICES.values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "$", "/")):
                used.add(source)
    assert used == declared
    for name in [*AIRFLOW, "govdata-init"]:
        assert "govdata-data:/opt/govdata" in SERVICES[name]["volumes"]
        assert SERVICES[name]["environment"]["GOVDATA_LAKE"] == "/opt/govdata/lake"
    assert SERVICES["warehouse"]["volumes"][1] == "./docker/warehouse:/docker-entrypoint-initdb.d:ro"
    assert (ROOT / "docker/warehouse/10-roles.sh").stat().st_mode & 0o111


def test_source_connections_point_at_compose_services():
    env = SERVICES["airflow-worker"]["environment"]
    init = (ROOT / "docker/govdata-init.sh").read_text(encoding="utf-8")
    assert SERVICES["govdata-init"]["command"] == ["/opt/govdata/docker/govdata-init.sh"]
    assert (ROOT / "docker/govdata-init.sh").stat().st_mode & 0o111
    for source, var, host in (("shebao", "DEPT_MARIADB_URL", "dept-mariadb"),
                              ("shichang", "DEPT_POSTGRES_URL", "dept-postgres")):
        assert f"--target {source}={var}" in init
        url = sa.engine.make_url(re.sub(r"\$\{[^}]+\}", "pw", env[var]))
        assert url.host == host
        assert url.database == source
    assert sa.engine.make_url(re.sub(r"\$\{[^}]+\}", "pw", env["GOVDATA_WAREHOUSE_URL"])).host == "warehouse"


# --- docker/load_departments.py against real servers -------------------------------------------
def load_departments_module():
    spec = importlib.util.spec_from_file_location("load_departments", ROOT / "docker/load_departments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.postgres
@pytest.mark.mariadb
def test_seeding_moves_two_departments_onto_servers_with_identical_extracts(
        tmp_path, postgres_url, mariadb_url, monkeypatch):
    from govdata.demo_data import generate
    from govdata.extract import extract_source
    from govdata.standards.sources import load_source

    world = tmp_path / "world"
    generate(world, persons=30, seed=7)
    original = tmp_path / "original"
    shutil.copytree(world, original)
    monkeypatch.setenv("DEPT_MARIADB_URL", fresh_database(mariadb_url, "dept_shebao"))
    monkeypatch.setenv("DEPT_POSTGRES_URL", fresh_database(postgres_url, "dept_shichang"))

    module = load_departments_module()
    assert module.main([str(world), "--target", "shebao=DEPT_MARIADB_URL",
                        "--target", "shichang=DEPT_POSTGRES_URL"]) == 0
    assert module.main([str(world), "--target", "shebao=DEPT_MARIADB_URL"]) == 0  # a rerun replaces

    for name, var in (("shebao", "DEPT_MARIADB_URL"), ("shichang", "DEPT_POSTGRES_URL")):
        raw = yaml.safe_load((world / "sources" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert raw["connection"] == "${" + var + "}"  # no password in the YAML
        moved = load_source(world / "sources" / f"{name}.yaml")
        assert moved.connection == os.environ[var]
        before = load_source(original / "sources" / f"{name}.yaml")
        assert before.connection.startswith("sqlite:///")
        from_sqlite = extract_source(before, str(tmp_path / f"{name}-sqlite.parquet"))
        from_server = extract_source(moved, str(tmp_path / f"{name}-server.parquet"))
        assert from_server.rows == from_sqlite.rows > 0
        assert from_server.watermark == from_sqlite.watermark
        assert read_arrow(from_server.path).equals(read_arrow(from_sqlite.path))   # lake files are encrypted
    untouched = yaml.safe_load((world / "sources" / "gongan.yaml").read_text(encoding="utf-8"))
    assert untouched["connection"] == "sqlite:///../departments/gongan.sqlite"


def test_seeding_names_an_unset_target_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("DEPT_NOWHERE_URL", raising=False)
    module = load_departments_module()
    with pytest.raises(ValueError, match="DEPT_NOWHERE_URL .*department shebao.* is not set"):
        module.move_department(tmp_path, "shebao", "DEPT_NOWHERE_URL")


def test_build_context_leaves_out_local_state_and_secrets():
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".git", ".env", "demo", "lake", "*.key", "*.duckdb", "*.sqlite"} <= ignored
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for copied in re.findall(r"^COPY \S+ (\S+)", dockerfile, flags=re.M):
        for name in copied.split():
            assert name not in ignored, f"Dockerfile copies {name}, which .dockerignore drops"


# --- deployment that starts: secrets, start order, the reports server ---------------------------
def _interpolated(text: str) -> dict[str, str]:
    """${VAR}, ${VAR:-default}, ${VAR:?message} in the compose file -> VAR: kind (plain|default|required)."""
    found = {}
    for name, op in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:[-?])?", text):
        found[name] = {":-": "default", ":?": "required"}.get(op, "plain")
    return found


def _env_file(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


SECRETS = ["GOVDATA_TOKEN_KEY", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_JWT_SECRET", "_AIRFLOW_WWW_USER_PASSWORD",
           "WAREHOUSE_PASSWORD", "WAREHOUSE_ANALYST_PASSWORD", "WAREHOUSE_STEWARD_PASSWORD",
           "DEPT_MARIADB_PASSWORD", "DEPT_MARIADB_ROOT_PASSWORD", "DEPT_POSTGRES_PASSWORD"]


def test_make_env_generates_every_secret_the_compose_file_reads(tmp_path):
    import base64
    import subprocess

    out = tmp_path / ".env"
    done = subprocess.run(["bash", str(ROOT / "docker/make-env.sh"), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    env = _env_file(out)
    compose_vars = _interpolated("\n".join(line.split(" #")[0] for line in (ROOT / "docker-compose.yml").read_text(
        encoding="utf-8").splitlines() if not line.lstrip().startswith("#")))
    project_vars = set(compose_vars) - {"AIRFLOW_PROJ_DIR", "GOVDATA_IMAGE_NAME", "HOSTNAME"}
    assert project_vars <= set(env), sorted(project_vars - set(env))
    assert compose_vars["GOVDATA_TOKEN_KEY"] == "required"   # compose stops without it ...
    assert re.fullmatch(r"[0-9a-f]{64}", env["GOVDATA_TOKEN_KEY"])   # ... and make-env.sh sets it
    assert len(base64.urlsafe_b64decode(env["AIRFLOW__CORE__FERNET_KEY"])) == 32
    for name in SECRETS:
        assert len(env[name]) >= 32 and re.fullmatch(r"[A-Za-z0-9_=-]+", env[name]), name
    assert len({env[n] for n in SECRETS}) == len(SECRETS)   # no secret reused
    # a second call keeps the existing .env (the token key encrypts the vault)
    again = subprocess.run(["bash", str(ROOT / "docker/make-env.sh"), str(out)], capture_output=True, text=True)
    assert again.returncode == 1 and "keeping it" in again.stderr
    assert _env_file(out) == env


def test_env_example_lists_the_same_settings_as_make_env(tmp_path):
    import subprocess

    subprocess.run(["bash", str(ROOT / "docker/make-env.sh"), str(tmp_path / ".env")], check=True,
                   capture_output=True)
    example = _env_file(ROOT / "docker/env.example")
    assert list(example) == list(_env_file(tmp_path / ".env"))
    assert all(example[name] == "" for name in SECRETS)   # no secret shipped in the template
    assert "docker/make-env.sh" in (ROOT / "docker/env.example").read_text(encoding="utf-8")


def test_readme_and_compose_header_give_the_same_start_commands():
    header = [line for line in (ROOT / "docker-compose.yml").read_text(encoding="utf-8").splitlines()
              if line.startswith("#")]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    deployment = readme.split("## Deployment", 1)[1].split("\n## ", 1)[0]
    block = deployment.split("```sh", 1)[1].split("```", 1)[0]
    readme_cmds = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    header_cmds = [line.lstrip("# ").split("#")[0].strip() for line in header
                   if line.lstrip("# ").startswith(("docker/make-env.sh", "docker compose"))]
    assert readme_cmds == header_cmds == ["docker/make-env.sh", "docker compose up -d"]
    # no separate airflow-init step in either: every service waits for it to complete
    assert "up airflow-init" not in readme and "up airflow-init" not in "\n".join(header)
    for name in [*AIRFLOW, "govdata-init", "reports"]:
        if name != "airflow-init":
            assert SERVICES[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}


def test_reports_service_serves_the_lake_read_only():
    reports = SERVICES["reports"]
    assert "govdata-data:/opt/govdata:ro" in reports["volumes"]
    assert "./docker/nginx/reports.conf:/etc/nginx/conf.d/default.conf:ro" in reports["volumes"]
    assert all(m.endswith(":ro") for m in reports["volumes"])
    assert reports["user"] == SERVICES["airflow-worker"]["user"]   # the lake is the Airflow user's, 0600/0700
    assert reports["ports"] == ["${GOVDATA_REPORTS_PORT:-8081}:8080"]
    assert reports["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/healthz"
    conf = (ROOT / "docker/nginx/reports.conf").read_text(encoding="utf-8")
    assert "listen 8080;" in conf and "root /opt/govdata/lake;" in conf
    locations = re.findall(r"location\s+([^{]+?)\s*\{", conf)
    assert locations == ["= /healthz", "= /", "~ ^/[^/]+/report/", "/"]
    assert re.search(r"location / \{ return 404; \}", conf)   # raw/, std/, link/, manifest.json: never served
    assert conf.count("limit_except GET HEAD { deny all; }") == 2   # read-only
    report_path = "/run-1/report/findings.html"
    assert re.match(r"^/[^/]+/report/", report_path) and not re.match(r"^/[^/]+/report/", "/run-1/std/gongan.parquet")
