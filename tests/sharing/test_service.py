"""The verification and prefill service as the service hall meets it: `govdata serve` (uvicorn)
in a subprocess on a free port, called over HTTP, its request log in a real PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from govdata.sharing.store import add_client, approve, request_access
from govdata.transforms.privacy import token_one
from govdata.warehouse.load import connect, refresh_marts

try:
    from tests.servers import free_port
    from tests.sharing import world
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]
    from servers import free_port  # type: ignore[no-redef]

pytestmark = pytest.mark.postgres
GOVDATA = str(Path(sys.executable).with_name("govdata"))


def start_server(url: str, home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GOVDATA_TOKEN_KEY": world.KEY_HEX, "GOVDATA_HOME": str(home),
           "GOVDATA_SHARE_REFRESH_SECONDS": "0.2"}
    proc = subprocess.Popen([GOVDATA, "serve", "--port", str(port), "--warehouse", url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"govdata serve exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("govdata serve did not answer within 60 s")


@pytest.fixture(scope="module")
def service(pg_world_module, tmp_path_factory):
    url = pg_world_module
    hall_id, hall_key = add_client(url, "zhengwu", 500.0, who="admin")
    mz_id, mz_key = add_client(url, "minzheng", 500.0, who="admin")
    slow_id, slow_key = add_client(url, "shebao", 2.0, who="admin")
    for resource in ("person_contact", "certificate_library"):
        req = request_access(url, resource, "zhengwu", "窗口核验与免填报", date.today() + timedelta(days=365), who="hall")
        approve(url, req.request_id, "符合共享条件", who="steward")
    proc, base = start_server(url, tmp_path_factory.mktemp("serve_home"))
    client = httpx.Client(base_url=base, timeout=10)
    yield {"url": url, "base": base, "http": client, "hall": (hall_id, hall_key), "mz": (mz_id, mz_key),
           "slow": (slow_id, slow_key)}
    client.close()
    proc.terminate()
    proc.wait(timeout=30)


def call(s, who: str, path: str, body: dict, key: str | None = None) -> httpx.Response:
    return s["http"].post(path, json=body, headers={"X-Api-Key": key if key is not None else s[who][1]})


def logged(s, seq: int) -> tuple:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connect(s["url"]) as db:
            rows = db.fetchall("SELECT client_id, endpoint, purpose, application_no, subject_token, resources, "
                               "elements, outcome, status_code, reason FROM share_log WHERE seq = ?", (seq,))
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"log row {seq} not written")


def test_verify_answers_per_element_without_stored_values(service):
    r = call(service, "hall", "/verify", {
        "id_number": world.ID_ZHANG, "service_item": "S0002", "application_no": "N1",
        "claims": {"name": "張三", "sex": "男", "birth_date": "1966年12月15日", "address": "北京市朝阳区建国路2号",
                   "resident_id_no": world.RID_ZHANG, "marriage_certificate_no": world.MAR_ZHANG}})
    assert r.status_code == 200
    body = r.json()
    assert body == {"request": body["request"], "subject": "found", "results": {
        "name": "agrees", "sex": "agrees", "birth_date": "agrees", "address": "disagrees",
        "resident_id_no": "agrees", "marriage_certificate_no": "disagrees"}}
    assert "北京市朝阳区建国路1号" not in r.text and world.ID_ZHANG not in r.text
    assert logged(service, body["request"]) == (
        service["hall"][0], "verify", "S0002", "N1", token_one(world.ID_ZHANG, world.KEY),
        "certificate_library,person_basic,person_contact",
        "name,sex,birth_date,address,resident_id_no,marriage_certificate_no", "ok", 200, None)

    # By token; 李四 has no address and no resident ID card: unknown, not disagrees.
    r = call(service, "hall", "/verify", {"token": token_one(world.ID_LI, world.KEY), "claims": {
        "name": "李四", "birth_date": "1971-12-02", "address": "任意地址", "resident_id_no": "RID-9999",
        "social_security_card_no": world.SSC_LI}})
    assert r.json()["results"] == {"name": "agrees", "birth_date": "disagrees", "address": "unknown",
                                   "resident_id_no": "unknown", "social_security_card_no": "agrees"}
    # Expired certificate: disagrees. A person in no department: unknown throughout.
    r = call(service, "hall", "/verify", {"id_number": world.ID_ZHANG, "claims": {"resident_id_no": world.RID_ZHANG_OLD}})
    assert r.json()["results"] == {"resident_id_no": "disagrees"}
    r = call(service, "hall", "/verify", {"id_number": world.ID_NOBODY, "claims": {"name": "张三"}})
    assert (r.status_code, r.json()["subject"], r.json()["results"]) == (200, "unknown", {"name": "unknown"})


def test_prefill_returns_what_the_item_needs_with_source_departments(service):
    r = call(service, "hall", "/prefill", {"id_number": world.ID_ZHANG, "service_item": "S0005",
                                           "application_no": "N3"})
    body = r.json()
    assert (r.status_code, body["subject"], body["missing"]) == (200, "found", [])
    assert body["elements"] == {
        "name": {"value": "张三", "source_department": "公安局人口户籍", "source_system": "gongan"},
        "sex": {"value": "1", "source_department": "公安局人口户籍", "source_system": "gongan"},
        "birth_date": {"value": "1966-12-15", "source_department": "公安局人口户籍", "source_system": "gongan"},
        "ethnicity": {"value": "01", "source_department": "公安局人口户籍", "source_system": "gongan"},
        "address": {"value": "北京市朝阳区建国路1号", "source_department": "民政局", "source_system": "minzheng"},
        "resident_id_no": {"value": world.RID_ZHANG, "source_department": "电子证照库", "source_system": "zhengzhao",
                           "issuer": "北京市公安局朝阳分局",
                           "valid_until": (world.TODAY + timedelta(days=1000)).isoformat()}}
    r = call(service, "hall", "/prefill", {"id_number": world.ID_LI, "service_item": "S0006"})
    assert r.json()["elements"] == {
        "name": {"value": "李四", "source_department": "人社局社会保险", "source_system": "shebao"},
        "sex": {"value": "2", "source_department": "人社局社会保险", "source_system": "shebao"},
        "birth_date": {"value": "1971-12-01", "source_department": "人社局社会保险", "source_system": "shebao"},
        "social_security_card_no": {"value": world.SSC_LI, "source_department": "电子证照库",
                                    "source_system": "zhengzhao", "issuer": "北京市人力资源和社会保障局",
                                    "valid_until": (world.TODAY + timedelta(days=500)).isoformat()}}
    r = call(service, "hall", "/prefill", {"id_number": world.ID_LI, "service_item": "S0007"})
    assert r.json()["missing"] == ["address"]


def test_unauthorised_out_of_scope_invalid_and_rate_limited_calls_are_refused_and_logged(service):
    r = call(service, "hall", "/verify", {"id_number": world.ID_ZHANG, "claims": {"name": "张三"}}, key="not-a-key")
    assert (r.status_code, r.json()["error"]) == (401, "unknown or missing API key (header X-Api-Key)")
    assert logged(service, r.json()["request"]) == (
        None, "verify", None, None, None, None, None, "unauthorised", 401, "unknown or missing API key (header X-Api-Key)")

    # 民政局 holds no approved request for the conditional resources S0005 needs.
    r = call(service, "mz", "/prefill", {"id_number": world.ID_ZHANG, "service_item": "S0005"})
    reason = ("out of scope: certificate_library (有条件: no approved request of minzheng), "
              "person_contact (有条件: no approved request of minzheng)")
    assert (r.status_code, r.json()["error"]) == (403, reason)
    assert logged(service, r.json()["request"]) == (
        service["mz"][0], "prefill", "S0005", None, token_one(world.ID_ZHANG, world.KEY),
        "certificate_library,person_basic,person_contact",
        "name,sex,birth_date,ethnicity,address,resident_id_no", "refused", 403, reason)
    # …while the unconditional elements are open to it.
    r = call(service, "mz", "/verify", {"id_number": world.ID_ZHANG, "claims": {"name": "张三"}})
    assert r.json()["results"] == {"name": "agrees"}

    bad = world.ID_ZHANG[:-1] + "0"
    r = call(service, "hall", "/verify", {"id_number": bad[:17], "claims": {"name": "张三"}})
    assert (r.status_code, r.json()["error"]) == (422, "id_number: expected 18 characters, 17 digits and a digit or X")
    r = call(service, "hall", "/verify", {"id_number": world.ID_ZHANG, "claims": {"salary": "1"}})
    assert r.status_code == 422 and r.json()["error"].startswith("claims: unknown element(s) salary;")

    answers = [call(service, "slow", "/verify", {"id_number": world.ID_LI, "claims": {"name": "李四"}})
               for _ in range(4)]
    assert [a.status_code for a in answers[:2]] == [200, 200] and answers[-1].status_code == 429
    assert logged(service, answers[-1].json()["request"]) == (
        service["slow"][0], "verify", None, None, None, None, None, "rate_limited", 429, "more than 2 requests/s")


def test_log_holds_no_raw_identifier_and_use_is_counted(service):
    call(service, "hall", "/verify", {"id_number": world.ID_WANG, "service_item": "S0002",
                                      "claims": {"name": "王芳"}})
    seq = call(service, "hall", "/verify", {"id_number": world.ID_ZHANG, "claims": {"name": "张三"}}).json()["request"]
    logged(service, seq)
    with connect(service["url"]) as db:
        text = repr(db.fetchall("SELECT * FROM share_log"))
        for secret in world.RAW_SECRETS:
            assert secret not in text
        refresh_marts(service["url"])
        rows = db.fetchall("SELECT resource, purpose, calls, answered, refused, applications, applications_served, "
                           "served_share FROM mart_sharing_use WHERE client_id = ? OR client_id IS NULL "
                           "ORDER BY purpose, resource", (service["hall"][0],))
    # S0002: N1 verified (by application_no), N4 (王芳, S0002) by token + service item: 2 of 2.
    # S0005: N3 prefilled. S0006: N2 (李四) prefilled without naming it: token + item. S0007: no
    # application. Calls without a service item count under purpose 'verify'.
    assert rows == [
        ("certificate_library", "S0002", 1, 1, 0, 2, 2, 1.0),
        ("person_basic", "S0002", 2, 2, 0, 2, 2, 1.0),
        ("person_contact", "S0002", 1, 1, 0, 2, 2, 1.0),
        ("certificate_library", "S0005", 1, 1, 0, 1, 1, 1.0),
        ("person_basic", "S0005", 1, 1, 0, 1, 1, 1.0),
        ("person_contact", "S0005", 1, 1, 0, 1, 1, 1.0),
        ("certificate_library", "S0006", 1, 1, 0, 1, 1, 1.0),
        ("person_basic", "S0006", 1, 1, 0, 1, 1, 1.0),
        ("certificate_library", "S0007", 1, 1, 0, None, None, None),
        ("person_basic", "S0007", 1, 1, 0, None, None, None),
        ("person_contact", "S0007", 1, 1, 0, None, None, None),
        ("(none)", "verify", 2, 0, 2, None, None, None),              # two invalid calls (422)
        ("certificate_library", "verify", 2, 2, 0, None, None, None),
        ("person_basic", "verify", 3, 3, 0, None, None, None),
        ("person_contact", "verify", 1, 1, 0, None, None, None),
        ("(none)", None, 1, 0, 1, None, None, None),                  # the unknown key (no client)
    ]


def test_tampering_with_a_log_row_is_detected_by_share_audit(service):
    seq = call(service, "mz", "/prefill", {"id_number": world.ID_ZHANG, "service_item": "S0005"}).json()["request"]
    logged(service, seq)
    audit = [GOVDATA, "share", "audit", "--warehouse", service["url"]]
    env = {**os.environ, "GOVDATA_TOKEN_KEY": world.KEY_HEX, "COLUMNS": "200"}
    ok = subprocess.run(audit, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0 and "request log intact" in ok.stderr
    with connect(service["url"]) as db:   # someone turns a refused call into an answered one
        db.execute("UPDATE share_log SET outcome = 'ok', status_code = 200, reason = NULL WHERE seq = ?", (seq,))
    broken = subprocess.run(audit, capture_output=True, text=True, env=env, timeout=60)
    assert broken.returncode == 1
    assert f"request log broken at row {seq}: its fields do not match its row_hash" in broken.stderr
