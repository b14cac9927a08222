"""Key rotation: the vault re-encrypted under a new key, warehouse tokens re-mapped, resolution
still works, and a rerun after a crash continues."""
from __future__ import annotations

import hmac

import pytest

from tests.warehouse import world
from govdata.warehouse.load import load_tables, read_table
from govdata.warehouse.vault import identify, rotate_key, rotate_settings_key

NEW = bytes.fromhex("22" * 32)


def _hmac(key: bytes, value: str) -> str:
    return hmac.digest(key, value.encode(), "sha256").hex()


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_rotation_reencrypts_the_vault_and_retokenises_the_warehouse(backend, tmp_path, request):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}" if backend == "duckdb" else request.getfixturevalue("pg_database")
    load_tables(url, world.build_world(), world.RUN)
    before = read_table(url, "dim_person").set_index("person_id")["person_token"]
    assert before["P000000000001"] == _hmac(world.KEY, world.ID_P1)
    result = rotate_key(url, [world.KEY], NEW)
    assert (result["vault_person"], result["vault_enterprise"]) == (3, 1)
    after = read_table(url, "dim_person").set_index("person_id")["person_token"]
    assert after["P000000000001"] == _hmac(NEW, world.ID_P1)
    assert identify(url, after["P000000000001"], "after rotation", key=NEW) == world.ID_P1
    with pytest.raises(LookupError):
        identify(url, before["P000000000001"], "old token", key=NEW)
    rep = read_table(url, "dim_enterprise").loc[0, "legal_rep_token"]
    assert rep == _hmac(NEW, world.REP_ID_E1)
    # a rerun (e.g. after a crash between vault and warehouse) changes nothing
    assert rotate_key(url, [world.KEY], NEW)["tokens_unmapped"] == result["tokens_unmapped"]
    assert read_table(url, "dim_person").set_index("person_id")["person_token"].equals(after)


def test_rotate_settings_key_moves_the_old_key_aside(tmp_path, monkeypatch):
    monkeypatch.delenv("GOVDATA_TOKEN_KEY", raising=False)
    monkeypatch.delenv("GOVDATA_TOKEN_KEY_PREVIOUS", raising=False)
    monkeypatch.setenv("GOVDATA_HOME", str(tmp_path))
    (tmp_path / "govdata.key").write_text(world.KEY.hex())
    (tmp_path / "govdata.key").chmod(0o600)
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    load_tables(url, world.build_world(), world.RUN)
    rotate_settings_key(url)
    new = bytes.fromhex((tmp_path / "govdata.key").read_text().strip())
    assert new != world.KEY and not (tmp_path / "govdata.key.next").exists()
    assert (tmp_path / "govdata.key.previous").read_text() == world.KEY.hex() + "\n"
    assert oct((tmp_path / "govdata.key.previous").stat().st_mode & 0o777) == "0o600"
    token = read_table(url, "dim_person").set_index("person_id").loc["P000000000002", "person_token"]
    assert identify(url, token, "after rotation") == world.ID_P2
