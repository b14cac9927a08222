"""Where a run's files live in the lake: one folder per run, any fsspec URL.

Personal data at rest (docs/SECURITY.md): every Parquet file holding an identifier or contact
element (`pii: identifier | contact` in standards/elements.yaml) — and every source column of a
raw extract — is written with Parquet modular encryption (AES-GCM, pyarrow.parquet.encryption):
those columns under the lake's PII master key, the footer (schema, statistics) under the footer
master key. The master keys come from a KMS client (`LakeKms`): by default derived from the
settings key (GOVDATA_TOKEN_KEY or the 0600 key file), or from GOVDATA_LAKE_KEY, a secret the
deployment injects (GOVDATA_LAKE_KMS=env). Callers pass nothing: the lake decides from the
column names. Files are 0600 in 0700 folders; the process umask is 0077 from the first lake call.
"""
from __future__ import annotations

import base64
import functools
import hmac
import os
import re
import time
from datetime import timedelta
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

PRIVATE_UMASK = 0o077
DIR_MODE, FILE_MODE = 0o700, 0o600


def private_umask() -> None:
    """Files govdata creates (lake, report, vault WAL, GX data docs) are owner-only: umask 0077
    for the whole process. Called at the start of every stage, by get_settings() and by the lake."""
    os.umask(PRIVATE_UMASK)


def safe_run_id(run_id: str) -> str:
    """Airflow run ids carry ':' and '+', which object stores and Windows dislike."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def run_path(lake: str, run_id: str, *parts: str) -> str:
    return "/".join([lake.rstrip("/"), safe_run_id(run_id), *parts])


def _fs(path: str):
    private_umask()
    fs, _, (p,) = fsspec.get_fs_token_paths(path)
    return fs, p


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _makedirs(fs, folder: str) -> None:
    """Creates the folder; on a local disk every folder created here is 0700 (whatever umask an
    earlier caller left)."""
    if not _is_local(fs):
        fs.makedirs(folder, exist_ok=True)
        return
    missing, d = [], Path(folder)
    while not d.exists():
        missing.append(d)
        d = d.parent
    fs.makedirs(folder, exist_ok=True)
    for d in missing:
        os.chmod(d, DIR_MODE)


def _private_file(fs, p: str) -> None:
    if _is_local(fs):
        os.chmod(p, FILE_MODE)


def private_tree(path: str) -> int:
    """chmod 0700/0600 everything under a local lake folder: files other libraries wrote keep
    their own modes (GX copies its Data Docs assets with the 0755 of site-packages). Returns
    how many modes changed; a no-op on object stores."""
    fs, p = _fs(path)
    if not _is_local(fs) or not os.path.isdir(p):
        return 0
    changed = 0
    for root, dirs, files in os.walk(p):
        for name, mode in [(d, DIR_MODE) for d in dirs] + [(f, FILE_MODE) for f in files] + [("", DIR_MODE)]:
            target = os.path.join(root, name) if name else root
            if not os.path.islink(target) and (os.stat(target).st_mode & 0o777) != mode:
                os.chmod(target, mode)
                changed += 1
    return changed


# --- which columns are personal data -----------------------------------------------------------
RAW_BOOKKEEPING = ("_source_record_id", "_row_hash")


@functools.cache
def pii_columns() -> frozenset[str]:
    """Element names with `pii: identifier` or `pii: contact` in standards/elements.yaml."""
    import yaml

    from govdata.standards.registry import STANDARDS_ROOT   # the installed standards (a wheel nests them)

    spec = yaml.safe_load((STANDARDS_ROOT / "elements.yaml").read_text(encoding="utf-8"))
    return frozenset(name for elements in spec.values() for name, e in (elements or {}).items()
                     if isinstance(e, dict) and e.get("pii") in ("identifier", "contact"))


def encrypted_columns(schema: pa.Schema) -> list[str]:
    """The columns the lake encrypts in a file of this schema: PII elements by name; in a raw
    extract (it carries `_row_hash`) every source column, since the lake cannot tell which
    department column holds what and raw values are the department's records verbatim."""
    if RAW_BOOKKEEPING[1] in schema.names:
        return [n for n in schema.names if n not in RAW_BOOKKEEPING]
    pii = pii_columns()
    return [n for n in schema.names if n in pii]


# --- keys: a KMS client for Parquet modular encryption -----------------------------------------
FOOTER_KEY_ID, PII_KEY_ID = "govdata-lake-footer", "govdata-lake-pii"


def _master_key(root: bytes, key_id: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"govdata-lake", info=key_id.encode()).derive(root)


def key_fingerprint(root: bytes) -> str:
    """Names a root key without revealing it (stored beside each wrapped data key)."""
    return hmac.digest(root, b"govdata-lake-fingerprint", "sha256")[:6].hex()


def lake_root_keys() -> list[bytes]:
    """[current, previous…] root keys of the configured backend. Previous keys only decrypt
    (files written before a rotation); the current one encrypts."""
    backend = os.environ.get("GOVDATA_LAKE_KMS", "local")
    if backend == "env":
        current = os.environ.get("GOVDATA_LAKE_KEY")
        if not current:
            raise RuntimeError("GOVDATA_LAKE_KMS=env but GOVDATA_LAKE_KEY (64 hex characters) is not set")
        previous = [k for k in os.environ.get("GOVDATA_LAKE_KEY_PREVIOUS", "").split(",") if k.strip()]
        return [bytes.fromhex(k.strip()) for k in [current, *previous]]
    if backend != "local":
        raise RuntimeError(f"GOVDATA_LAKE_KMS={backend!r}: use local (the settings key) or env (GOVDATA_LAKE_KEY)")
    from govdata.settings import get_settings

    settings = get_settings()
    return [settings.token_key(), *settings.previous_token_keys()]


class LakeKeyMissing(RuntimeError):
    """A lake file's data keys were wrapped under a root key this installation does not hold."""


class LakeKms(pe.KmsClient):
    """Wraps Parquet data keys with AES-GCM under a master key derived (HKDF) from a root key.
    A wrapped key reads `v1:<root fingerprint>:<base64 nonce+ciphertext>`; unwrapping picks the
    root by fingerprint, so files written before a key rotation stay readable while the previous
    key is kept (GOVDATA_TOKEN_KEY_PREVIOUS / <key file>.previous)."""

    def __init__(self, roots: list[bytes]):
        pe.KmsClient.__init__(self)
        self._roots = {key_fingerprint(r): r for r in reversed(roots)}
        self._current = key_fingerprint(roots[0])

    def wrap_key(self, key_bytes, master_key_identifier):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        master = _master_key(self._roots[self._current], master_key_identifier)
        nonce = os.urandom(12)
        sealed = AESGCM(master).encrypt(nonce, bytes(key_bytes), master_key_identifier.encode())
        return f"v1:{self._current}:{base64.b64encode(nonce + sealed).decode()}"

    def unwrap_key(self, wrapped_key, master_key_identifier):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        _, fingerprint, blob = str(wrapped_key).split(":", 2)
        root = self._roots.get(fingerprint)
        if root is None:
            raise LakeKeyMissing(f"lake file encrypted under key {fingerprint}, which this installation does not hold "
                           f"(restore it as a previous key: docs/SECURITY.md)")
        raw = base64.b64decode(blob)
        return AESGCM(_master_key(root, master_key_identifier)).decrypt(raw[:12], raw[12:],
                                                                        master_key_identifier.encode())


@functools.lru_cache(maxsize=8)
def _crypto(fingerprints: tuple[str, ...]) -> tuple[pe.CryptoFactory, pe.KmsConnectionConfig]:
    """One factory per key set (its caches of wrapped keys must not outlive a key change)."""
    roots = lake_root_keys()
    factory = pe.CryptoFactory(lambda config: LakeKms(roots))
    config = pe.KmsConnectionConfig(kms_instance_id=os.environ.get("GOVDATA_LAKE_KMS", "local"),
                                    key_access_token="-".join(fingerprints))
    return factory, config


def crypto() -> tuple[pe.CryptoFactory, pe.KmsConnectionConfig]:
    return _crypto(tuple(key_fingerprint(r) for r in lake_root_keys()))


_CACHE = timedelta(minutes=10)
# Unwrapped key-encryption keys stay cached for the process (they are no more secret than the
# root key it holds): a key unwrapped again on one of Arrow's threads while a scan started from
# Python waits on it deadlocks (see warm_keys).
_READ_CACHE = timedelta(days=1)


def encryption_properties(columns: list[str]):
    factory, config = crypto()
    return factory.file_encryption_properties(config, pe.EncryptionConfiguration(
        footer_key=FOOTER_KEY_ID, column_keys={PII_KEY_ID: list(columns)}, encryption_algorithm="AES_GCM_V1",
        plaintext_footer=False, double_wrapping=True, cache_lifetime=_CACHE))


def decryption_properties():
    factory, config = crypto()
    return factory.file_decryption_properties(config, pe.DecryptionConfiguration(cache_lifetime=_READ_CACHE))


def _parquet_write_options(schema: pa.Schema) -> dict:
    columns = encrypted_columns(schema)
    return {"encryption_properties": encryption_properties(columns)} if columns else {}


def is_encrypted(path: str) -> bool:
    """True when the file is Parquet with an encrypted footer (magic `PARE`)."""
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        return fh.read(4) == b"PARE"


# --- reading and writing -----------------------------------------------------------------------
# Hand-offs between the tasks of one stage (link_plan → link → link_merge) are read once. They
# were Arrow IPC files, which have no encryption; they are now Parquet written uncompressed with
# the same column encryption as every other lake file: measured on 1M person records (240 MB),
# 0.40 s write + read against 0.33 s for IPC, where Snappy-compressed Parquet took 0.9 s.
# retention.remove_hand_offs deletes them when the run ends.
HANDOFF_SUFFIX = ".handoff.parquet"
IPC_SUFFIX = HANDOFF_SUFFIX   # the name govdata/stages uses for hand-off files
ARROW_SUFFIX = ".arrow"       # Arrow IPC: still read; written only for tables without PII


def _is_ipc(path: str) -> bool:
    return path.endswith(ARROW_SUFFIX)


def _is_handoff(path: str) -> bool:
    return path.endswith(HANDOFF_SUFFIX)


def _as_table(frame: pd.DataFrame | pa.Table) -> pa.Table:
    return frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)


def write_parquet(frame: pd.DataFrame | pa.Table, path: str, row_group_rows: int | None = None) -> str:
    """Writes Parquet, PII columns encrypted (uncompressed for a .handoff.parquet hand-off), or an
    Arrow IPC file when the path ends in .arrow and the table holds no personal data.
    `row_group_rows`: rows per row group (a reader streams the file one row group at a time)."""
    fs, p = _fs(path)
    _makedirs(fs, p.rsplit("/", 1)[0])
    table = _as_table(frame)
    with fs.open(p, "wb") as fh:
        if _is_ipc(path):
            if encrypted_columns(table.schema):
                raise ValueError(f"{path}: Arrow IPC cannot be encrypted and this table holds personal data "
                                 f"({', '.join(encrypted_columns(table.schema))}); write {HANDOFF_SUFFIX}")
            with pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)
        else:
            options = {"compression": "none"} if _is_handoff(path) else {}
            if row_group_rows:
                options["row_group_size"] = row_group_rows
            pq.write_table(table, fh, **options, **_parquet_write_options(table.schema))
    _private_file(fs, p)
    return path


def is_text_type(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _arrow_string_dtype(typ: pa.DataType):
    return pd.StringDtype("pyarrow") if is_text_type(typ) else None


def read_parquet(path: str, columns: list[str] | None = None, arrow_strings: bool = False) -> pd.DataFrame:
    """arrow_strings: text columns stay Arrow-backed (string[pyarrow]); no Python str per value."""
    return to_pandas(read_arrow(path, columns), arrow_strings)


def to_pandas(table: pa.Table, arrow_strings: bool = False, date_as_object: bool = True) -> pd.DataFrame:
    """arrow_strings: text columns stay Arrow-backed (string[pyarrow]); date_as_object=False:
    dates as datetime64, not a Python date per value."""
    return table.to_pandas(types_mapper=_arrow_string_dtype if arrow_strings else None, date_as_object=date_as_object)


def read_arrow(path: str, columns: list[str] | None = None, dictionary: list[str] | None = None) -> pa.Table:
    """A Parquet (decrypted with the lake's keys when encrypted) or Arrow IPC (.arrow) file.
    dictionary: text columns to read dictionary-encoded (dictionary<int32, string>)."""
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        if not _is_ipc(path):
            encrypted = fh.read(4) == b"PARE"
            fh.seek(0)
            return pq.read_table(fh, columns=columns, read_dictionary=dictionary or None,
                                 decryption_properties=decryption_properties() if encrypted else None)
        table = pa.ipc.open_file(fh).read_all()
    table = table.select(columns) if columns is not None else table
    for name in dictionary or []:
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.dictionary_encode(table[name].cast(pa.string())))
    return table


def dataset(paths: str | list[str], schema: pa.Schema | None = None):
    """Parquet lake files as one pyarrow dataset, decrypted with the lake's keys: scanned lazily,
    one row group at a time, with column projection (DuckDB queries it without loading it whole)."""
    import pyarrow.dataset as ds

    paths = [paths] if isinstance(paths, str) else list(paths)
    fs, _ = _fs(paths[0])
    warm_keys(paths)
    factory, config = crypto()
    decryption = ds.ParquetDecryptionConfig(factory, config, pe.DecryptionConfiguration(cache_lifetime=_READ_CACHE))
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
        decryption_config=decryption))
    return ds.dataset([_fs(p)[1] for p in paths], schema=schema, format=fmt, filesystem=fs)


def warm_keys(paths: list[str]) -> None:
    """Unwrap the keys of these lake files on this thread, before a scan may need them on
    another: the key client is Python, and DuckDB starts a dataset scan from Python holding
    the GIL; an Arrow thread unwrapping a key then waits for the GIL while the scan waits for
    that key (a deadlock seen in the load at 1M persons). Each file's footer key is unwrapped
    by opening it, its column key by reading one encrypted column of its first row group; a file
    (path, size, modification time) whose keys this process already holds is not read again."""
    for path in paths:
        fs, p = _fs(path)
        info = fs.info(p)
        seen = (path, info.get("size"), str(info.get("mtime", info.get("LastModified"))))
        if time.monotonic() - _WARM.get(seen, -1e18) < _READ_CACHE.total_seconds() / 2:
            continue   # its keys are still cached
        with fs.open(p, "rb") as fh:
            if fh.read(4) != b"PARE":
                continue
            fh.seek(0)
            reader = pq.ParquetFile(fh, decryption_properties=decryption_properties())
            columns = encrypted_columns(reader.schema_arrow)
            if columns and reader.metadata.num_row_groups:
                reader.read_row_group(0, columns=columns[:1])
        _WARM[seen] = time.monotonic()


_WARM: dict[tuple, float] = {}   # file -> when warm_keys unwrapped its keys (cached for _READ_CACHE)


def present_columns(path: str, columns: list[str]) -> list[str]:
    """Of columns, those the lake file at path has (a source need not carry every column)."""
    names = set(dataset(path).schema.names)
    return [c for c in columns if c in names]


def first_row_group(path: str, columns: list[str]) -> pa.Table:
    """The first row group of a lake Parquet file, in `columns`: a sample read without the rest
    (an Arrow IPC file is read whole)."""
    if _is_ipc(path):
        return read_arrow(path, columns)
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        file = _parquet_file(fh)
        if file.metadata.num_row_groups == 0:
            empty = file.schema_arrow.empty_table()
            return empty if columns is None else empty.select(columns)
        return file.read_row_group(0, columns=columns)


def parquet_rows(path: str) -> int:
    """Rows of a lake Parquet file, from its footer."""
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        encrypted = fh.read(4) == b"PARE"
        fh.seek(0)
        return pq.ParquetFile(fh, decryption_properties=decryption_properties() if encrypted else None
                              ).metadata.num_rows


def _parquet_file(fh) -> pq.ParquetFile:
    encrypted = fh.read(4) == b"PARE"
    fh.seek(0)
    return pq.ParquetFile(fh, decryption_properties=decryption_properties() if encrypted else None)


def parquet_schema(path: str) -> pa.Schema:
    """The Arrow schema of a lake Parquet file, from its footer."""
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        return _parquet_file(fh).schema_arrow


def iter_tables(path: str, rows: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """A lake Parquet file as tables of `rows` rows each (the last one shorter; none for an empty
    file), decrypted with the lake's keys: a stage streams a source through at most one table
    and one batch of it, never the whole file."""
    if rows < 1:
        raise ValueError(f"rows per table must be at least 1, not {rows}")
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        reader = _parquet_file(fh)
        schema = reader.schema_arrow if columns is None else pa.schema([reader.schema_arrow.field(c) for c in columns])
        held: list[pa.RecordBatch] = []
        count = 0
        for batch in reader.iter_batches(batch_size=rows, columns=columns):   # never across row groups
            held.append(batch)
            count += batch.num_rows
            while count >= rows:
                table = pa.Table.from_batches(held, schema=schema)
                yield table.slice(0, rows)
                rest = table.slice(rows)
                held, count = rest.to_batches(), rest.num_rows
        if count:
            yield pa.Table.from_batches(held, schema=schema)


class TableWriter:
    """Appends tables to one lake Parquet file, PII columns encrypted as in write_parquet; every
    table is cast to `schema`, or to the first table's. The file is opened at the first table;
    `close` writes an empty file with `schema` when none came. A `with` block that raises removes
    the unfinished file."""

    def __init__(self, path: str, schema: pa.Schema | None = None):
        self.path, self.schema, self.rows = path, schema, 0
        self._writer = self._fh = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.schema = self.schema or table.schema
            self._writer, self._fh = open_writer(self.path, self.schema)
        if not table.schema.equals(self.schema, check_metadata=False):
            table = table.select(self.schema.names).cast(self.schema)
        self._writer.write_table(table.replace_schema_metadata(self.schema.metadata))
        self.rows += table.num_rows

    def close(self) -> str:
        if self._writer is None:
            if self.schema is None:
                raise ValueError(f"{self.path}: nothing written and no schema to write an empty file with")
            self._writer, self._fh = open_writer(self.path, self.schema)
        self._writer.close()
        self._fh.close()
        return self.path

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
            return
        if self._writer is not None:
            self._writer.close()
            self._fh.close()
            fs, p = _fs(self.path)
            fs.rm(p)


def copy_file(source: str, target: str) -> str:
    """A lake file copied as it is (still encrypted: its data keys travel in its own footer)."""
    fs, p = _fs(source)
    tfs, t = _fs(target)
    _makedirs(tfs, t.rsplit("/", 1)[0])
    if fs is tfs or type(fs) is type(tfs):
        tfs.copy(p, t)
    else:
        with fs.open(p, "rb") as src, tfs.open(t, "wb") as dst:
            while block := src.read(1 << 24):
                dst.write(block)
    _private_file(tfs, t)
    return target


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


class _PrivateHandle:
    """The file handle open_writer returns: closing it also makes the file 0600."""

    def __init__(self, fs, p: str):
        self._fs, self._p, self._fh = fs, p, fs.open(p, "wb")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def close(self) -> None:
        self._fh.close()
        _private_file(self._fs, self._p)


def open_writer(path: str, schema: pa.Schema) -> tuple[pq.ParquetWriter, object]:
    """A streaming Parquet writer (for sources larger than memory), PII columns encrypted as in
    write_parquet; close both when done."""
    fs, p = _fs(path)
    _makedirs(fs, p.rsplit("/", 1)[0])
    fh = _PrivateHandle(fs, p)
    _private_file(fs, p)
    options = {"compression": "none"} if _is_handoff(path) else {}   # as write_parquet
    return pq.ParquetWriter(fh._fh, schema, **options, **_parquet_write_options(schema)), fh
