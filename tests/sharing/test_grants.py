"""Sharing classes enforced by a real PostgreSQL: consumer roles read unconditional resources,
conditional ones only between approval and expiry, not-shareable ones never. The same
bookkeeping on DuckDB."""
from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from govdata.sharing.store import (ShareError, approve, consumer_role, expire_grants, refuse, request_access)
from govdata.warehouse.load import connect, pg_conninfo, refresh_marts

try:
    from tests.sharing import world
except ImportError:  # tests/ not a package
    import world  # type: ignore[no-redef]

pytestmark = pytest.mark.postgres
TODAY = date.today()
MINZHENG = consumer_role("minzheng")


def read_as(url: str, role: str, sql: str) -> list[tuple]:
    with psycopg.connect(**pg_conninfo(url), autocommit=True) as con:
        con.execute(f"SET ROLE {role}")
        return con.execute(sql).fetchall()


def denied(url: str, role: str, sql: str) -> bool:
    try:
        read_as(url, role, sql)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def audit(url: str, request_id: str) -> list[tuple]:
    with connect(url) as db:
        return db.fetchall("SELECT action, actor, resource, department FROM share_audit WHERE request_id = ? "
                           "ORDER BY audited_at, action", (request_id,))


def test_conditional_resource_denied_granted_on_approval_revoked_on_expiry(pg_world):
    url = pg_world
    assert expire_grants(url) == []          # what the marts DAG runs: creates the roles, applies the classes
    # Unconditional element group: the role reads its columns, not the conditional ones.
    assert read_as(url, MINZHENG, "SELECT name, sex FROM dim_person ORDER BY name") == [
        ("张三", "1"), ("李四", "2"), ("王芳", "2")]
    assert denied(url, MINZHENG, "SELECT address FROM dim_person")
    assert denied(url, MINZHENG, "SELECT certificate_no FROM share.certificate_library")
    assert denied(url, MINZHENG, "SELECT certificate_no FROM fact_certificate")

    until = TODAY + timedelta(days=5)
    req = request_access(url, "certificate_library", "minzheng", "婚姻登记核验证照", until, who="clerk")
    assert req.status == "pending"
    assert denied(url, MINZHENG, "SELECT certificate_no FROM share.certificate_library")   # pending: nothing yet
    grant_id = approve(url, req.request_id, "符合共享条件", who="steward")
    # The row limit (status = 'valid') and the column limit hold: the view, never the table.
    assert read_as(url, MINZHENG, "SELECT certificate_no, status FROM share.certificate_library "
                                  "ORDER BY certificate_no") == [("RID-0001", "valid"), ("SSC-0002", "valid")]
    assert denied(url, MINZHENG, "SELECT certificate_no FROM fact_certificate")
    assert denied(url, consumer_role("shebao"), "SELECT certificate_no FROM share.certificate_library")

    assert expire_grants(url, today=until) == []              # valid through its last day
    assert read_as(url, MINZHENG, "SELECT count(*) FROM share.certificate_library") == [(2,)]
    assert expire_grants(url, today=until + timedelta(days=1)) == [grant_id]
    assert denied(url, MINZHENG, "SELECT certificate_no FROM share.certificate_library")
    assert read_as(url, MINZHENG, "SELECT count(*) FROM dim_person") == [(3,)]    # unconditional stays

    with connect(url) as db:
        assert db.fetchall("SELECT status, decided_by, decision_reason FROM share_request WHERE request_id = ?",
                           (req.request_id,)) == [("expired", "steward", "符合共享条件")]
        assert db.fetchall("SELECT request_id, resource, department, role_name, privilege, valid_until, revoke_reason "
                           "FROM share_grant") == [
            (req.request_id, "certificate_library", "minzheng", MINZHENG,
             f"GRANT SELECT ON share.certificate_library TO {MINZHENG}", until, "expired")]
    assert audit(url, req.request_id) == [
        ("requested", "clerk", "certificate_library", "minzheng"),
        ("approved", "steward", "certificate_library", "minzheng"),
        ("granted", "steward", "certificate_library", "minzheng"),
        ("revoked", "expire_grants", "certificate_library", "minzheng")]


def test_column_limited_resource_and_refusal(pg_world):
    url = pg_world
    expire_grants(url)
    refused = request_access(url, "person_contact", "shebao", "批量导出", TODAY + timedelta(days=30), who="clerk")
    refuse(url, refused.request_id, "用途超出共享条件", who="steward")
    assert denied(url, consumer_role("shebao"), "SELECT address FROM dim_person")
    with pytest.raises(ShareError, match="refused, not pending"):
        approve(url, refused.request_id, "改变主意", who="steward")

    ok = request_access(url, "person_contact", "minzheng", "低保申请核验住址", TODAY + timedelta(days=30), who="clerk")
    approve(url, ok.request_id, "符合共享条件", who="steward")
    assert read_as(url, MINZHENG, "SELECT name, address FROM dim_person ORDER BY name") == [
        ("张三", "北京市朝阳区建国路1号"), ("李四", None), ("王芳", "上海市浦东新区世纪大道100号")]
    assert denied(url, MINZHENG, "SELECT lineage FROM dim_person")          # not in either element group
    assert denied(url, consumer_role("shebao"), "SELECT address FROM dim_person")
    assert audit(url, refused.request_id) == [("requested", "clerk", "person_contact", "shebao"),
                                              ("refused", "steward", "person_contact", "shebao")]


def test_not_shareable_resource_is_never_granted(pg_world):
    url = pg_world
    req = request_access(url, "quarantine", "minzheng", "数据整改", TODAY + timedelta(days=30), who="clerk")
    assert (req.status, req.decision_reason) == (
        "refused", "不予共享: the catalogue classes the resource as not shareable")
    with pytest.raises(ShareError, match="refused, not pending"):
        approve(url, req.request_id, "强行批准", who="steward")
    # Even a grant row forged into the bookkeeping gives no privilege: the catalogue decides.
    with connect(url) as db:
        db.execute("UPDATE share_request SET status = 'approved' WHERE request_id = ?", (req.request_id,))
        db.execute("INSERT INTO share_grant (grant_id, request_id, resource, department, role_name, privilege, "
                   "granted_at, valid_until) VALUES ('forged', ?, 'quarantine', 'minzheng', ?, '', now(), ?)",
                   (req.request_id, MINZHENG, TODAY + timedelta(days=30)))
    expire_grants(url)
    assert denied(url, MINZHENG, "SELECT count(*) FROM quarantine")
    with connect(url) as db:
        roles = [r[0] for r in db.fetchall("SELECT rolname FROM pg_roles WHERE rolname LIKE 'govdata_consumer_%' "
                                           "ORDER BY rolname")]
        assert roles == ["govdata_consumer_churujing", "govdata_consumer_gongan", "govdata_consumer_minzheng",
                         "govdata_consumer_shebao", "govdata_consumer_shichang", "govdata_consumer_shuiwu",
                         "govdata_consumer_shuju", "govdata_consumer_weijian", "govdata_consumer_zhengwu",
                         "govdata_consumer_zhengzhao"]
        for table in ("quarantine", "master_id_history", "identifier_owner", "etl_run", "dq_result"):
            assert db.fetchall("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'govdata_consumer_%' "
                               "AND has_table_privilege(rolname, ?, 'SELECT')", (table,)) == [(0,)]
    with pytest.raises(ShareError, match="shared without conditions"):
        request_access(url, "person_basic", "minzheng", "x", TODAY, today=TODAY)


def test_marts_recreated_by_a_run_get_their_grants_back(pg_world):
    url = pg_world
    expire_grants(url)
    assert read_as(url, MINZHENG, "SELECT count(*) FROM mart_once_only") == [(3,)]
    refresh_marts(url)                                   # DROP VIEW + CREATE VIEW: consumer grants gone
    assert denied(url, MINZHENG, "SELECT count(*) FROM mart_once_only")
    expire_grants(url)                                   # the marts DAG's next task restores them
    assert read_as(url, MINZHENG, "SELECT count(*) FROM mart_once_only") == [(3,)]
    assert denied(url, MINZHENG, "SELECT count(*) FROM mart_proactive_service")   # 有条件 mart


def test_duckdb_keeps_the_same_bookkeeping(tmp_path, monkeypatch):
    monkeypatch.setenv("GOVDATA_TOKEN_KEY", world.KEY_HEX)
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    until = TODAY + timedelta(days=1)
    req = request_access(url, "certificate_library", "minzheng", "证照核验", until, who="clerk")
    grant_id = approve(url, req.request_id, "同意", who="steward")
    assert expire_grants(url, today=until + timedelta(days=1)) == [grant_id]
    assert audit(url, req.request_id) == [
        ("requested", "clerk", "certificate_library", "minzheng"),
        ("approved", "steward", "certificate_library", "minzheng"),
        ("granted", "steward", "certificate_library", "minzheng"),
        ("revoked", "expire_grants", "certificate_library", "minzheng")]


def test_the_service_waits_its_own_time_for_a_held_warehouse(tmp_path):
    import time

    import duckdb

    from govdata.sharing.store import share_connect
    from tests.warehouse.test_warehouse import _hold_write_lock

    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = _hold_write_lock(path, 10)
    try:
        started = time.monotonic()
        with pytest.raises(duckdb.IOException, match="lock"):
            with share_connect(f"duckdb:///{path}", read_only=True, wait_seconds=0.5):
                pass
        assert time.monotonic() - started < 5   # its 0.5 s, not the warehouse's 30 s
    finally:
        holder.kill()
        holder.wait()
