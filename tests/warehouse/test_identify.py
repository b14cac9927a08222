"""Authorised resolution: stewards only, decided by the database (PostgreSQL) or by the key
file's permissions (DuckDB); every resolution audited with who, when, why and which token."""
from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa

from tests.warehouse import world
from govdata.warehouse.load import load_tables, pg_conninfo, read_table
from govdata.warehouse.vault import NotAuthorised, identify, os_user


@pytest.fixture
def duck_url(tmp_path):
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


def _tokens(url: str) -> tuple[str, str, str]:
    people = read_table(url, "dim_person").set_index("person_id")
    return (people.loc["P000000000001", "person_token"], people.loc["P000000000002", "person_token"],
            read_table(url, "dim_enterprise").loc[0, "legal_rep_token"])


def test_duckdb_resolution_is_audited_under_the_os_account(duck_url):
    load_tables(duck_url, world.build_world(), world.RUN)
    p1, _, rep = _tokens(duck_url)
    assert identify(duck_url, p1, "expiring licence follow-up", key=world.KEY) == world.ID_P1
    assert identify(duck_url, [rep], "fraud case 12", key=world.KEY) == {rep: world.REP_ID_E1}
    audit = read_table(duck_url, "identify_audit").sort_values("reason")
    assert audit[["who", "token", "reason"]].values.tolist() == [
        [os_user(), p1, "expiring licence follow-up"], [os_user(), rep, "fraud case 12"]]
    with pytest.raises(LookupError, match="is not in the vault"):
        identify(duck_url, "0" * 64, "typo", key=world.KEY)
    with pytest.raises(ValueError, match="a reason is required"):
        identify(duck_url, p1, " ", key=world.KEY)
    assert len(read_table(duck_url, "identify_audit")) == 3   # the unknown token's attempt is audited too


def test_bulk_resolution_needs_a_second_reason(duck_url, monkeypatch):
    monkeypatch.setenv("GOVDATA_IDENTIFY_BULK_LIMIT", "2")
    load_tables(duck_url, world.build_world(), world.RUN)
    p1, p2, rep = _tokens(duck_url)
    with pytest.raises(ValueError, match=r"3 tokens exceed the bulk limit of 2 \(GOVDATA_IDENTIFY_BULK_LIMIT\): "
                                         "a second reason is required"):
        identify(duck_url, [p1, p2, rep], "mailing", key=world.KEY)
    assert read_table(duck_url, "identify_audit").empty
    got = identify(duck_url, [p1, p2, rep], "mailing", "approved by head of unit, ticket 7", key=world.KEY)
    assert got == {p1: world.ID_P1, p2: world.ID_P2, rep: world.REP_ID_E1}
    assert read_table(duck_url, "identify_audit")["reason"].tolist() == [
        "mailing | second reason: approved by head of unit, ticket 7"] * 3


def _login(admin: psycopg.Connection, url: str, role: str | None) -> str:
    user = f"u_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'pw'" + (f" IN ROLE {role}" if role else ""))
    return sa.engine.make_url(url).set(username=user, password="pw").render_as_string(False)


def test_postgres_the_database_decides_who_may_resolve(pg_database, monkeypatch):
    monkeypatch.setenv("GOVDATA_IDENTIFY_BULK_LIMIT", "2")
    load_tables(pg_database, world.build_world(), world.RUN)
    p1, p2, rep = _tokens(pg_database)
    admin = psycopg.connect(**pg_conninfo(pg_database), autocommit=True)
    steward = _login(admin, pg_database, "govdata_steward")
    analyst = _login(admin, pg_database, "govdata_analyst")
    loader = _login(admin, pg_database, "govdata_loader")
    steward_role = sa.engine.make_url(steward).username

    assert identify(steward, p1, "proactive service", key=world.KEY) == world.ID_P1
    audit = read_table(pg_database, "identify_audit")
    assert audit[["who", "token", "reason"]].values.tolist() == [[steward_role, p1, "proactive service"]]

    for url, refusal in ((analyst, "permission denied for schema vault"),
                         (loader, "permission denied for function identify")):
        with pytest.raises(NotAuthorised) as err:
            identify(url, p1, "curious", key=world.KEY)
        assert str(err.value) == f"identify: not authorised (database: {refusal})"
    # even with EXECUTE granted by mistake, the function itself checks the login role
    admin.execute("GRANT EXECUTE ON FUNCTION vault.identify(text[], text, text) TO govdata_loader")
    with pytest.raises(NotAuthorised) as err:
        identify(loader, p1, "curious", key=world.KEY)
    loader_role = sa.engine.make_url(loader).username
    assert str(err.value) == (f"identify: not authorised (database: identify: role {loader_role} "
                              f"is not a member of govdata_steward)")
    with pytest.raises(ValueError, match="3 tokens exceed the bulk limit of 2"):
        identify(steward, [p1, p2, rep], "mailing", key=world.KEY)
    assert identify(steward, [p1, p2, rep], "mailing", "ticket 7", key=world.KEY) == {
        p1: world.ID_P1, p2: world.ID_P2, rep: world.REP_ID_E1}
    audit = read_table(pg_database, "identify_audit")
    assert sorted(audit["reason"].tolist()) == ["mailing | second reason: ticket 7"] * 3 + ["proactive service"]
    assert set(audit["who"]) == {steward_role}

    # the analyst reads neither the audit nor the vault; the steward cannot go around the function
    as_analyst = psycopg.connect(**pg_conninfo(analyst), autocommit=True)
    as_steward = psycopg.connect(**pg_conninfo(steward), autocommit=True)
    for forbidden in ("SELECT * FROM identify_audit", "SELECT * FROM vault.vault_person",
                      "SELECT * FROM vault.identify(ARRAY['x'], 'r')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_analyst.execute(forbidden)
    for forbidden in ("SELECT id_number_enc FROM vault.vault_person",
                      "INSERT INTO identify_audit VALUES ('forged', 'someone_else', now(), 't', 'r')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_steward.execute(forbidden)
    assert as_steward.execute("SELECT count(*) FROM identify_audit").fetchone() == (4,)
    for con in (as_analyst, as_steward, admin):
        con.close()
