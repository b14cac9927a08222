"""The personal-data vault: raw ID and phone numbers encrypted with AES-GCM, and `identify`.

Keys are derived from the settings key with HKDF (separate keys for encryption and nonces).
The nonce of each value is an HMAC of the value under the nonce key: a nonce is never reused
for a different plaintext, and the same run loaded twice gives byte-identical ciphertexts
(idempotent loads). Equal plaintexts give equal ciphertexts — no more than the tokens reveal.
"""
from __future__ import annotations

import hmac
import os
import uuid
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"govdata-vault", info=purpose).derive(key)


def vault_keys(key: bytes) -> tuple[bytes, bytes]:
    """(AES-256 key, nonce key) derived from the settings key."""
    return _derive(key, b"aes-gcm"), _derive(key, b"nonce")


def sealer(key: bytes, field: str):
    """plaintext -> nonce || AES-GCM ciphertext under `field` (associated data). The nonce is the
    plaintext's HMAC under the nonce key: deterministic, so a value always seals to the same bytes."""
    from govdata.transforms.privacy import hmac_sha256

    aes_key, nonce_key = vault_keys(key)
    aead, aad, nonce_mac = AESGCM(aes_key), field.encode(), hmac_sha256(nonce_key)

    def seal(plain: bytes) -> bytes:
        nonce = nonce_mac(aad + b"\x00" + plain)[:NONCE_BYTES]
        return nonce + aead.encrypt(nonce, plain, aad)

    return seal


def ciphertext_array(values: list[str], key: bytes, field: str) -> pa.BinaryArray:
    """encrypt_values of distinct values, as Arrow binary (no NULLs in, none out)."""
    seal = sealer(key, field)
    return pa.array([seal(v.encode()) for v in values], pa.binary())


def encrypt_values(values: pd.Series, key: bytes, field: str) -> pd.Series:
    """nonce || AES-GCM ciphertext per value (bytes); NULL stays NULL. Once per unique value.
    `field` is bound as associated data, so a ciphertext cannot be moved to another column."""
    from govdata.transforms.privacy import per_unique

    seal = sealer(key, field)
    return pd.Series(per_unique(values, lambda vs: [seal(v.encode()) for v in vs]), index=values.index,
                     dtype=object)


def decrypt_value(blob: bytes, key: bytes, field: str) -> str:
    aes_key, _ = vault_keys(key)
    blob = bytes(blob)
    return AESGCM(aes_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], field.encode()).decode()


# --- authorised resolution (identify) ---------------------------------------------------------
# (vault table, token column, ciphertext column, associated-data field)
_LOOKUPS = (
    ("vault_person", "person_token", "id_number_enc", "id_number"),
    ("vault_person", "phone_token", "phone_enc", "phone"),
    ("vault_enterprise", "legal_rep_token", "legal_rep_id_number_enc", "legal_rep_id_number"),
)
STEWARD = "govdata_steward"


class NotAuthorised(PermissionError):
    """The caller is not a steward (PostgreSQL role) or cannot read the key (DuckDB)."""


def os_user() -> str:
    """The operating-system account of this process (the audited `who` on DuckDB)."""
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "?"
    return f"{name} (uid {uid})"


def _check_request(tokens: list[str], reason: str, second_reason: str | None, limit: int) -> None:
    if not tokens:
        raise ValueError("identify: no token given")
    if not (reason or "").strip():
        raise ValueError("identify: a reason is required")
    if len(tokens) > limit and not (second_reason or "").strip():
        raise ValueError(f"identify: {len(tokens)} tokens exceed the bulk limit of {limit} "
                         f"(GOVDATA_IDENTIFY_BULK_LIMIT): a second reason is required")


def _audit_reason(reason: str, second_reason: str | None) -> str:
    return reason.strip() + (f" | second reason: {second_reason.strip()}" if (second_reason or "").strip() else "")


def identify_function_sql(bulk_limit: int) -> list[str]:
    """PostgreSQL: vault.identify(tokens, reason, second_reason), SECURITY DEFINER. The database
    decides: the session's login role must be a member of govdata_steward; the function writes
    one identify_audit row per token (who = session_user) and returns the ciphertexts. Stewards
    lose direct SELECT on the vault tables and INSERT on the audit: every resolution goes through
    the function, and nobody writes an audit row under another name."""
    lookups = " UNION ALL ".join(
        f"SELECT '{fld}'::text, {enc} FROM vault.{table} WHERE {tok} = t AND {enc} IS NOT NULL"
        for table, tok, enc, fld in _LOOKUPS)
    return [f"""
CREATE OR REPLACE FUNCTION vault.identify(p_tokens text[], p_reason text, p_second_reason text DEFAULT NULL)
RETURNS TABLE(o_token text, o_field text, o_blob bytea)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t text;
    n int := coalesce(array_length(p_tokens, 1), 0);
BEGIN
    IF NOT pg_has_role(session_user, '{STEWARD}', 'MEMBER') THEN
        RAISE EXCEPTION 'identify: role % is not a member of {STEWARD}', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(btrim(p_reason), '') = '' THEN
        RAISE EXCEPTION 'identify: a reason is required';
    END IF;
    IF n > {int(bulk_limit)} AND coalesce(btrim(p_second_reason), '') = '' THEN
        RAISE EXCEPTION 'identify: % tokens exceed the bulk limit of {int(bulk_limit)} (GOVDATA_IDENTIFY_BULK_LIMIT): a second reason is required', n;
    END IF;
    FOREACH t IN ARRAY p_tokens LOOP
        INSERT INTO public.identify_audit (audit_id, who, asked_at, token, reason)
        VALUES (gen_random_uuid()::text, session_user, now() AT TIME ZONE 'UTC', t,
                btrim(p_reason) || coalesce(' | second reason: ' || nullif(btrim(p_second_reason), ''), ''));
        RETURN QUERY SELECT t, f.fld, f.enc FROM ({lookups}) AS f(fld, enc) LIMIT 1;
    END LOOP;
END
$fn$""",
            "REVOKE ALL ON FUNCTION vault.identify(text[], text, text) FROM PUBLIC",
            f"GRANT EXECUTE ON FUNCTION vault.identify(text[], text, text) TO {STEWARD}",
            f"REVOKE INSERT, UPDATE, DELETE ON identify_audit FROM {STEWARD}",
            f"REVOKE SELECT ON vault.vault_person, vault.vault_enterprise FROM {STEWARD}"]


def install_identify(db, bulk_limit: int | None = None) -> None:
    """Creates vault.identify and its grants (PostgreSQL; part of init_warehouse)."""
    if db.backend != "postgresql":
        return
    if bulk_limit is None:
        from govdata.settings import get_settings

        bulk_limit = get_settings().identify_bulk_limit
    for sql in identify_function_sql(bulk_limit):
        db.execute(sql)


def identify(url: str, tokens: str | list[str], reason: str, second_reason: str | None = None,
             key: bytes | None = None) -> str | dict[str, str]:
    """Resolve token(s) to raw identifiers for an authenticated steward, one audit row per token.

    PostgreSQL: the database decides (vault.identify, SECURITY DEFINER: the login role must be
    in govdata_steward; the audit row records session_user). DuckDB (embedded, one machine):
    the steward is whoever can read the key file; the audit row records the OS account of the
    process. More tokens than GOVDATA_IDENTIFY_BULK_LIMIT need a second reason. A str in gives
    a str out; a list gives {token: value}. Unknown tokens are audited too, then refused."""
    from govdata.settings import get_settings
    from govdata.warehouse.load import backend_of, connect

    single = isinstance(tokens, str)
    wanted = [tokens] if single else list(dict.fromkeys(tokens))
    settings = get_settings()
    backend = backend_of(url)
    if backend == "duckdb":
        _check_request(wanted, reason, second_reason, settings.identify_bulk_limit)
    if key is None:
        try:
            key = settings.token_key()
        except PermissionError as exc:
            raise NotAuthorised(f"identify: {os_user()} cannot read the key ({exc.strerror or exc}): "
                                f"stewards only") from None
    found: dict[str, tuple[str, bytes]] = {}
    with connect(url, vault=backend == "duckdb") as db:
        if backend == "postgresql":
            import psycopg

            try:
                rows = db.fetchall("SELECT o_token, o_field, o_blob FROM vault.identify(?, ?, ?)",
                                   (wanted, reason, second_reason))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise NotAuthorised(f"identify: not authorised (database: {str(exc).splitlines()[0]})") from None
            except psycopg.errors.RaiseException as exc:
                raise ValueError(str(exc).splitlines()[0]) from None
            found = {t: (fld, blob) for t, fld, blob in rows}
        else:
            who, now = os_user(), datetime.now(timezone.utc).replace(tzinfo=None)
            with db.transaction():
                for tok in wanted:
                    db.execute("INSERT INTO identify_audit (audit_id, who, asked_at, token, reason) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (uuid.uuid4().hex, who, now, tok, _audit_reason(reason, second_reason)))
                    for table, token_col, enc_col, fld in _LOOKUPS:
                        rows = db.fetchall(f"SELECT {enc_col} FROM vault.{table} WHERE {token_col} = ? "
                                           f"AND {enc_col} IS NOT NULL LIMIT 1", (tok,))
                        if rows:
                            found[tok] = (fld, rows[0][0])
                            break
    missing = [t for t in wanted if t not in found]
    if missing:
        raise LookupError(f"identify: token {missing[0][:12]}… is not in the vault"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    values = {t: decrypt_value(found[t][1], key, found[t][0]) for t in wanted}
    return values[wanted[0]] if single else values


# --- key rotation -------------------------------------------------------------------------------
def _decrypt_any(blob, keys: list[bytes], field: str) -> str:
    from cryptography.exceptions import InvalidTag

    for key in keys:
        try:
            return decrypt_value(blob, key, field)
        except InvalidTag:
            continue
    raise ValueError(f"vault value of {field} decrypts under none of the {len(keys)} key(s) given")


def _hmac(key: bytes, value: str) -> str:
    return hmac.digest(key, value.encode(), "sha256").hex()


def _register(db, name: str, table) -> None:
    """An Arrow table visible to SQL as `name` (DuckDB: a registered view, no write; PostgreSQL:
    a temporary table filled by COPY)."""
    import pyarrow as pa

    if db.backend == "duckdb":
        db.con.register(name, table)
        return
    types = {f.name: "bytea" if pa.types.is_binary(f.type) else "text" for f in table.schema}
    db.execute(f"CREATE TEMP TABLE {name} ({', '.join(f'{c} {t}' for c, t in types.items())}) ON COMMIT DROP")
    with db.con.cursor().copy(f"COPY {name} ({', '.join(types)}) FROM STDIN") as copy:
        for row in zip(*(table.column(c).to_pylist() for c in types)):
            copy.write_row(row)


def rotate_key(url: str, old_keys: list[bytes], new_key: bytes) -> dict:
    """Re-encrypts the vault under new_key and re-tokenises the warehouse. Vault values may be
    under any of old_keys or already under new_key (a rerun after a crash continues). Every
    `*_token` column of the warehouse (identify_audit excepted: an audit is not rewritten) is
    mapped old → new through the vault's plaintexts and the enterprises' USCCs; returns counts,
    including tokens it could not map (the next full-refresh run rebuilds those)."""
    import pyarrow as pa

    from govdata.warehouse.load import backend_of, connect, duckdb_paths
    from govdata.warehouse.schema import metadata

    keys = [new_key, *[k for k in old_keys if k != new_key]]
    mapping: dict[str, str] = {}
    vault_new: dict[str, pa.Table] = {}
    with connect(url, vault=True) as db:
        for table, key_col in (("vault_person", "person_id"), ("vault_enterprise", "enterprise_id")):
            rows = db.fetch_arrow(f"SELECT * FROM vault.{table}").to_pylist()
            out = {key_col: [r[key_col] for r in rows]}
            for _, tok_col, enc_col, fld in [lk for lk in _LOOKUPS if lk[0] == table]:
                plains = [None if r[enc_col] is None else _decrypt_any(r[enc_col], keys, fld) for r in rows]
                out[tok_col] = [None if p is None else _hmac(new_key, p) for p in plains]
                out[enc_col] = list(encrypt_values(pd.Series(plains, dtype=object), new_key, fld))
                for p, new in zip(plains, out[tok_col]):
                    if p is not None:
                        mapping.update({_hmac(k, p): new for k in keys})
            vault_new[table] = pa.table(out)
        usccs = [r[0] for r in db.fetchall("SELECT DISTINCT uscc FROM dim_enterprise WHERE uscc IS NOT NULL")]
    for u in usccs:
        mapping.update({_hmac(k, u): _hmac(new_key, u) for k in keys})
    token_map = pa.table({"old_token": list(mapping), "new_token": list(mapping.values())})
    columns = [(t.name, c.name) for t in metadata.sorted_tables if t.schema is None and t.name != "identify_audit"
               for c in t.columns if c.name.endswith("_token")]
    result = {"vault_person": vault_new["vault_person"].num_rows,
              "vault_enterprise": vault_new["vault_enterprise"].num_rows, "tokens_mapped": {}, "tokens_unmapped": {}}

    def rewrite_vault(db) -> None:
        for table, new in vault_new.items():
            key_col = new.column_names[0]
            _register(db, f"new_{table}", new)
            sets = ", ".join(f"{c} = n.{c}" for c in new.column_names[1:])
            db.execute(f"UPDATE vault.{table} SET {sets} FROM new_{table} n WHERE {table}.{key_col} = n.{key_col}")

    def rewrite_warehouse(db) -> None:
        _register(db, "token_map", token_map)
        present = {r[0] for r in db.fetchall("SELECT table_name FROM information_schema.tables")}
        for table, col in columns:
            if table not in present:
                continue
            db.execute(f"UPDATE {table} SET {col} = m.new_token FROM token_map m WHERE {table}.{col} = m.old_token")
            left = db.fetchall(f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL "
                               f"AND {col} NOT IN (SELECT new_token FROM token_map)")[0][0]
            result["tokens_unmapped"][f"{table}.{col}"] = int(left)

    if backend_of(url) == "duckdb":   # one DuckDB transaction writes one file: vault, then warehouse
        from govdata.warehouse.load import vault_lock

        with vault_lock(duckdb_paths(url)[1]):
            with connect(url, vault=True) as db:
                with db.transaction():
                    rewrite_vault(db)
                db.execute("CHECKPOINT vault")
            with connect(url) as db:
                with db.transaction():
                    rewrite_warehouse(db)
    else:
        with connect(url) as db:
            with db.transaction():   # vault schema and warehouse: one commit
                rewrite_vault(db)
                rewrite_warehouse(db)
    return result


def rotate_settings_key(url: str) -> dict:
    """`govdata vault rotate-key`: a new root key for the key file (kept in <key>.next until done,
    so a rerun after a crash continues), the vault and warehouse rotated, the old key moved to
    <key>.previous (decrypt only: lake files of earlier runs). With GOVDATA_TOKEN_KEY from a
    secret store: rotates from GOVDATA_TOKEN_KEY_PREVIOUS to GOVDATA_TOKEN_KEY."""
    import secrets

    from govdata.settings import get_settings

    settings = get_settings()
    if os.environ.get("GOVDATA_TOKEN_KEY"):
        previous = settings.previous_token_keys()
        if not previous:
            raise ValueError("GOVDATA_TOKEN_KEY is set: put the new key there and the old one in "
                             "GOVDATA_TOKEN_KEY_PREVIOUS, then run rotate-key again")
        return rotate_key(url, previous, settings.token_key())
    key_file = settings.key_file
    old = settings.token_key()
    following = key_file.with_name(key_file.name + ".next")
    if not following.exists():
        fd = os.open(following, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    new = bytes.fromhex(following.read_text().strip())
    result = rotate_key(url, [old, *settings.previous_token_keys()], new)
    retired = list(dict.fromkeys(k.hex() for k in [old, *settings.previous_token_keys()] if k != new))
    staging = settings.previous_key_file.with_name(settings.previous_key_file.name + ".tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(retired) + "\n")
    os.replace(staging, settings.previous_key_file)
    os.replace(following, key_file)
    return {**result, "key_file": str(key_file), "previous_keys": len(retired)}
