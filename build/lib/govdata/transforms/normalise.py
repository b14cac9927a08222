"""Normalise one source: raw department columns -> standard elements + quarantine.

Input and output follow docs/CONTRACTS.md ("Raw", "Standardised", "Quarantine"). Each
mapped column is normalised by the handler for its element's `type` in standards/
(HANDLERS below); code elements pick their normaliser by code table (CODE_NORMALISERS).
Invalid values are NULLed and quarantined (row_rejected False); a row missing a required
element, or every element of a row_rules.yaml required_one_of group, is rejected (one
quarantine entry, row_rejected True). Raw identifiers never reach a message: quarantine
holds mask_value'd values and messages name source, table, column and reason codes only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.standards.model import Element, SourceConfig, Standards
from govdata.transforms import codes, dates, identifiers, names
from govdata.transforms.privacy import mask_value
from govdata.transforms.unique import (STRING, any_byte, arrow_text, coalesce, label_where, nfkc, null_strings,
                               per_unique, strings)

COMMON_COLUMNS = ["source_system", "source_record_id", "kind"]
QUARANTINE_COLUMNS = ["source_system", "source_record_id", "element", "reason_code", "masked_value",
                      "row_rejected", "message"]
DATE = pd.ArrowDtype(pa.date32())
TIMESTAMP = np.dtype("datetime64[us]")
LOCAL_TZ = "Asia/Shanghai"  # naive timestamps in std are Beijing time
# A value naming an organisation rather than a person (applicant_name / holder_name).
_ORGANISATION_RE = r"(?:公司|企业|合作社|集团|中心|事务所|工作室|厂|店|行|社|局|院|所|会|部|委员会|\(|（)"


class NormaliseConfigError(ValueError):
    """The stage was given input it cannot work with (mapping vs raw frame vs standards)."""


class ReconciliationError(RuntimeError):
    """rows in != rows standardised + rows rejected for a source: a data gate of the run."""


# ---------------------------------------------------------------- row-level fault isolation
# How departments spell "no value": the whole (trimmed, upper-cased) value is one of these.
NULL_TOKENS = ("NULL", "(NULL)", "<NULL>", "NONE", "NIL", "NAN", "N/A", "#N/A", "\\N", "-", "--", "—", "/",
               "无", "空", "暂无")
_NULL_TOKEN_BYTES = max(len(t.encode()) for t in NULL_TOKENS)
_NULL_SPELLINGS = pa.array(sorted({v for t in NULL_TOKENS for v in (t, t.lower(), t.title())}))
# ANSI escape sequences (CSI ... final byte, or ESC + one byte), C0 controls but tab / newline /
# carriage return (whitespace, trimmed by the normalisers), DEL, C1 controls, zero-width
# characters, BOMs and bidi overrides: never data, stripped before a value is normalised.
CONTROL_RE = (r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]?|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}]"
              r"|[\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2060}-\x{2069}\x{feff}]")
# UTF-8 bytes a hostile value needs: C0 / DEL, and the lead bytes of C1 (C2), U+2000..U+2FFF
# (E2) and U+F000..U+FFFF (EF: BOM, U+FFFD). Only strings holding one are looked at closer.
_SCREEN_BYTES = np.zeros(256, dtype=bool)
_SCREEN_BYTES[[*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, 0xE2, 0xEF]] = True
REPLACEMENT = "\ufffd"   # extract's mark for bytes that were not UTF-8
MASKED_MAX = 64           # quarantine keeps at most this many characters of a masked value


@dataclass
class Screened:
    """A raw column after screening: the text its normaliser gets, and why values were taken out."""

    text: pd.Series       # control characters stripped; NULL where undecodable / too long / a null token
    cleaned: pd.Series    # control characters stripped, nothing NULLed (what quarantine masks)
    nulled: pd.Series     # `undecodable` / `too_long` where the value was taken out, else NA
    stripped: pd.Series   # `control_characters` where characters were stripped, else NA


def screen_values(values: pd.Series, max_length: int | None = None) -> Screened:
    """Any raw strings -> Screened. Vectorised in Arrow: only strings holding a suspicious byte
    (or longer than max_length bytes) are looked at closer."""
    index = values.index
    text = arrow_text(values)
    n = len(text)
    suspicious = any_byte(text, _SCREEN_BYTES) if n else np.zeros(0, dtype=bool)
    undecodable = np.zeros(n, dtype=bool)
    control = np.zeros(n, dtype=bool)
    if suspicious.any():
        mask = pa.array(suspicious)
        sub = pc.filter(text, mask)
        undecodable[suspicious] = pc.fill_null(pc.match_substring(sub, REPLACEMENT), False).to_numpy(zero_copy_only=False)
        has_control = pc.fill_null(pc.match_substring_regex(sub, CONTROL_RE), False)
        control[suspicious] = has_control.to_numpy(zero_copy_only=False)
        text = pc.replace_with_mask(text, mask, pc.replace_substring_regex(sub, CONTROL_RE, ""))
    byte_length = _byte_lengths(text)
    too_long = np.zeros(n, dtype=bool)
    if max_length is not None:
        long_ = byte_length > max_length  # a string has at least as many bytes as characters
        if long_.any():
            sub = pc.utf8_trim_whitespace(pc.filter(text, pa.array(long_)))
            too_long[long_] = pc.greater(pc.utf8_length(sub), max_length).to_numpy(zero_copy_only=False)
    null_token = _null_tokens(text, byte_length)
    out = undecodable | too_long | null_token
    cleaned = strings(text)
    kept = pc.if_else(pa.array(out), pa.scalar(None, pa.string()), text) if out.any() else text
    nulled = pc.if_else(pa.array(undecodable), pa.scalar("undecodable"),
                        pc.if_else(pa.array(too_long), pa.scalar("too_long"), pa.scalar(None, pa.string())))
    stripped = label_where(control & ~undecodable & ~too_long, "control_characters", index)
    return Screened(pd.Series(strings(kept), index=index), pd.Series(cleaned, index=index),
                    pd.Series(strings(nulled), index=index), stripped)


def _null_tokens(text: pa.Array, byte_length: np.ndarray) -> np.ndarray:
    """Values that are a NULL_TOKENS spelling, also padded or in any letter case. An exact
    spelling is one hash lookup; only short padded or odd-case values are trimmed and upper-cased."""
    out = pc.fill_null(pc.is_in(text, _NULL_SPELLINGS), False).to_numpy(zero_copy_only=False)
    offsets, data = _offsets(text)
    if not len(data):
        return out
    starts, ends = offsets[:-1], offsets[1:]
    nonempty = ends > starts
    first = np.where(nonempty, data[np.minimum(starts, len(data) - 1)], 0)
    last = np.where(nonempty, data[np.maximum(ends - 1, 0)], 0)
    padded = np.isin(first, _PAD_BYTES) | np.isin(last, _PAD_BYTES) | (
        np.isin(first, _TOKEN_LETTERS) & ~out)  # 'nULL' and the like
    look = padded & nonempty & (byte_length <= _NULL_TOKEN_BYTES + 16)
    if look.any():
        sub = pc.utf8_upper(pc.utf8_trim_whitespace(pc.filter(text, pa.array(look))))
        out[look] = pc.fill_null(pc.is_in(sub, pa.array(NULL_TOKENS)), False).to_numpy(zero_copy_only=False)
    return out


_PAD_BYTES = np.array([0x09, 0x0A, 0x0D, 0x20, 0xE3], dtype=np.uint8)   # E3: U+3000 ideographic space
_TOKEN_LETTERS = np.frombuffer(b"nN", dtype=np.uint8)


def _offsets(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not len(text):
        return np.zeros(1, dtype=np.int32), np.zeros(0, dtype=np.uint8)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = text.buffers()[2]
    return offsets, (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8))


def _byte_lengths(text: pa.Array) -> np.ndarray:
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not len(text):
        return np.zeros(0, dtype=np.int64)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    return np.diff(offsets).astype(np.int64)


def canonical_keys(keys: pa.Array) -> pa.Array:
    """Primary-key values as canonical text: NFKC (full-width digits), control and invisible
    characters removed, surrounding whitespace trimmed, empty -> NULL. ' 42 ' and '42' are one
    key, so a padded copy is seen as the duplicate it is instead of loading as a second record."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    text = nfkc(keys.cast(pa.string()))
    suspicious = any_byte(text, _SCREEN_BYTES) if len(text) else np.zeros(0, dtype=bool)
    if suspicious.any():
        mask = pa.array(suspicious)
        text = pc.replace_with_mask(text, mask, pc.replace_substring_regex(pc.filter(text, mask), CONTROL_RE, ""))
    text = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)


@dataclass
class NormaliseResult:
    standardised: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, Any]


@dataclass
class Outcome:
    """One element's normalised columns, plus why values were rejected."""

    columns: dict[str, pd.Series]                 # std column -> values (first one is the element)
    reason: pd.Series                             # reason code where the value was rejected, else NA
    note: pd.Series | None = None                 # finer detail for the message (e.g. bad_check_digit)
    derived: dict[str, pd.Series] = field(default_factory=dict)  # region_code / org_code implied


@dataclass(frozen=True)
class Context:
    element: Element
    options: dict[str, Any]
    standards: Standards
    kind: str


Handler = Callable[[pd.Series, Context], Outcome]


# ---------------------------------------------------------------- helpers
def _na_strings(index: pd.Index) -> pd.Series:
    return null_strings(index)


def _repeat(value: str, n: int) -> pd.api.extensions.ExtensionArray:
    """value n times as string[pyarrow] (built in Arrow: a Python list of n strings is slow)."""
    return strings(pa.repeat(pa.scalar(value, pa.string()), n))


def _reason_where(invalid: pd.Series, code: str) -> pd.Series:
    """code where invalid, NA elsewhere (string[pyarrow])."""
    return label_where(invalid.to_numpy(dtype=bool, na_value=False), code, invalid.index)


def _is(status: pd.Series, value: str) -> pd.Series:
    return status.eq(value).fillna(False).astype(bool)


def _apply_code_override(values: pd.Series, options: dict[str, Any]) -> pd.Series:
    """overrides.<element>.codes: source value -> standard code, applied before lookup."""
    mapping = options.get("codes")
    if not mapping:
        return values
    text = values.astype(STRING)
    mapped = text.map({str(k): str(v) for k, v in mapping.items()}, na_action="ignore")
    return mapped.astype(STRING).fillna(text)


# ---------------------------------------------------------------- handlers by element type
def _identifier(normaliser: Callable[[pd.Series], pd.DataFrame], reason: str, with_status: bool) -> Handler:
    def handle(values: pd.Series, ctx: Context) -> Outcome:
        r = normaliser(values)
        name = ctx.element.name
        cols = {name: r["value"]}
        if with_status:
            cols[f"{name}_status"] = r["status"]
            cols[f"{name}_note"] = r["note"]
        derived = {k: r[k] for k in ("region_code", "org_code") if k in r.columns}
        return Outcome(cols, _reason_where(_is(r["status"], "invalid"), reason), r["note"], derived)
    return handle


def _id_number(values: pd.Series, ctx: Context) -> Outcome:
    """Citizen ID numbers (and the numbers built on GB 11643); for the person element id_number
    checked against its document type: options['id_type'] is the row's normalised id_type
    (Series, set by normalise_source when the source maps id_type) or one code for the whole
    column (overrides: {id_number: {id_type: '414'}}). Reasons: invalid_id_number,
    invalid_document_number (a number not in its document's format), excel_damaged."""
    name = ctx.element.name
    types = ctx.options.get("id_type")
    if types is not None and not isinstance(types, pd.Series):
        code = codes.normalise_id_document_type(pd.Series([str(types)]), _code_table(ctx, "id_document_type"),
                                                ctx.standards.code_tables.get("id_document_type_alias"))
        if code["status"].iloc[0] != "valid":
            raise NormaliseConfigError(f"element {ctx.kind}.{name}: override id_type {types!r} is not a code "
                                       "of standards/codes/id_document_type.csv")
        types = pd.Series(code["value"].iloc[0], index=values.index, dtype=STRING)
    r = identifiers.normalise_identity_document(values, types)
    cols = {name: r["value"], f"{name}_status": r["status"], f"{name}_note": r["note"]}
    if types is not None:
        cols["doc_number"] = r["doc_number"]
    invalid = _is(r["status"], "invalid")
    note = r["note"].fillna("")
    excel = invalid & note.str.contains("excel_", regex=False).astype(bool)
    document = invalid & note.str.contains("bad_document_format", regex=False).astype(bool)
    reason = coalesce(_reason_where(excel, "excel_damaged"), _reason_where(document, "invalid_document_number"),
                      _reason_where(invalid, "invalid_id_number"))
    return Outcome(cols, reason, r["note"], {"region_code": r["region_code"]})


def _date_handler(parser: Callable[..., pd.DataFrame], dtype: Any) -> Handler:
    def handle(values: pd.Series, ctx: Context) -> Outcome:
        fmt = ctx.options.get("format") or ctx.options.get("fmt")
        r = parser(values, dayfirst=bool(ctx.options.get("dayfirst", False)), fmt=fmt)
        value = r["value"]
        tz = ctx.options.get("timezone")
        if tz and dtype is TIMESTAMP and tz != LOCAL_TZ:
            # department clock in another zone: store Beijing time like every other source
            local = value.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
            value = local.dt.tz_convert(LOCAL_TZ).dt.tz_localize(None)
        if dtype is DATE:
            days = value.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
            value = pd.Series(pd.array(pa.array(days, from_pandas=True), dtype=DATE), index=values.index)
        else:
            value = value.astype(dtype)
        invalid = _is(r["status"], "invalid")
        reason = r["note"].where(invalid, pd.NA).astype(STRING)
        return Outcome({ctx.element.name: value}, reason, r["note"])
    return handle


def _phone(values: pd.Series, ctx: Context) -> Outcome:
    r = codes.normalise_phone(values)
    reason = _reason_where(_is(r["status"], "invalid"), "invalid_phone")
    return Outcome({ctx.element.name: r["value"]}, reason, r["note"])


def _code_table(ctx: Context, name: str | None = None) -> pd.DataFrame:
    table = name or ctx.element.code_table
    if table is None or table not in ctx.standards.code_tables:
        raise NormaliseConfigError(
            f"element {ctx.kind}.{ctx.element.name}: code table {table!r} not found in standards/codes")
    return ctx.standards.code_table(table)


def _ethnicity(values: pd.Series, ctx: Context) -> pd.DataFrame:
    aliases = ctx.standards.code_tables.get("ethnicity_alias")
    return codes.normalise_ethnicity(values, _code_table(ctx, "ethnicity"), aliases)


# code table -> normaliser: sex and ethnicity come in many spellings (their alias tables).
CODE_NORMALISERS: dict[str, Callable[[pd.Series, Context], pd.DataFrame]] = {
    "sex": lambda values, ctx: codes.normalise_sex(values, _code_table(ctx, "sex_alias")),
    "ethnicity": _ethnicity,
    "industry": lambda values, ctx: codes.normalise_industry(values, _code_table(ctx, "industry")),
    "id_document_type": lambda values, ctx: codes.normalise_id_document_type(
        values, _code_table(ctx, "id_document_type"), ctx.standards.code_tables.get("id_document_type_alias")),
}


def _code(values: pd.Series, ctx: Context) -> Outcome:
    values = _apply_code_override(values, ctx.options)
    special = CODE_NORMALISERS.get(ctx.element.code_table or "")
    if special:
        r = special(values, ctx)
    else:
        r = codes.normalise_code(values, _code_table(ctx))
    return Outcome({ctx.element.name: r["value"]}, _reason_where(_is(r["status"], "invalid"), "unknown_code"))


def _integer_uniques(uniques: np.ndarray) -> pd.DataFrame:
    text = pc.utf8_trim_whitespace(nfkc(pa.array(uniques, type=pa.string(), from_pandas=True)))
    ok = pc.fill_null(pc.match_substring_regex(text, r"^[+-]?[0-9]{1,18}(\.0*)?$"), False)
    empty = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True)
    digits = pc.replace_substring_regex(pc.if_else(ok, text, pa.scalar(None, pa.string())), r"\.0*$", "")
    value = pd.array(pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False), dtype="Int64") \
        if len(digits) else pd.array([], dtype="Int64")
    value[~ok.to_numpy(zero_copy_only=False)] = pd.NA
    invalid = ~ok.to_numpy(zero_copy_only=False) & ~empty.to_numpy(zero_copy_only=False)
    return pd.DataFrame({"value": value, "invalid": invalid})


def _integer(values: pd.Series, ctx: Context) -> Outcome:
    """Integers as Int64; REAL-stored whole numbers ('4.0') accepted. Outside the element's
    minimum..maximum (standards/elements.yaml) the value is NULLed as out_of_range, so a
    warehouse CHECK constraint never sees it."""
    r = per_unique(values, _integer_uniques)
    value = r["value"]
    reason = _reason_where(r["invalid"], "not_integer")
    low, high = ctx.element.minimum, ctx.element.maximum
    if low is not None or high is not None:
        outside = pd.Series(False, index=values.index)
        if low is not None:
            outside |= (value < low).fillna(False).astype(bool)
        if high is not None:
            outside |= (value > high).fillna(False).astype(bool)
        if outside.any():
            value = value.mask(outside, pd.NA)
            reason = coalesce(reason, _reason_where(outside, "out_of_range"))
    return Outcome({ctx.element.name: value}, reason)


def _text_uniques(uniques: np.ndarray) -> pd.DataFrame:
    text = pc.utf8_trim_whitespace(nfkc(pa.array(uniques, type=pa.string(), from_pandas=True)))
    text = pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)
    return pd.DataFrame({"value": strings(text)})


def _string(values: pd.Series, ctx: Context) -> Outcome:
    value = per_unique(values, _text_uniques)["value"]
    pattern = ctx.element.pattern
    if not pattern:
        return Outcome({ctx.element.name: value}, _na_strings(values.index))
    ok = pd.Series(pc.fill_null(pc.match_substring_regex(pa.array(value.array), pattern), True)
                   .to_numpy(zero_copy_only=False), index=values.index)
    return Outcome({ctx.element.name: value.where(ok, pd.NA)}, _reason_where(~ok, "pattern_mismatch"))


def _address(values: pd.Series, ctx: Context) -> Outcome:
    return Outcome({ctx.element.name: codes.normalise_address(values)}, _na_strings(values.index))


def _region_names(standards: Standards) -> list[str]:
    regions = standards.regions
    return regions.loc[regions["status"] == "current", "name"].tolist()


MOJIBAKE_TYPES = ("name", "person_name", "enterprise_name", "address")


def _repair_mojibake(values: pd.Series, element: Element) -> tuple[pd.Series, pd.Series | None]:
    """Names and addresses (the elements holding Chinese text): GBK bytes a legacy system read
    as Latin-1 / Windows-1252 / UTF-8 are repaired before screening (which would strip the C1
    controls such a reading produces) and before the invalid_name rule; (values, repaired flag)."""
    if element.type not in MOJIBAKE_TYPES:
        return values, None
    fixed, repaired = names.repair_mojibake(values, address=element.type == "address")
    return (fixed, repaired) if repaired.any() else (values, None)


def _name(values: pd.Series, ctx: Context) -> Outcome:
    el = ctx.element.name
    none = _na_strings(values.index)
    if ctx.kind == "enterprise" and el == "name":
        r = names.normalise_enterprise_names(values, _region_names(ctx.standards))
        return Outcome({"name": r["name"], "name_core": r["name_core"], "name_region": r["name_region"]}, none)
    people = names.normalise_person_names(values)
    if el in ("name", "name_latin", "name_pinyin", "legal_rep_name") and ctx.kind in ("person", "enterprise"):
        # A person's name is letters, marks and the middle dot (PERSON_NAME_RE): digits, emoji,
        # punctuation or SQL in it mean the column holds something else (an ID or phone
        # number would otherwise reach dim_person.name unmasked).
        bad = _invalid_person_name(people["name"])
        if bad.any():
            people = people.mask(pd.DataFrame({c: bad for c in people.columns}), pd.NA)
            none = _reason_where(bad, "invalid_name")
    if ctx.kind == "person" and el in ("name", "name_latin", "name_pinyin"):
        return Outcome({"name": people["name"], "name_latin": people["name_latin"],
                        "name_pinyin": people["name_pinyin"]}, none)
    # legal_rep_name, applicant_name, holder_name: the Chinese name, else the latin one;
    # applicant/holder names may be organisations, which keep their brackets and spaces.
    value = coalesce(people["name"], people["name_latin"])
    if el != "legal_rep_name":
        org = values.astype(STRING).str.contains(_ORGANISATION_RE, regex=True).fillna(False).astype(bool)
        if org.any():
            value = value.where(~org, names.normalise_enterprise_names(values[org], [])["name"])
    return Outcome({el: value.astype(STRING)}, none)


# Han, the scripts of China's minority languages, basic latin letters (mixed names), marks and the
# middle dot. Greek, Cyrillic or extended latin in a Chinese name field is mojibake: GBK bytes read
# as UTF-8 ("张" -> "Τƽ"-like pairs) decode without error and would otherwise pass.
# Exception: a Chinese name with a rare character typed as a placeholder (王*) or as its pinyin
# (王hong) is kept (names.RARE_NAME_RE2); latin-only names never reach this rule (name is NULL).
PERSON_NAME_RE = r"^[\p{Han}\p{Tibetan}\p{Arabic}\p{Mongolian}\p{Yi}A-Za-z\p{M}·]+$"


def _invalid_person_name(name: pd.Series) -> pd.Series:
    text = arrow_text(name)
    ok = pc.fill_null(pc.or_(pc.match_substring_regex(text, PERSON_NAME_RE),
                             pc.match_substring_regex(text, names.RARE_NAME_RE2)), True).to_numpy(zero_copy_only=False)
    return pd.Series(~ok, index=name.index)


HANDLERS: dict[str, Handler] = {
    "id_number": _id_number,
    "uscc": _identifier(identifiers.normalise_uscc, "invalid_uscc", with_status=True),
    "org_code": _identifier(identifiers.normalise_org_code, "invalid_org_code", with_status=False),
    "reg_no": _identifier(identifiers.normalise_reg_no, "invalid_reg_no", with_status=False),
    "tax_no": _identifier(identifiers.normalise_tax_no, "invalid_tax_no", with_status=False),
    "date": _date_handler(dates.parse_dates, DATE),
    "timestamp": _date_handler(dates.parse_timestamps, TIMESTAMP),
    "phone": _phone,
    "code": _code,
    "integer": _integer,
    "string": _string,
    "address": _address,
    "name": _name,
}
# Names used for the same types elsewhere (the brief's vocabulary).
HANDLERS.update({"person_name": _name, "enterprise_name": _name, "sex": _code, "ethnicity": _code})


def _name_part(values: pd.Series, ctx: Context) -> Outcome:
    """name_latin / name_pinyin mapped on their own: 'Zhang San' -> ZHANG SAN / zhangsan."""
    people = names.normalise_person_names(values)
    return Outcome({ctx.element.name: people[ctx.element.name]}, _na_strings(values.index))


def _handler(element: Element, kind: str) -> Handler:
    if kind == "person" and element.name in ("name_latin", "name_pinyin"):
        return _name_part
    return HANDLERS[element.type]


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


def normalise_source(raw: pd.DataFrame, source: SourceConfig, standards: Standards) -> NormaliseResult:
    """Raw frame of one source (strings + _source_record_id, _row_hash) -> standardised rows,
    quarantine entries and counts. len(raw) == len(std) + rejected rows."""
    known = _check_config(raw, source, standards)
    kind = source.kind
    index = raw.index
    record_ids = pd.Series(strings(canonical_keys(arrow_text(raw["_source_record_id"]))), index=index)
    key_reason, key_note, quarantine_ids = _key_faults(raw, record_ids, source)
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


def _key_faults(raw: pd.DataFrame, record_ids: pd.Series,
                source: SourceConfig) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(reason, note, quarantine id) per row: `missing_key` (NULL, empty, blank or a null token),
    `undecodable` (bytes that were not UTF-8) or `duplicate_key`.

    Duplicates: copies of a key whose mapped values are all equal are one record delivered
    twice: the first is kept, the other copies are rejected. Copies that disagree are all
    rejected: which one is right cannot be told from the data, and keeping "the first" would
    make the record depend on the order the department returns rows (a rerun could load the
    other copy). The steward sees every copy in quarantine.

    Quarantine needs one distinct source_record_id per rejected row (rows in = loaded +
    distinct rejected ids): a rejected copy is `<key>#<n>` (n = its copy number, in order of
    content, so the same data gives the same ids), a row without a usable key
    `(missing key)#<row hash>` (`#<n>` appended for identical rows)."""
    index = raw.index
    n = len(raw)
    text = arrow_text(record_ids)
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
    reason = np.full(n, None, dtype=object)
    note = np.full(n, None, dtype=object)
    ids = record_ids.to_numpy(dtype=object, na_value=None).copy()
    if dup.any():
        data = [c for c in dict.fromkeys(source.columns) if c != source.primary_key and c in raw.columns]
        content = _content_hash(raw.loc[dup, data]) if data else np.zeros(int(dup.sum()), dtype=np.uint64)
        copies = pd.DataFrame({"key": record_ids[dup].to_numpy(dtype=object), "content": content,
                               "pos": np.flatnonzero(dup)})
        copies = copies.sort_values(["key", "content", "pos"], kind="stable")
        copies["n"] = copies.groupby("key", sort=False).cumcount() + 1
        conflicting = copies.groupby("key", sort=False)["content"].transform("nunique") > 1
        reject = conflicting | (copies["n"] > 1)
        hit = copies.loc[reject]
        reason[hit["pos"].to_numpy()] = "duplicate_key"
        note[hit["pos"].to_numpy()] = np.where(conflicting[reject], "copies disagree: every copy rejected",
                                               "identical copy: the first one kept")
        ids[hit["pos"].to_numpy()] = (hit["key"].astype(str) + "#" + hit["n"].astype(str)).to_numpy()
    bad = missing | undecodable
    if bad.any():
        reason[missing] = "missing_key"
        reason[undecodable] = "undecodable"
        hashes = raw["_row_hash"].astype(str).to_numpy()[bad] if "_row_hash" in raw.columns else \
            np.char.mod("%016x", _content_hash(raw.loc[bad]))
        label = np.where(missing[bad], "(missing key)#", "(undecodable key)#").astype(object) + hashes.astype(object)
        nth = pd.Series(label).groupby(label).cumcount().to_numpy() + 1
        ids[bad] = np.where(nth > 1, label + "#" + nth.astype(str).astype(object), label)
    return (pd.Series(strings(reason), index=index), pd.Series(strings(note), index=index),
            pd.Series(strings(ids), index=index))


def _content_hash(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row over its values as text (NULL distinct from '')."""
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
