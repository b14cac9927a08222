"""Element handlers: one per element type of standards/elements.yaml (HANDLERS), each turning
a raw column into its standard columns plus a reason code where a value was rejected
(Outcome). normalise_source (transforms/normalise.py) picks them by element."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.standards.model import Element, Standards
from govdata.transforms import codes, dates, enterprise_codes, enterprise_names, identifiers, mojibake, names
from govdata.transforms.unique import (STRING, arrow_text, coalesce, label_where, nfkc, null_strings,
                                       per_unique, strings)

DATE = pd.ArrowDtype(pa.date32())
TIMESTAMP = np.dtype("datetime64[us]")
LOCAL_TZ = "Asia/Shanghai"  # naive timestamps in std are Beijing time
# A value naming an organisation rather than a person (applicant_name / holder_name).
_ORGANISATION_RE = r"(?:公司|企业|合作社|集团|中心|事务所|工作室|厂|店|行|社|局|院|所|会|部|委员会|\(|（)"


class NormaliseConfigError(ValueError):
    """The stage was given input it cannot work with (mapping vs raw frame vs standards)."""


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
    fixed, repaired = mojibake.repair_mojibake(values, address=element.type == "address")
    return (fixed, repaired) if repaired.any() else (values, None)


def _name(values: pd.Series, ctx: Context) -> Outcome:
    el = ctx.element.name
    none = _na_strings(values.index)
    if ctx.kind == "enterprise" and el == "name":
        r = enterprise_names.normalise_enterprise_names(values, _region_names(ctx.standards))
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
            value = value.where(~org, enterprise_names.normalise_enterprise_names(values[org], [])["name"])
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
    "uscc": _identifier(enterprise_codes.normalise_uscc, "invalid_uscc", with_status=True),
    "org_code": _identifier(enterprise_codes.normalise_org_code, "invalid_org_code", with_status=False),
    "reg_no": _identifier(enterprise_codes.normalise_reg_no, "invalid_reg_no", with_status=False),
    "tax_no": _identifier(enterprise_codes.normalise_tax_no, "invalid_tax_no", with_status=False),
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
