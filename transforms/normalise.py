"""Normalise one source: raw department columns -> standard elements + quarantine.

Input and output follow docs/CONTRACTS.md ("Raw", "Standardised", "Quarantine"). Each
mapped column is normalised by the handler for its element's `type` in standards/
(HANDLERS in transforms/handlers.py); code elements pick their normaliser by code table
(CODE_NORMALISERS). Values are screened first (transforms/screening.py).
Invalid values are NULLed and quarantined (row_rejected False); a row missing a required
element, or every element of a row_rules.yaml required_one_of group, is rejected (one
quarantine entry, row_rejected True). Raw identifiers never reach a message: quarantine
holds mask_value'd values and messages name source, table, column and reason codes only.
The stage normalises a source in chunks (govdata/stages/normalise.py): what depends on other
rows — duplicate and missing keys — is found first over the whole key column (find_key_faults);
everything else depends on the row alone.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.standards.model import Element, SourceConfig, Standards
from govdata.transforms import codes
from govdata.transforms.privacy import mask_value
from govdata.transforms.handlers import (DATE, HANDLERS, TIMESTAMP, Context, NormaliseConfigError, Outcome,
                                         _handler, _na_strings, _repair_mojibake, _repeat)
from govdata.transforms.screening import (MASKED_MAX, NULL_TOKENS, REPLACEMENT, _NULL_TOKEN_BYTES, Screened,
                                          _byte_lengths, canonical_keys, screen_values)
from govdata.transforms.unique import STRING, arrow_text, coalesce, label_where, strings

__all__ = ["COMMON_COLUMNS", "HANDLERS", "QUARANTINE_COLUMNS", "QUARANTINE_SCHEMA", "KeyFaults", "NormaliseConfigError",
           "NormaliseResult", "ReconciliationError", "canonical_keys", "check_reconciliation", "content_hashes",
           "find_key_faults", "key_columns", "normalise_source", "screen_values"]

COMMON_COLUMNS = ["source_system", "source_record_id", "kind"]
QUARANTINE_COLUMNS = ["source_system", "source_record_id", "element", "reason_code", "masked_value",
                      "row_rejected", "message"]
# The quarantine file's columns (a source normalised in chunks appends every chunk's rows to one file)
QUARANTINE_SCHEMA = pa.schema([(c, pa.bool_() if c == "row_rejected" else pa.string()) for c in QUARANTINE_COLUMNS])


class ReconciliationError(RuntimeError):
    """rows in != rows standardised + rows rejected for a source: a data gate of the run."""


@dataclass
class NormaliseResult:
    standardised: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, Any]


# ---------------------------------------------------------------- the stage
def _where(source: SourceConfig, column: str | None = None) -> str:
    where = f"source {source.name!r} (table {source.table!r}"
    return where + (f", column {column!r})" if column else ")")


def _check_config(raw: pd.DataFrame, source: SourceConfig, standards: Standards) -> dict[str, Element]:
    """Mapped columns exist, elements exist for the kind, each element mapped once."""
    if source.kind not in standards.elements:
        raise NormaliseConfigError(f"{_where(source)}: kind {source.kind!r} has no elements in standards")
    if "_source_record_id" not in raw.columns:
        raise NormaliseConfigError(f"{_where(source, '_source_record_id')}: raw frame lacks the record id column")
    known = standards.elements[source.kind]
    seen: dict[str, str] = {}
    for column, element in source.columns.items():
        if column not in raw.columns:
            raise NormaliseConfigError(f"{_where(source, column)}: mapped column missing from the raw data")
        if element not in known:
            raise NormaliseConfigError(
                f"{_where(source, column)}: element {element!r} is not a {source.kind} element in standards")
        if known[element].type not in HANDLERS:
            raise NormaliseConfigError(
                f"{_where(source, column)}: element {element!r} has type {known[element].type!r}, "
                f"no normaliser for it (types: {', '.join(sorted(HANDLERS))})")
        if element in seen:
            raise NormaliseConfigError(
                f"{_where(source, column)}: element {element!r} is already mapped from column {seen[element]!r}")
        seen[element] = column
    return known


def _row_rule_groups(standards: Standards, kind: str) -> list[list[str]]:
    if standards.root is None or not (Path(standards.root) / "row_rules.yaml").is_file():
        return []
    from govdata.standards.registry import load_row_rules

    return load_row_rules(standards.root).get(kind, [])


def _empty_column(element: Element, index: pd.Index) -> pd.Series:
    if element.type == "date":
        return pd.Series(pd.array(pa.nulls(len(index), pa.date32()), dtype=DATE), index=index)
    if element.type == "timestamp":
        return pd.Series(np.full(len(index), np.datetime64("NaT"), dtype=TIMESTAMP), index=index)
    if element.type == "integer":
        n = len(index)
        return pd.Series(pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)), index=index)
    return _na_strings(index)


def _quarantine_rows(source: SourceConfig, record_ids: pd.Series, element: str, column: str,
                     reason: pd.Series, note: pd.Series | None, raw_values: pd.Series,
                     rejected: bool, detail: str | None = None) -> pd.DataFrame:
    """Quarantine entries for the rows where reason is set; raw values masked."""
    hit = reason.notna().to_numpy()
    if not hit.any():
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    reasons = reason[hit].astype(str)
    detail = note[hit].astype(object).where(note[hit].notna(), None) if note is not None \
        else [detail] * int(hit.sum())
    messages = [f"{_where(source, column)} -> {element}: {r}" + (f" ({d})" if d and d != r else "")
                for r, d in zip(reasons, detail)]
    return pd.DataFrame({
        "source_system": source.name,
        "source_record_id": record_ids[hit].astype(str).to_numpy(),
        "element": element,
        "reason_code": reasons.to_numpy(),
        "masked_value": raw_values[hit].astype(object).to_numpy(),  # masked once in normalise_source
        "row_rejected": rejected,
        "message": messages,
    })


def normalise_source(raw: pd.DataFrame, source: SourceConfig, standards: Standards,
                     key_faults: KeyFaults | None = None, first_row: int = 0) -> NormaliseResult:
    """Raw frame of one source (strings + _source_record_id, _row_hash) -> standardised rows,
    quarantine entries and counts. len(raw) == len(std) + rejected rows.

    A source normalised in chunks: `raw` is one chunk, its rows `first_row` onwards of the
    source, and `key_faults` the source's key faults, found over every row of it on the keys
    alone (find_key_faults): a duplicate key is one across chunks. Everything else is decided
    row by row, so the chunks' results together are the whole source's (rows in the same order)."""
    known = _check_config(raw, source, standards)
    kind = source.kind
    index = raw.index
    record_ids = pd.Series(strings(canonical_keys(arrow_text(raw["_source_record_id"]))), index=index)
    if key_faults is None:   # the frame is the whole source
        key_faults, first_row = _key_faults(raw, record_ids, source), 0
    key_reason, key_note, quarantine_ids = key_faults.rows(first_row, record_ids)
    column_of = {element: column for column, element in source.columns.items()}

    cols: dict[str, pd.Series] = {}
    outcomes: dict[str, Outcome] = {}
    screens: dict[str, Screened] = {}
    # id_type first: the id_number normaliser checks each number against its document type
    for element, column in sorted(column_of.items(), key=lambda item: item[0] != "id_type"):
        options = dict(source.overrides.get(element, {}))
        if element == "id_number" and "id_type" in outcomes:
            # a type given but not in the code table: some other document ('990')
            unknown = outcomes["id_type"].reason.notna() & cols["id_type"].isna()
            options["id_type"] = cols["id_type"].astype(STRING).mask(unknown, "990")
        ctx = Context(known[element], options, standards, kind)
        column_values, repaired = _repair_mojibake(raw[column], known[element])
        screened = screen_values(column_values, known[element].max_length)
        outcome = _handler(known[element], kind)(screened.text, ctx)
        if repaired is not None:   # kept repaired, with a note (unless the value failed otherwise)
            outcome.note = coalesce(outcome.note, label_where(repaired & outcome.reason.isna(),
                                                              "repaired; value kept", index)) \
                if outcome.note is not None else label_where(repaired & outcome.reason.isna(),
                                                             "repaired; value kept", index)
            outcome.reason = coalesce(outcome.reason, label_where(repaired, "repaired_mojibake", index))
        if screened.nulled.notna().any():  # undecodable / too_long: NULLed before normalising
            outcome.reason = coalesce(screened.nulled, outcome.reason)
        screens[element] = screened
        outcomes[element] = outcome
        for name, values in outcome.columns.items():
            # A value mapped for the element itself beats one derived from another element
            # (name_pinyin given by the source vs computed from name).
            if name not in cols:
                cols[name] = values
            elif name == element:
                cols[name] = coalesce(values, cols[name])
            else:
                cols[name] = coalesce(cols[name], values)

    _derive(cols, outcomes, column_of, raw, kind, standards)
    produced = {name for name, values in cols.items()}

    # Every standard element of the kind, in standards order (unmapped ones NULL).
    std = pd.DataFrame({"source_system": _repeat(source.name, len(raw)),
                        "source_record_id": record_ids.array,
                        "kind": _repeat(kind, len(raw))}, index=index)
    ordered: dict[str, pd.Series] = {}
    for name, element in known.items():
        ordered[name] = cols.get(name, _empty_column(element, index))
        if element.type in ("id_number", "uscc"):
            for suffix in ("_status", "_note"):
                ordered[name + suffix] = cols.get(name + suffix, _na_strings(index))
    for name, values in cols.items():  # anything else a handler produced
        ordered.setdefault(name, values)
    std = pd.concat([std, pd.DataFrame(ordered, index=index)], axis=1)

    rejected_reason, rejected_element = _rejections(std, outcomes, known, column_of, produced, kind,
                                                    standards, source, key_reason)
    rejected = rejected_reason.notna().to_numpy()

    parts = []
    keep = pd.Series(~rejected, index=index)
    for element, outcome in outcomes.items():
        column = column_of[element]
        masked_from = screens[element].cleaned  # what masks show: never a control character
        parts.append(_quarantine_rows(source, quarantine_ids, element, column,
                                      outcome.reason.where(keep, pd.NA), outcome.note, masked_from, rejected=False))
        parts.append(_quarantine_rows(source, quarantine_ids, element, column,
                                      screens[element].stripped.where(keep, pd.NA), None, masked_from,
                                      rejected=False, detail="stripped; value kept"))
    if rejected.any():
        for element in rejected_element[rejected].unique():
            rows = pd.Series(rejected & (rejected_element == element).to_numpy(), index=index)
            note = None
            if element == KEY_ELEMENT:
                column, note = source.primary_key, key_note
                raw_values = screen_values(raw[column]).cleaned if column in raw.columns else _na_strings(index)
            else:
                first = next((g for g in element.split("|") if g in column_of), None)
                column = column_of[first] if first else ""
                raw_values = screens[first].cleaned if first else _na_strings(index)
            parts.append(_quarantine_rows(source, quarantine_ids, element, column or "(unmapped)",
                                          rejected_reason.where(rows, pd.NA), note, raw_values, rejected=True))
    quarantine = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) \
        else pd.DataFrame({c: pd.Series(dtype=object) for c in QUARANTINE_COLUMNS})
    quarantine = quarantine[QUARANTINE_COLUMNS].astype({"row_rejected": bool})
    if len(quarantine):
        masked = mask_value(quarantine["masked_value"].astype(STRING))
        long_ = masked.str.len().fillna(0).to_numpy() > MASKED_MAX
        if long_.any():  # a megabyte of stars helps nobody: keep the head and say how long it was
            lengths = masked[long_].str.len().astype(int).astype(str)
            masked[long_] = masked[long_].str.slice(0, MASKED_MAX) + "…(" + lengths + " chars)"
        quarantine["masked_value"] = masked.astype(object)

    # (all rows kept: no boolean take over every column)
    standardised = std.loc[~rejected].reset_index(drop=True) if rejected.any() else std.reset_index(drop=True)
    counts = _counts(raw, standardised, quarantine, outcomes, cols)
    check_reconciliation(source.name, counts)
    return NormaliseResult(standardised, quarantine, counts)


def check_reconciliation(source_name: str, counts: dict[str, Any]) -> None:
    """The gate `rows in = rows standardised + rows rejected`; raises ReconciliationError."""
    rows_in, std_rows, rejected = counts["rows_in"], counts["rows_standardised"], counts["rows_rejected"]
    if rows_in != std_rows + rejected:
        raise ReconciliationError(
            f"source {source_name}: reconciliation failed: {rows_in} rows in, but {std_rows} standardised "
            f"+ {rejected} rejected = {std_rows + rejected}; nothing of this run is loaded")


KEY_ELEMENT = "source_record_id"


@dataclass
class KeyFaults:
    """The rows of a source whose record key is at fault, found over the whole source: their
    positions in the source (ascending) with reason, note and quarantine id. Few rows: the
    others keep their key as quarantine id."""

    pos: np.ndarray      # int64
    reason: np.ndarray   # object: missing_key | undecodable | duplicate_key
    note: np.ndarray     # object: None or why a duplicate's copy was rejected
    ids: np.ndarray      # object: the row's quarantine id

    def rows(self, first_row: int, record_ids: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
        """(reason, note, quarantine id) of the rows first_row .. first_row + len(record_ids) - 1."""
        index, n = record_ids.index, len(record_ids)
        lo, hi = np.searchsorted(self.pos, [first_row, first_row + n])
        at = self.pos[lo:hi] - first_row
        reason = np.full(n, None, dtype=object)
        note = np.full(n, None, dtype=object)
        ids = record_ids.to_numpy(dtype=object, na_value=None).copy()
        reason[at], note[at], ids[at] = self.reason[lo:hi], self.note[lo:hi], self.ids[lo:hi]
        return (pd.Series(strings(reason), index=index), pd.Series(strings(note), index=index),
                pd.Series(strings(ids), index=index))


def key_columns(source: SourceConfig, columns: list[str]) -> list[str]:
    """The raw columns whose values tell two copies of a key apart: the mapped ones but the key."""
    return [c for c in dict.fromkeys(source.columns) if c != source.primary_key and c in columns]


def _key_faults(raw: pd.DataFrame, record_ids: pd.Series, source: SourceConfig) -> KeyFaults:
    """find_key_faults over a frame holding the whole source."""
    data = key_columns(source, list(raw.columns))

    def contents(pos: np.ndarray) -> np.ndarray:
        return content_hashes(raw.iloc[pos][data]) if data else np.zeros(len(pos), dtype=np.uint64)

    def row_hashes(pos: np.ndarray) -> np.ndarray:
        if "_row_hash" in raw.columns:
            return raw["_row_hash"].astype(str).to_numpy()[pos]
        return np.char.mod("%016x", content_hashes(raw.iloc[pos]))

    return find_key_faults(arrow_text(record_ids), contents, row_hashes)


def find_key_faults(keys: pa.Array, contents: Callable[[np.ndarray], np.ndarray],
                    row_hashes: Callable[[np.ndarray], np.ndarray]) -> KeyFaults:
    """The key faults of a whole source from its canonical keys (every row, in order): `missing_key`
    (NULL, empty, blank or a null token), `undecodable` (bytes that were not UTF-8) or
    `duplicate_key`. Only for the rows at fault are more values asked for: `contents(positions)`
    hashes a duplicate's mapped values (key_columns), `row_hashes(positions)` gives a keyless
    row's `_row_hash` (or a hash of all its values).

    Duplicates: copies of a key whose mapped values are all equal are one record delivered
    twice: the first is kept, the other copies are rejected. Copies that disagree are all
    rejected: which one is right cannot be told from the data, and keeping "the first" would
    make the record depend on the order the department returns rows (a rerun could load the
    other copy). The steward sees every copy in quarantine.

    Quarantine needs one distinct source_record_id per rejected row (rows in = loaded +
    distinct rejected ids): a rejected copy is `<key>#<n>` (n = its copy number, in order of
    content, so the same data gives the same ids), a row without a usable key
    `(missing key)#<row hash>` (`#<n>` appended for identical rows)."""
    text = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    n = len(text)
    missing = ~text.is_valid().to_numpy(zero_copy_only=False)
    short = ~missing & (_byte_lengths(text) <= _NULL_TOKEN_BYTES)
    if short.any():
        sub = pc.utf8_upper(pc.filter(text, pa.array(short)))
        missing[short] = pc.fill_null(pc.is_in(sub, pa.array(NULL_TOKENS)), False).to_numpy(zero_copy_only=False)
    undecodable = ~missing & pc.fill_null(pc.match_substring(text, REPLACEMENT), False).to_numpy(zero_copy_only=False)
    usable = ~missing & ~undecodable
    dup = np.zeros(n, dtype=bool)
    if usable.any():  # one hash pass in Arrow
        codes = pc.fill_null(pc.dictionary_encode(text).indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        counts = np.bincount(codes[usable])
        dup = usable & (counts[np.where(usable, codes, 0)] > 1)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    if dup.any():
        where = np.flatnonzero(dup)
        copies = pd.DataFrame({"key": text.filter(pa.array(dup)).to_numpy(zero_copy_only=False).astype(object),
                               "content": contents(where), "pos": where})
        copies = copies.sort_values(["key", "content", "pos"], kind="stable")
        copies["n"] = copies.groupby("key", sort=False).cumcount() + 1
        conflicting = copies.groupby("key", sort=False)["content"].transform("nunique") > 1
        reject = conflicting | (copies["n"] > 1)
        hit = copies.loc[reject]
        parts.append((hit["pos"].to_numpy(), np.full(len(hit), "duplicate_key", dtype=object),
                      np.where(conflicting[reject], "copies disagree: every copy rejected",
                               "identical copy: the first one kept").astype(object),
                      (hit["key"].astype(str) + "#" + hit["n"].astype(str)).to_numpy(dtype=object)))
    bad = missing | undecodable
    if bad.any():
        where = np.flatnonzero(bad)
        hashes = np.asarray(row_hashes(where)).astype(object)
        label = np.where(missing[where], "(missing key)#", "(undecodable key)#").astype(object) + hashes
        nth = pd.Series(label).groupby(label).cumcount().to_numpy() + 1
        parts.append((where, np.where(missing[where], "missing_key", "undecodable").astype(object),
                      np.full(len(where), None, dtype=object),
                      np.where(nth > 1, label + "#" + nth.astype(str).astype(object), label)))
    if not parts:
        empty = np.zeros(0, dtype=object)
        return KeyFaults(np.zeros(0, dtype=np.int64), empty, empty, empty)
    pos, reason, note, ids = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(pos, kind="stable")
    return KeyFaults(pos[order].astype(np.int64), reason[order], note[order], ids[order])


def content_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row over its values as text (NULL distinct from ''): a row's hash
    depends on its own values only, so a source hashed chunk by chunk gives the same hashes."""
    text = frame.astype(object).where(frame.notna(), "\x00NULL").astype(str)
    return pd.util.hash_pandas_object(text, index=False).to_numpy()


def _derive(cols: dict[str, pd.Series], outcomes: dict[str, Outcome], column_of: dict[str, str],
            raw: pd.DataFrame, kind: str, standards: Standards) -> None:
    """region_code from the ID number (persons) or USCC / tax_no / reg_no (enterprises),
    else from the address; org_code given, else from uscc, else from tax_no."""
    if "region_code" not in column_of and kind in ("person", "enterprise"):
        region = _na_strings(raw.index)
        for element in ("id_number", "uscc", "tax_no", "reg_no"):
            if element in outcomes and "region_code" in outcomes[element].derived:
                region = coalesce(region, outcomes[element].derived["region_code"])
        if "address" in cols:
            todo = region.isna() & cols["address"].notna()
            if todo.any():
                region = coalesce(region, codes.address_region(cols["address"][todo], standards.regions))
        cols["region_code"] = region.astype(STRING)
    if kind == "enterprise":
        org = cols.get("org_code", _na_strings(raw.index))
        for element in ("uscc", "tax_no"):
            if element in outcomes and "org_code" in outcomes[element].derived:
                org = coalesce(org, outcomes[element].derived["org_code"])
        cols["org_code"] = org.astype(STRING)


def _rejections(std: pd.DataFrame, outcomes: dict[str, Outcome], known: dict[str, Element],
                column_of: dict[str, str], produced: set[str], kind: str, standards: Standards,
                source: SourceConfig, key_reason: pd.Series | None = None) -> tuple[pd.Series, pd.Series]:
    """(reason, element) per row that is rejected; NA where the row stays. A key fault
    (missing_key, duplicate_key, undecodable key) comes first."""
    index = std.index
    reason = _na_strings(index) if key_reason is None else key_reason.astype(STRING)
    which = label_where(reason.notna().to_numpy(), KEY_ELEMENT, index)
    required = [name for name, el in known.items() if el.required]
    for name in required:
        if name not in column_of:
            raise NormaliseConfigError(f"{_where(source)}: required element {name!r} is not mapped")
        missing = std[name].isna() & reason.isna()
        if missing.any():
            why = outcomes[name].reason.fillna("missing_required") if name in outcomes else "missing_required"
            reason = reason.mask(missing, why)
            which = which.mask(missing, name)
    for group in _row_rule_groups(standards, kind):
        present = [g for g in group if g in std.columns]
        if not any(g in produced for g in group):
            raise NormaliseConfigError(
                f"{_where(source)}: none of the elements {group} (row rule required_one_of) is mapped")
        missing = std[present].isna().all(axis=1) & reason.isna()
        if missing.any():
            # the group's own value faults (invalid_name, too_long, undecodable...) say why it is empty
            why = coalesce(*[outcomes[g].reason for g in group if g in outcomes], _na_strings(index)) \
                if any(g in outcomes for g in group) else _na_strings(index)
            reason = reason.mask(missing, why.fillna("missing_required"))
            which = which.mask(missing, "|".join(group))
    return reason, which


def _counts(raw: pd.DataFrame, std: pd.DataFrame, quarantine: pd.DataFrame,
            outcomes: dict[str, Outcome], cols: dict[str, pd.Series]) -> dict[str, Any]:
    rejected = int(quarantine.loc[quarantine["row_rejected"], "source_record_id"].nunique())
    status = {name[: -len("_status")]: cols[name].value_counts().to_dict()
              for name in cols if name.endswith("_status")}
    return {
        "rows_in": len(raw),
        "rows_standardised": len(std),
        "rows_rejected": rejected,
        "values_quarantined": int((~quarantine["row_rejected"]).sum()),
        "reasons": quarantine["reason_code"].value_counts().to_dict(),
        "identifier_status": {k: {str(s): int(n) for s, n in v.items()} for k, v in status.items()},
    }
