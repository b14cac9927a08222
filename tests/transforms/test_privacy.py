import hashlib
import hmac

import duckdb
import pandas as pd

from govdata.transforms.privacy import (
    hmac_sha256,
    mask_document_number,
    mask_id_number,
    mask_phone,
    mask_value,
    token,
    token_parameters,
    token_sql,
)
from govdata.warehouse.vault import decrypt_value, encrypt_values

KEY = bytes(range(32))


def test_token_is_hmac_sha256_per_value_and_null_stays_null():
    values = pd.Series(["110105199001011234", None, "110105199001011234", "x"], dtype="string")
    expected = hmac.new(KEY, b"110105199001011234", hashlib.sha256).hexdigest()
    out = token(values, KEY)
    assert out.tolist()[0] == out.tolist()[2] == expected
    assert out.isna().tolist() == [False, True, False, False]
    assert str(out.dtype) == "string"


def test_hmac_sha256_equals_the_standard_library_for_short_block_and_long_keys():
    # keys shorter than, equal to and longer than SHA-256's 64-byte block (a long key is hashed first)
    for key in (b"", b"k", bytes(range(32)), bytes(range(64)), bytes(range(65)), b"x" * 200):
        mac = hmac_sha256(key)
        for msg in (b"", b"110105199001010021", "张三".encode(), b"\x00" * 129):
            assert mac(msg) == hmac.digest(key, msg, "sha256")


def test_masks_keep_head_and_tail_and_star_short_values():
    ids = pd.Series(["11010519900101002X", None, "1101051990", "123"], dtype="string")
    assert mask_id_number(ids).tolist() == ["110105********002X", pd.NA, "**********", "***"]
    phones = pd.Series(["13812341234", "1381234"], dtype=object)
    assert mask_phone(phones).tolist() == ["138****1234", "*******"]
    assert mask_value(pd.Series(["11010519900101002X", "13812341234", "张三", None])).tolist() == \
        ["110105********002X", "138****1234", "张*", pd.NA]


def test_vault_ciphertexts_round_trip_and_repeat_for_equal_values():
    values = pd.Series(["11010519900101002X", None, "11010519900101002X"], dtype="string")
    enc = encrypt_values(values, KEY, "id_number")
    assert enc[1] is None and enc[0] == enc[2]
    assert decrypt_value(enc[0], KEY, "id_number") == "11010519900101002X"


def test_document_numbers_keep_two_characters_at_each_end():
    numbers = pd.Series(["E12345678", "H1234567801", "1234", None])
    assert mask_document_number(numbers).tolist() == ["E1*****78", "H1*******01", "****", pd.NA]


def test_duckdb_tokens_equal_the_python_tokens_for_any_key_and_text():
    values = ["110105199001011234", "", "张三", "Zhāng O'Neil", "a\x00b", None]
    con = duckdb.connect()
    con.execute("CREATE TABLE v (pos INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)))
    for key in (b"k", bytes(range(32)), bytes(range(64)), b"x" * 200):
        sql = f"SELECT {token_sql('x')} FROM v ORDER BY pos"
        assert "$inner_pad" in sql and "$outer_pad" in sql and key.hex() not in sql   # the key is bound, not in the SQL
        got = [r[0] for r in con.execute(sql, token_parameters(key)).fetchall()]
        expected = [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() if v is not None else None for v in values]
        assert got == expected == token(pd.Series(values, dtype="string"), key).astype(object).where(
            pd.Series(values).notna(), None).tolist()


def test_tokens_and_masks_come_as_arrow_backed_text():
    """No Python str per value: the load's staging hands them to Arrow as they are."""
    values = pd.Series(["13812341234", None, "13812341234"], dtype="string[pyarrow]")
    tokens, masks = token(values, KEY), mask_phone(values)
    assert tokens.dtype == masks.dtype == pd.StringDtype("pyarrow")
    assert tokens.tolist() == [hmac.new(KEY, b"13812341234", hashlib.sha256).hexdigest(), pd.NA,
                               hmac.new(KEY, b"13812341234", hashlib.sha256).hexdigest()]
    assert masks.tolist() == ["138****1234", pd.NA, "138****1234"]
