"""The personal-data vault: raw ID and phone numbers encrypted with AES-GCM, and `identify`.

Keys are derived from the settings key with HKDF (separate keys for encryption and nonces).
The nonce of each value is an HMAC of the value under the nonce key: a nonce is never reused
for a different plaintext, and the same run loaded twice gives byte-identical ciphertexts
(idempotent loads). Equal plaintexts give equal ciphertexts — no more than the tokens reveal.
"""
from __future__ import annotations

import hmac
import uuid
from datetime import datetime, timezone

import pandas as pd
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"govdata-vault", info=purpose).derive(key)


def vault_keys(key: bytes) -> tuple[bytes, bytes]:
    """(AES-256 key, nonce key) derived from the settings key."""
    return _derive(key, b"aes-gcm"), _derive(key, b"nonce")


def encrypt_values(values: pd.Series, key: bytes, field: str) -> pd.Series:
    """nonce || AES-GCM ciphertext per value (bytes); NULL stays NULL. Once per unique value.
    `field` is bound as associated data, so a ciphertext cannot be moved to another column."""
    from transforms.privacy import per_unique

    aes_key, nonce_key = vault_keys(key)
    aead, aad = AESGCM(aes_key), field.encode()

    def seal(plain: bytes) -> bytes:
        nonce = hmac.digest(nonce_key, aad + b"\x00" + plain, "sha256")[:NONCE_BYTES]
        return nonce + aead.encrypt(nonce, plain, aad)

    return pd.Series(per_unique(values, lambda vs: [seal(v.encode()) for v in vs]), index=values.index,
                     dtype=object)


def decrypt_value(blob: bytes, key: bytes, field: str) -> str:
    aes_key, _ = vault_keys(key)
    blob = bytes(blob)
    return AESGCM(aes_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], field.encode()).decode()


# (vault table, token column, ciphertext column, associated-data field)
_LOOKUPS = (
    ("vault_person", "person_token", "id_number_enc", "id_number"),
    ("vault_person", "phone_token", "phone_enc", "phone"),
    ("vault_enterprise", "legal_rep_token", "legal_rep_id_number_enc", "legal_rep_id_number"),
)


def identify(url: str, token: str, reason: str, who: str, key: bytes | None = None) -> str:
    """Resolve a token to the raw identifier and record who asked, when and why (identify_audit).
    The audit row and the lookup happen in one transaction: no lookup without its audit row."""
    from warehouse.load import connect

    if not (reason or "").strip():
        raise ValueError("identify: a reason is required")
    if not (who or "").strip():
        raise ValueError("identify: who is required")
    if key is None:
        from govdata.settings import get_settings

        key = get_settings().token_key()
    with connect(url, vault=True) as db:
        with db.transaction():
            blob, field = None, None
            for table, token_col, enc_col, fld in _LOOKUPS:
                rows = db.fetchall(f"SELECT {enc_col} FROM vault.{table} WHERE {token_col} = ? "
                                   f"AND {enc_col} IS NOT NULL LIMIT 1", (token,))
                if rows:
                    blob, field = rows[0][0], fld
                    break
            if blob is None:
                raise LookupError(f"identify: token {token[:12]}… is not in the vault")
            db.execute("INSERT INTO identify_audit (audit_id, who, asked_at, token, reason) VALUES (?, ?, ?, ?, ?)",
                       (uuid.uuid4().hex, who, datetime.now(timezone.utc).replace(tzinfo=None), token, reason))
    return decrypt_value(blob, key, field)
