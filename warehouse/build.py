"""Link outputs + standardised application/certificate frames → warehouse rows.

Analyst-visible tables get tokens (HMAC of the raw identifier) and masks; the raw ID and phone
numbers go to vault rows only, encrypted (warehouse.vault). Tokens and ciphertexts are computed
once per distinct value, on forked workers (warehouse.rows.crypto_workers); the dimensions' text
is Arrow-backed, so that the load's staging takes it as it is.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from govdata.forking import default_workers
from govdata.transforms.privacy import arrow_text, distinct_text, mask_id_number, mask_phone, per_row
from govdata.warehouse.facts import (
    CALENDAR_YEARS,
    FACT_CHUNK_ROWS,
    _fact_dates,
    _frames_of_kind,
    application_rows,
    certificate_rows,
    dim_date_rows,
    lean_parts_of_kind,
    working_days_between,
)
from govdata.warehouse.owners import (
    FACT_OWNERS,
    HOLDER_COLUMNS,
    OWNER_MEMORY,
    OWNER_REASONS,
    fact_owner_changes,
    fact_owner_inputs,
    identifier_holders,
    identifier_owners,
    owner_lookup,
    resolve_owners,
)
from govdata.warehouse.rows import (
    _col,
    _require,
    _table_columns,
    crypto_workers,
    identifier_token,
    secrets_of,
)
from govdata.warehouse.schema import table_for
from govdata.warehouse.state import ParquetAppender

# Link output names: the contract's table names, or the pipeline's `<entity>_<part>` files.
_LINK_NAMES = {
    "xref_person": ("xref_person", "person_xref"),
    "dim_person": ("dim_person", "person_golden"),
    "xref_enterprise": ("xref_enterprise", "enterprise_xref"),
    "dim_enterprise": ("dim_enterprise", "enterprise_golden"),
    "master_id_history": ("master_id_history", "person_history", "enterprise_history"),
    "review_queue": ("review_queue", "person_review", "enterprise_review"),
}
NAME_MASKING = ("none", "surname")   # surname: 张** — keep the first character only


def _link_frame(link: dict[str, pd.DataFrame], table: str) -> pd.DataFrame | None:
    frames = [link.get(n) for n in _LINK_NAMES[table] if n in link]   # a lazy mapping reads each once
    frames = [f for f in frames if f is not None and len(f.columns)]
    if not frames:
        return None
    frames = [f for f in frames if len(f)] or frames[:1]   # an empty frame has no dtypes to agree on
    if len(frames) > 1:
        return pd.concat(_agreed_dtypes(frames), ignore_index=True)
    return frames[0] if getattr(link, "fresh", False) else frames[0].copy()   # fresh: read for us alone


def _agreed_dtypes(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Frames to concatenate, an all-null column cast to the dtype another frame gives it (review
    pairs without a score hold an object column): pandas deprecates letting all-NA columns
    decide a concatenation's dtype, and warned on the run's console."""
    differing = {c for f in frames for c in f.columns if any(c in g.columns and g[c].dtype != f[c].dtype for g in frames)}
    if not differing:
        return frames
    typed = {}
    for frame in frames:
        for column in differing & set(frame.columns):
            if column not in typed and frame[column].notna().any():
                typed[column] = frame[column].dtype
    return [f.astype({c: typed[c] for c in differing & set(f.columns)
                      if c in typed and f[c].dtype != typed[c] and not f[c].notna().any()}) for f in frames]


# Golden records per chunk when the link outputs are lake files: a dimension row depends on its
# own golden record only, and a chunk of 250,000 persons is ~0.5 GB as pandas rows.
LINK_CHUNK_ROWS = 250_000


def _link_chunks(link, table: str, rows: int = LINK_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """_link_frame in chunks of rows: read batch by batch when `link` holds lake paths (the load
    stage's LinkFrames), text Arrow-backed (no Python str per value: the rows go back to Arrow
    for the load), else the one frame. Yields one empty frame for an empty output (its columns
    still name the table's shape)."""
    paths = getattr(link, "paths", None)
    if paths is None:
        frame = _link_frame(link, table)
        if frame is not None:
            yield frame
        return
    from govdata.lake import iter_tables, read_parquet, to_pandas

    names = [n for n in _LINK_NAMES[table] if n in paths]
    yielded = False
    for name in names:
        for table in iter_tables(paths[name], rows):
            yielded = True
            yield to_pandas(table, arrow_strings=True)
    if names and not yielded:
        yield read_parquet(paths[names[0]], arrow_strings=True)


def _lineage_text(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.StringDtype):   # text already (read from the lake)
        return values
    return values.map(lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
                      if isinstance(v, (dict, list)) else v)


def mask_names(names: pd.Series, masking: str) -> pd.Series:
    if masking not in NAME_MASKING:
        raise ValueError(f"name_masking {masking!r}: use one of {', '.join(NAME_MASKING)}")
    s = _as_text(names)
    if masking == "none":
        return s
    return s.str[:1] + s.str.len().sub(1).clip(lower=0).map(
        lambda n: "*" * int(n) if pd.notna(n) else pd.NA).astype("string")


# --- persons / enterprises ------------------------------------------------------------------
def _as_text(values: pd.Series) -> pd.Series:
    """A `string` Series; Arrow-backed text stays Arrow-backed (astype("string") would make a
    Python str of each value)."""
    return values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")


def _text_column(frame: pd.DataFrame, name: str) -> pd.Series:
    return _as_text(frame[name]) if name in frame else pd.Series(pd.NA, index=frame.index, dtype="string")


def _binary(values: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(values), index=index)


def person_rows(golden: pd.DataFrame, key: bytes, run_id: str, name_masking: str = "none"
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dim_person, vault_person) from golden person records."""
    return person_rows_later(golden, key, run_id, name_masking)()


def person_rows_later(golden: pd.DataFrame, key: bytes, run_id: str, name_masking: str = "none"
                      ) -> Callable[[], tuple[pd.DataFrame, pd.DataFrame]]:
    """person_rows, its tokens and ciphertexts started now — once per distinct ID and phone
    number, on the build's workers (rows.crypto_workers) — and its rows built when called."""
    _require(golden, ["person_id"], "dim_person (link output)")
    g = golden.reset_index(drop=True)
    ids, phones = _text_column(g, "id_number"), _text_column(g, "phone")
    (id_codes, id_values), (phone_codes, phone_values) = distinct_text(ids), distinct_text(phones)
    secrets = secrets_of([(id_values, "id_number"), (phone_values, "phone")], key)

    def rows() -> tuple[pd.DataFrame, pd.DataFrame]:
        dim = g.drop(columns=[c for c in ("id_number", "phone") if c in g]).copy()
        dim["id_number_masked"] = mask_id_number(ids)
        dim["phone_masked"] = mask_phone(phones)
        if "name" in dim:
            dim["name"] = mask_names(dim["name"], name_masking)
        if "lineage" in dim:
            dim["lineage"] = _lineage_text(dim["lineage"])
        dim["first_seen_run"] = run_id
        dim["last_run"] = run_id
        (id_tokens, id_enc), (phone_tokens, phone_enc) = secrets()
        dim["person_token"] = arrow_text(per_row(id_tokens, id_codes), g.index)
        vault = pd.DataFrame({"person_id": g["person_id"], "person_token": dim["person_token"],
                              "id_number_enc": _binary(per_row(id_enc, id_codes), g.index),
                              "phone_token": arrow_text(per_row(phone_tokens, phone_codes), g.index),
                              "phone_enc": _binary(per_row(phone_enc, phone_codes), g.index)})
        return _table_columns(dim, "dim_person"), _table_columns(vault, "vault_person")

    return rows


def enterprise_rows(golden: pd.DataFrame, key: bytes, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dim_enterprise, vault_enterprise): USCCs are public; the legal rep's ID goes to the vault."""
    _require(golden, ["enterprise_id"], "dim_enterprise (link output)")
    g = golden.reset_index(drop=True)
    rep = _text_column(g, "legal_rep_id_number")
    rep_codes, rep_values = distinct_text(rep)
    secrets = secrets_of([(rep_values, "legal_rep_id_number")], key)
    dim = g.drop(columns=[c for c in ("legal_rep_id_number",) if c in g]).copy()
    dim["enterprise_token"] = identifier_token(_as_text(dim["uscc"]), key) if "uscc" in dim else pd.NA
    dim["legal_rep_id_masked"] = mask_id_number(rep)
    if "lineage" in dim:
        dim["lineage"] = _lineage_text(dim["lineage"])
    dim["first_seen_run"] = run_id
    dim["last_run"] = run_id
    ((rep_tokens, rep_enc),) = secrets()
    dim["legal_rep_token"] = arrow_text(per_row(rep_tokens, rep_codes), g.index)
    vault = pd.DataFrame({"enterprise_id": g["enterprise_id"], "legal_rep_token": dim["legal_rep_token"],
                          "legal_rep_id_number_enc": _binary(per_row(rep_enc, rep_codes), g.index)})
    vault = vault[rep.notna().to_numpy()]
    return _table_columns(dim, "dim_enterprise"), _table_columns(vault, "vault_enterprise")


# --- reference dimensions -------------------------------------------------------------------
def region_rows(regions: pd.DataFrame) -> pd.DataFrame:
    """GB/T 2260 codes, current and historical; parent = prefecture (or province) code."""
    _require(regions, ["code", "name", "level"], "standards code table region")
    r = regions.copy()
    for col in ("valid_from", "valid_to"):
        if col in r:
            r[col] = pd.to_numeric(r[col].replace("", pd.NA), errors="raise").astype("Int64")
    code = r["code"].astype("string")
    prefecture = code.str[:4] + "00"
    province = code.str[:2] + "0000"
    r["parent_code"] = np.where(r["level"] == "county", prefecture,
                                np.where(r["level"] == "prefecture", province, None))
    r.loc[(r["level"] == "county") & ~prefecture.isin(code), "parent_code"] = province
    # A code reused over time (renamed, re-levelled) has several periods: analysts join on the code,
    # so keep its current period, else its latest one.
    r["_current"] = r["status"].eq("current") if "status" in r else False
    r = r.sort_values(["code", "_current", "valid_from"], na_position="first").drop_duplicates("code", keep="last")
    return _table_columns(r, "dim_region")


def service_item_rows(items: pd.DataFrame, used: pd.Series) -> pd.DataFrame:
    """The code table, plus codes used by applications but missing from it (name NULL)."""
    _require(items, ["code"], "standards code table service_item")
    out = items.rename(columns={"code": "service_item_code"})
    if "legal_limit_days" in out:
        out["legal_limit_days"] = pd.to_numeric(out["legal_limit_days"].replace("", pd.NA),
                                                errors="raise").astype("Int64")
    extra = pd.Series(used.dropna().unique(), dtype="string")
    extra = extra[~extra.isin(out["service_item_code"])]
    out = pd.concat([out, pd.DataFrame({"service_item_code": extra})], ignore_index=True)
    return _table_columns(out, "dim_service_item")


def source_rows(std: dict[str, pd.DataFrame], quarantine: pd.DataFrame, run_id: str) -> pd.DataFrame:
    rows = []
    q = quarantine if quarantine is not None and len(quarantine) else pd.DataFrame(
        columns=["source_system", "source_record_id", "row_rejected"])
    for source in std:
        count, kind = _shape(std, source)
        qs = q[q["source_system"] == source]
        rejected = qs[qs["row_rejected"].astype(bool)]
        rows.append({"source_system": source, "kind": kind, "record_count": count,
                     "rejected_rows": int(rejected["source_record_id"].nunique()),
                     "quarantined_values": int(len(qs) - len(rejected)), "last_run": run_id})
    return _table_columns(pd.DataFrame(rows), "dim_source")


def _shape(std, source: str) -> tuple[int, str | None]:
    """(rows, kind of the first row) of a source's frame; a lazy mapping (the load stage's lake
    reader) answers from the file without reading it."""
    if hasattr(std, "shape"):
        return std.shape(source)
    frame = std[source]
    return len(frame), (frame["kind"].iloc[0] if len(frame) and "kind" in frame else None)


def build_tables(link: dict[str, pd.DataFrame], std: dict[str, pd.DataFrame], quarantine: pd.DataFrame,
                 standards, key: bytes, run_id: str, *, name_masking: str | None = None,
                 previous: dict[str, pd.DataFrame | str] | None = None) -> dict[str, pd.DataFrame]:
    """Warehouse rows for one run (see module doc). `name_masking` (none | surname) defaults to
    GOVDATA_NAME_MASKING, else none. `previous`: the warehouse's identifier_owner and the facts'
    keys, tokens and owners before this run, each a frame or the Parquet file previous_owner_state
    wrote, so that facts keep their owner; fact_owner_change lists the facts whose owner moved."""
    tables: dict[str, pd.DataFrame] = {}
    for name, frame in iter_tables(link, std, quarantine, standards, key, run_id, name_masking=name_masking,
                                   previous=previous):
        tables[name] = frame if name not in tables else pd.concat([tables[name], frame], ignore_index=True)
    return tables


def iter_tables(link, std, quarantine: pd.DataFrame, standards, key: bytes, run_id: str, *,
                name_masking: str | None = None, previous: dict[str, pd.DataFrame | str] | None = None,
                workers: int | None = None, report: dict | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """build_tables one table at a time, each input read when needed and dropped after use, so a
    caller that stages each table as it comes never holds the run's tables together. `link` and
    `std` may be lazy mappings (read on access); facts come one part per source (a table may be
    yielded several times: its rows are the parts together). Tokens and vault ciphertexts are
    computed on `workers` forked processes (default one per core, at most two; 1: in this
    process); `report`, when given, receives their workers_peak_rss_mb at the end."""
    yield from _on_crypto_workers(_iter_tables(link, std, quarantine, standards, key, run_id,
                                               name_masking=name_masking, previous=previous), workers, report)


def iter_entity_tables(link, key: bytes, run_id: str, *, name_masking: str | None = None,
                       workers: int | None = None, report: dict | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """entity_tables as iter_tables gives them (tokens and ciphertexts on `workers` forked
    processes), for a build that runs owner_fact_tables beside it (the load stage)."""
    yield from _on_crypto_workers(entity_tables(link, key, run_id, name_masking=name_masking), workers, report)


def _on_crypto_workers(tables: Iterator[tuple[str, pd.DataFrame]], workers: int | None, report: dict | None
                       ) -> Iterator[tuple[str, pd.DataFrame]]:
    workers = default_workers() if workers is None else workers
    # the pool is forked once, when the first table is asked for, while the process is small
    with crypto_workers(workers) as workers_report:
        yield from tables
    if report is not None:
        report["workers_peak_rss_mb"] = workers_report.get("workers_peak_rss_mb", 0)


def _person_tables(rows: Callable[[], tuple[pd.DataFrame, pd.DataFrame]]) -> Iterator[tuple[str, pd.DataFrame]]:
    dim, vault = rows()
    yield "dim_person", dim
    del dim
    yield "vault_person", vault


def _iter_tables(link, std, quarantine: pd.DataFrame, standards, key: bytes, run_id: str, *,
                 name_masking: str | None = None, previous: dict[str, pd.DataFrame | str] | None = None
                 ) -> Iterator[tuple[str, pd.DataFrame]]:
    xrefs: dict = {}
    yield from entity_tables(link, key, run_id, name_masking=name_masking, xrefs=xrefs)
    yield from owner_fact_tables(link, std, quarantine, standards, key, run_id, xrefs, previous=previous)


def xref_paths(link) -> dict[str, list[str] | None] | None:
    """The xref lake files per entity that owner_fact_tables scans for every record's keys, when
    `link` holds lake paths (the load stage's LinkFrames); None for frames."""
    paths = getattr(link, "paths", None)
    if paths is None:
        return None
    return {entity: [paths[n] for n in _LINK_NAMES[f"xref_{entity}"] if n in paths] or None
            for entity in ("person", "enterprise")}


def entity_tables(link, key: bytes, run_id: str, *, name_masking: str | None = None, xrefs: dict | None = None
                  ) -> Iterator[tuple[str, pd.DataFrame]]:
    """The persons' and enterprises' tables: dimensions and vault rows, xrefs, master id history
    and review pairs. `xrefs`, when given, receives what owner_fact_tables needs of the xrefs
    (xref_paths, or the records' keys when `link` holds frames)."""
    xrefs = {} if xrefs is None else xrefs
    name_masking = name_masking or os.environ.get("GOVDATA_NAME_MASKING", "none")
    later = None
    for golden in _link_chunks(link, "dim_person"):
        # the workers seal this chunk's numbers while the previous chunk is built and staged
        following = person_rows_later(golden, key, run_id, name_masking)
        del golden
        if later is not None:
            yield from _person_tables(later)
        later = following
    if later is not None:
        yield from _person_tables(later)
    del later
    for golden in _link_chunks(link, "dim_enterprise"):
        dim, vault = enterprise_rows(golden, key, run_id)
        del golden
        yield "dim_enterprise", dim
        yield "vault_enterprise", vault
        del dim, vault
    paths = getattr(link, "paths", None)
    if paths is not None:   # lake files: the owners' DuckDB scans the keys from them itself
        xrefs.update(xref_paths(link))
    for name, (entity, id_col) in (("xref_person", ("person", "person_id")),
                                   ("xref_enterprise", ("enterprise", "enterprise_id"))):
        keys = []
        for frame in _link_chunks(link, name):
            if paths is None:   # frames: the owners' join reads every record's keys (Arrow-backed text)
                keys.append(frame[["source_system", "source_record_id", id_col]].astype("string[pyarrow]"))
            frame = _table_columns(frame.assign(run_id=run_id, is_deleted=False), name)
            yield name, frame
            del frame
        if paths is None:
            xrefs[entity] = pd.concat(keys, ignore_index=True) if keys else None
        del keys
    for name, rows in (("master_id_history", lambda f: _table_columns(f.assign(run_id=f.get("run_id", run_id)),
                                                                       "master_id_history")),
                       ("review_queue", lambda f: review_rows(f, run_id))):
        frame = _link_frame(link, name)
        if frame is not None:
            yield name, rows(frame)
        del frame


def owner_fact_tables(link, std, quarantine: pd.DataFrame | None, standards, key: bytes, run_id: str,
                      xrefs: dict, *, previous: dict[str, pd.DataFrame | str] | None = None
                      ) -> Iterator[tuple[str, pd.DataFrame]]:
    """identifier_owner, the calendar, the facts with their owners and fact_owner_change, and the
    small dimensions (regions, service items, sources) and quarantine. Needs of the link outputs
    only `xrefs` (entity_tables' or xref_paths'), so it may be built beside entity_tables."""
    previous = previous or {}
    owners, changes = [], {}
    for entity in ("person", "enterprise"):
        rows, changes[entity] = identifier_owners(xrefs[entity], lean_parts_of_kind(std, entity, HOLDER_COLUMNS),
                                                  entity, key, previous, run_id)
        owners.append(rows)
    has_xref = any(x is not None for x in xrefs.values())
    del xrefs
    from govdata.evaluate import scratch_db

    with scratch_db(OWNER_MEMORY) as (con, tmp):   # the owners as Arrow, each fact chunk joined to them
        person_owner = owner_lookup(con, owners[0], "_person_owner", key)
        enterprise_owner = owner_lookup(con, owners[1], "_enterprise_owner", key)
        if has_xref:   # a chunk at a time (no second copy of millions of owners); none: the table empties
            chunks = [rows.iloc[start:start + LINK_CHUNK_ROWS] for rows in owners
                      for start in range(0, len(rows), LINK_CHUNK_ROWS)] or [owners[0]]
            for chunk in chunks:
                yield "identifier_owner", _table_columns(chunk, "identifier_owner")
            del chunks
        del owners
        first, last = _fact_dates(std)
        calendar = dim_date_rows(first, last)
        yield "dim_date", calendar
        moved, service_items = [], []
        channels = standards.code_table("channel")
        for kind, table in (("application", "fact_application"), ("certificate", "fact_certificate")):
            # this run's facts as fact_owner_changes compares them, on disk until the one join
            compared = ParquetAppender(f"{tmp}/{table}.owners.parquet") if previous.get(table) is not None else None
            for part in _frames_of_kind(std, kind, one_by_one=True, chunk_rows=FACT_CHUNK_ROWS):
                roles: dict = {}
                if kind == "application":
                    rows = application_rows(part, person_owner, enterprise_owner, channels, calendar, run_id, roles)
                    service_items.append(_col(part, "service_item_code").dropna().drop_duplicates())
                else:
                    rows = certificate_rows(part, person_owner, enterprise_owner, run_id, roles)
                del part
                if compared is not None:
                    compared.write(fact_owner_inputs(table, rows, roles["tokens"], roles["masks"]))
                del roles
                yield table, rows
                del rows
            if compared is not None and compared.close():
                moved.append(fact_owner_changes(con, table, compared.path, previous[table], changes, run_id))
    moved = [m for m in moved if len(m)]
    if moved:
        yield "fact_owner_change", _table_columns(pd.concat(moved, ignore_index=True), "fact_owner_change")
    yield "dim_region", region_rows(standards.regions)
    used = pd.concat(service_items, ignore_index=True) if service_items else pd.Series()
    yield "dim_service_item", service_item_rows(standards.code_table("service_item"), used)
    if len(std):
        yield "dim_source", source_rows(std, quarantine, run_id)
    if quarantine is not None:   # even empty: the load replaces the re-normalised records' rows
        yield "quarantine", _table_columns(quarantine.assign(run_id=run_id), "quarantine")


def review_rows(review: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Review pairs; per-field evidence columns not in the table are kept as one JSON text."""
    cols = {c.name for c in table_for("review_queue").columns}
    out = review.copy()
    extra = [c for c in out.columns if c not in cols]
    if "evidence" not in out and extra:
        out["evidence"] = [json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()},
                                      ensure_ascii=False, default=str) for row in out[extra].to_dict("records")]
    if "run_id" not in out:
        out["run_id"] = run_id
    return _table_columns(out, "review_queue")


__all__ = [
    "CALENDAR_YEARS",
    "FACT_OWNERS",
    "NAME_MASKING",
    "OWNER_REASONS",
    "application_rows",
    "build_tables",
    "certificate_rows",
    "dim_date_rows",
    "enterprise_rows",
    "fact_owner_changes",
    "identifier_holders",
    "entity_tables",
    "identifier_owners",
    "iter_entity_tables",
    "iter_tables",
    "mask_names",
    "owner_fact_tables",
    "owner_lookup",
    "person_rows",
    "region_rows",
    "resolve_owners",
    "review_rows",
    "service_item_rows",
    "source_rows",
    "working_days_between",
    "xref_paths",
]
