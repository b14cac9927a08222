"""Tokens and vault ciphertexts computed on the build's forked workers (warehouse/rows.py
crypto_workers) are the ones computed in the process: same HMAC tokens, same deterministic
AES-GCM ciphertexts, byte for byte."""
from __future__ import annotations

import hashlib
import hmac
import multiprocessing

import pandas as pd
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from govdata.warehouse.build import person_rows
from govdata.warehouse.rows import crypto_workers, identifier_token, secrets_of
from govdata.warehouse.vault import decrypt_value, vault_keys

KEY = bytes.fromhex("5a" * 32)
IDS = ["110105199001010011", None, "110105199101010022", "110105199001010011", "11010519920202003X"]
PHONES = ["13800000001", "13800000002", None, "13800000001", None]


def golden() -> pd.DataFrame:
    return pd.DataFrame({"person_id": [f"P{i}" for i in range(5)], "id_number": IDS, "phone": PHONES,
                         "name": ["张三", "李四", "王五", "张三", None]})


def sealed(value: str, field: str) -> bytes:
    """nonce (HMAC of field, 0, value under the nonce key) || AES-GCM, from the primitives."""
    aes_key, nonce_key = vault_keys(KEY)
    nonce = hmac.new(nonce_key, field.encode() + b"\x00" + value.encode(), hashlib.sha256).digest()[:12]
    return nonce + AESGCM(aes_key).encrypt(nonce, value.encode(), field.encode())


def hex_token(value: str) -> str:
    return hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()


def test_workers_give_the_tokens_and_ciphertexts_of_the_process():
    dim, vault = person_rows(golden(), KEY, "r1")
    with crypto_workers(2) as report:
        dim_w, vault_w = person_rows(golden(), KEY, "r1")
        again = identifier_token(pd.Series([IDS[4], "110105199303030044", None], dtype="string"), KEY)
    pd.testing.assert_frame_equal(dim_w, dim)
    pd.testing.assert_frame_equal(vault_w, vault)
    assert report["workers_peak_rss_mb"] > 0 and multiprocessing.active_children() == []

    assert vault["person_token"].tolist() == [pd.NA if v is None else hex_token(v) for v in IDS]
    assert vault["id_number_enc"].tolist() == [pd.NA if v is None else sealed(v, "id_number") for v in IDS]
    assert vault["phone_enc"].tolist() == [pd.NA if v is None else sealed(v, "phone") for v in PHONES]
    assert vault["phone_token"].tolist() == [pd.NA if v is None else hex_token(v) for v in PHONES]
    assert decrypt_value(vault["id_number_enc"][4], KEY, "id_number") == "11010519920202003X"
    assert dim["id_number_masked"].tolist() == ["110105********0011", pd.NA, "110105********0022",
                                                "110105********0011", "110105********003X"]
    assert again.tolist() == [hex_token(IDS[4]), hex_token("110105199303030044"), pd.NA]


def test_work_is_split_across_the_workers_in_the_values_order():
    values = [f"1101051990{i:08d}" for i in range(1001)]   # an odd count: unequal pieces
    with crypto_workers(2):
        ((tokens, ciphertexts),) = secrets_of([(values, "phone")], KEY)()
    assert tokens.to_pylist() == [hex_token(v) for v in values]
    assert ciphertexts.to_pylist() == [sealed(v, "phone") for v in values]
    ((tokens, none),) = secrets_of([([], None)], KEY)()   # no pool open: in this process
    assert len(tokens) == 0 and none is None


def test_a_failing_worker_fails_the_build_and_its_pool_is_ended():
    with pytest.raises(AttributeError), crypto_workers(2):
        secrets_of([(["110105199001010011", 7], "id_number")], KEY)()   # 7 has no .encode()
    assert multiprocessing.active_children() == []
