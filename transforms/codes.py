"""Code values onto national code tables, phone numbers, addresses and the region an
address names. Code tables come in as DataFrames (standards/codes/*.csv, string columns);
nothing here reads files.

Status: valid | invalid | missing; note 'unknown_code' (or the phone reason) on invalid.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.names import simplify_arrow, to_simplified
from govdata.transforms.unique import ASCII_SPACE, _offsets_data, any_byte, as_text, join_notes, nfkc, per_unique, strings


def _key(value: str) -> str:
    """Lookup key: NFKC (full-width -> half-width), no surrounding or inner spaces, casefolded."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).casefold()


def _lookup_uniques(uniques: np.ndarray, lookup: dict[str, str], pad_to: int | None) -> pd.DataFrame:
    values, status = [], []
    for v in uniques:
        key = None if v is None or v is pd.NA else _key(str(v))
        if not key:
            values.append(None), status.append("missing")
            continue
        code = lookup.get(key)
        if code is None and pad_to and key.isdigit() and len(key) < pad_to:
            code = lookup.get(key.zfill(pad_to))  # '1' for '01': leading zero lost in a spreadsheet
        values.append(code), status.append("valid" if code is not None else "invalid")
    status_arr = np.array(status, dtype=object)
    note = np.where(status_arr == "invalid", "unknown_code", None)
    return pd.DataFrame({"value": strings(np.array(values, dtype=object)),
                         "status": strings(status_arr), "note": strings(note)})


def _digit_width(codes: pd.Series) -> int | None:
    """The common width of all-digit codes ('01'..'58' -> 2), else None."""
    text = codes.astype(str)
    widths = text.str.len().unique()
    return int(widths[0]) if len(widths) == 1 and text.str.isdigit().all() else None


def _build_lookup(table: pd.DataFrame, by: Sequence[str], code_column: str = "code") -> dict[str, str]:
    """Cached per table content (code tables are small and shared for a whole run)."""
    digest = int(pd.util.hash_pandas_object(table, index=False).sum())
    return _cached_lookup(digest, tuple(table.columns), tuple(by), code_column, table)


_LOOKUPS: dict[tuple, dict[str, str]] = {}


def _cached_lookup(digest: int, columns: tuple, by: tuple, code_column: str, table: pd.DataFrame) -> dict[str, str]:
    key = (digest, columns, by, code_column)
    if key not in _LOOKUPS:
        if len(_LOOKUPS) > 64:
            _LOOKUPS.clear()
        _LOOKUPS[key] = _make_lookup(table, by, code_column)
    return _LOOKUPS[key]


def _make_lookup(table: pd.DataFrame, by: Sequence[str], code_column: str) -> dict[str, str]:
    """key -> code over the `by` columns, earlier columns winning; a key that would point to
    two different codes within one column is left out (ambiguous, e.g. two 朝阳区)."""
    lookup: dict[str, str] = {}
    for column in by:
        if column not in table.columns:
            raise KeyError(f"code table has no column {column!r} (columns: {', '.join(table.columns)})")
        pairs = pd.DataFrame({"key": table[column].astype(str).map(_key), "code": table[code_column].astype(str)})
        pairs = pairs[pairs["key"] != ""].drop_duplicates()
        unique = pairs[~pairs["key"].duplicated(keep=False)]
        for key, code in zip(unique["key"], unique["code"]):
            lookup.setdefault(key, code)
    return lookup


def normalise_code(values: pd.Series, table: pd.DataFrame, by: Sequence[str] = ("code", "name")) -> pd.DataFrame:
    """Values given as a code or a name (or any `by` column) -> the table's code.
    Matching ignores case, width and spaces; digit codes get their leading zeros back."""
    lookup = _build_lookup(table, by)
    pad_to = _digit_width(table["code"])
    return per_unique(values, lambda u: _lookup_uniques(u, lookup, pad_to))


def normalise_sex(values: pd.Series, alias_table: pd.DataFrame) -> pd.DataFrame:
    """Sex in any spelling of sex_alias.csv (alias,code: 男, M, male, 1 …) -> GB/T 2261.1 code."""
    lookup = _build_lookup(alias_table.rename(columns={"alias": "key"}), ("key", "code"))
    return per_unique(values, lambda u: _lookup_uniques(u, lookup, None))


def normalise_ethnicity(values: pd.Series, ethnicity_table: pd.DataFrame,
                        alias_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ethnic group as name (汉族 or 汉), numeric code (1, 01), letter code (HA) or any alias
    of alias_table (ethnicity_alias.csv: alias,code) -> GB/T 3304 two-digit code."""
    table = ethnicity_table.assign(short=ethnicity_table["name"].str.replace(r"族$", "", regex=True))
    lookup = _build_lookup(table, ("code", "name", "letter_code", "short"))
    if alias_table is not None:
        for key, code in _build_lookup(alias_table.rename(columns={"alias": "key"}), ("key",)).items():
            lookup.setdefault(key, code)
    return per_unique(values, lambda u: _lookup_uniques(u, lookup, 2))


def normalise_id_document_type(values: pd.Series, table: pd.DataFrame,
                                alias_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Identity document type as GA/T 517 / GA/T 2000.156 code (111, 414), its name (居民身份证)
    or an alias of alias_table (id_document_type_alias.csv: 身份证, 护照, 回乡证 ...) -> the code."""
    lookup = _build_lookup(table, ("code", "name"))
    if alias_table is not None:
        for key, code in _build_lookup(alias_table.rename(columns={"alias": "key"}), ("key",)).items():
            lookup.setdefault(key, code)
    return per_unique(values, lambda u: _lookup_uniques(u, lookup, None))


def normalise_industry(values: pd.Series, industry_table: pd.DataFrame) -> pd.DataFrame:
    """GB/T 4754 industry codes: a section letter (F), a division (51), or the combined and
    finer forms departments write (F51, F5123, 5123) -> the two-digit division when digits
    are given, else the section. The letter must be the division's section."""
    lookup = _build_lookup(industry_table, ("code", "name"))
    section_of = dict(zip(industry_table["code"].astype(str), industry_table["section"].astype(str)))

    def compute(uniques: np.ndarray) -> pd.DataFrame:
        keys = np.array([None if v is None or v is pd.NA else _key(str(v)).upper() for v in uniques], dtype=object)
        rewritten = []
        for key in keys:
            match = re.fullmatch(r"([A-T])?([0-9]{2})[0-9]{0,2}", key or "")
            if match and (match.group(1) is None or section_of.get(match.group(2)) == match.group(1)):
                rewritten.append(match.group(2))
            elif match:
                rewritten.append("?")  # letter and division disagree: unknown
            else:
                rewritten.append(key)
        return _lookup_uniques(np.array(rewritten, dtype=object), lookup, 2)

    return per_unique(values, compute)


# ---------------------------------------------------------------- phone numbers
_PHONE_SEPARATORS = r"[\s\-‐–—()（）.·/]+"
_MOBILE = r"^1[3-9][0-9]{9}$"
_LANDLINE = r"^0[1-9][0-9]{1,2}[0-9]{7,8}$"
_COUNTRY_MOBILE = r"^(?:\+?86|0086)(1[3-9][0-9]{9})$"
_COUNTRY_LANDLINE = r"^(?:\+?86|0086)([1-9][0-9]{1,2}[0-9]{7,8})$"
# Numbers abroad (foreigners, Hong Kong, Macau and Taiwan residents) in E.164 form, +CC…: given
# with + or 00 and a country code other than 86, or as the bare 852/853 (8 digits) and 886
# (9 digits) numbers mainland clerks type without the +. RE2 has no look-ahead: "not 86" spelt out.
_INTERNATIONAL = r"^(?:\+|00)([1-79][0-9]{6,14}|8[0-57-9][0-9]{5,13})$"
_BARE_HK_MO_TW = r"^(85[23][0-9]{8}|886[0-9]{9})$"
_E164 = r"^\+[1-9][0-9]{6,14}$"
# Several numbers in one field (13812345678/13912345678, 手机；座机): the first is kept.
_PHONE_LIST = r"[/,;，；、|]"
_FIRST_OF_LIST = r"^([^/,;，；、|]*)[/,;，；、|].*$"


def _flag(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


_PHONE_STATUS = pa.array(["valid", "invalid", "missing"])


def _bare_mobiles(text: pa.Array) -> np.ndarray:
    """_flag(text, _MOBILE) read from the bytes: 11 ASCII bytes, '1', '3'..'9', nine digits."""
    offsets, data = _offsets_data(text)
    lengths = np.diff(offsets)
    out = np.zeros(len(text), dtype=bool)
    rows = np.flatnonzero(lengths == 11)
    if not len(rows):
        return out
    m = data[offsets[rows][:, None] + np.arange(11)]
    ok = (m[:, 0] == ord("1")) & ((m[:, 1] - ord("3")) < 7) & ((m[:, 2:] - 48) < 10).all(axis=1)
    out[rows[ok]] = True
    if text.null_count:
        out &= text.is_valid().to_numpy(zero_copy_only=False)
    return out


def _phone_uniques(uniques: np.ndarray) -> pd.DataFrame:
    raw = as_text(uniques)
    n = len(raw)
    # Most numbers are already bare mobiles: only the others go through the clean-up.
    plain = _bare_mobiles(raw)
    dirty_idx = np.flatnonzero(~plain)
    sub = raw.take(pa.array(dirty_idx))
    flags = {k: np.zeros(n, dtype=bool) for k in ("fullwidth", "separators", "country_code", "several_numbers",
                                                  "international")}
    flags["fullwidth"][dirty_idx] = _flag(sub, r"[\x{FF01}-\x{FF5E}\x{3000}]")
    sub = pc.utf8_normalize(sub, "NFKC")
    digits = pc.utf8_length(pc.replace_substring_regex(sub, r"[^0-9]", "")).to_numpy(zero_copy_only=False)
    several = _flag(sub, _PHONE_LIST) & (digits > 15)   # more digits than any one number has
    if several.any():
        flags["several_numbers"][dirty_idx] = several
        sub = pc.if_else(pa.array(several), pc.replace_substring_regex(sub, _FIRST_OF_LIST, r"\1"), sub)
    flags["separators"][dirty_idx] = _flag(sub, _PHONE_SEPARATORS)
    sub = pc.replace_substring_regex(sub, _PHONE_SEPARATORS, "")
    flags["country_code"][dirty_idx] = _flag(sub, _COUNTRY_MOBILE) | _flag(sub, _COUNTRY_LANDLINE)
    sub = pc.replace_substring_regex(sub, _COUNTRY_MOBILE, r"\1")
    sub = pc.replace_substring_regex(sub, _COUNTRY_LANDLINE, r"0\1")
    flags["international"][dirty_idx] = _flag(sub, _INTERNATIONAL) | _flag(sub, _BARE_HK_MO_TW)
    sub = pc.replace_substring_regex(sub, _INTERNATIONAL, r"+\1")
    sub = pc.replace_substring_regex(sub, _BARE_HK_MO_TW, r"+\1")
    text = pc.replace_with_mask(raw, pa.array(~plain), sub) if len(dirty_idx) else raw
    missing = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True).to_numpy(zero_copy_only=False)
    ok = plain.copy()
    ok[dirty_idx] = _flag(sub, _MOBILE) | _flag(sub, _LANDLINE) | _flag(sub, _E164)
    no_area = np.zeros(n, dtype=bool)
    no_area[dirty_idx] = _flag(sub, r"^[2-9][0-9]{6,7}$")
    invalid = ~missing & ~ok
    no_area &= invalid
    status = _PHONE_STATUS.take(pa.array(np.select([missing, invalid], [2, 1], 0).astype(np.int8)))
    notes = join_notes(n, [("fullwidth", flags["fullwidth"] & ~missing), ("separators", flags["separators"] & ~missing),
                           ("country_code", flags["country_code"] & ~missing),
                           ("several_numbers", flags["several_numbers"] & ~missing),
                           ("international", flags["international"] & ~missing), ("no_area_code", no_area),
                           ("bad_format", invalid & ~no_area)])
    value = pc.if_else(pa.array(ok), text, pa.scalar(None, pa.string()))
    return pd.DataFrame({"value": strings(value), "status": strings(status), "note": strings(notes)})


def normalise_phone(values: pd.Series) -> pd.DataFrame:
    """Phone numbers -> digits only: 11-digit mobile (1[3-9]…) or area code + 7-8 digits; numbers
    abroad as E.164 (+85291234567). Separators, full-width digits and a +86/0086 prefix are
    removed, of several numbers in one field the first is kept (all noted);
    a landline without its area code is invalid (no_area_code), anything else bad_format."""
    return per_unique(values, _phone_uniques, arrow=True)


# ---------------------------------------------------------------- addresses
def _address_uniques(uniques: np.ndarray) -> pd.DataFrame:
    text = pc.utf8_trim_whitespace(nfkc(as_text(uniques)))
    spaced = pa.array(any_byte(text, ASCII_SPACE))  # RE2 \s
    if pc.any(spaced).as_py():
        # Spaces between Chinese characters carry no meaning; between latin words one stays.
        sub = pc.replace_substring_regex(pc.filter(text, spaced), r"\s+", " ")
        sub = pc.replace_substring_regex(sub, r"([^\x00-\x7f]) ", r"\1")
        sub = pc.replace_substring_regex(sub, r" ([^\x00-\x7f])", r"\1")
        text = pc.replace_with_mask(text, spaced, sub)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return pd.DataFrame({"value": strings(simplify_arrow(text))})


def normalise_address(values: pd.Series) -> pd.Series:
    """NFKC, simplified characters, single spaces only between latin words; '' -> NA."""
    return per_unique(values, _address_uniques, arrow=True)["value"]


_STRIPPABLE = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "省", "市")


@lru_cache(maxsize=4)
def _region_index(table_key: tuple) -> tuple[dict, dict, dict, dict]:
    """Name lookups over current regions: provinces, prefectures per province, counties per
    parent, and globally unambiguous prefecture/county names for addresses without a province."""
    codes, names = table_key
    known = frozenset(codes)
    provinces: dict[str, str] = {}
    children: dict[str, dict[str, str]] = {}
    global_names: dict[str, set[str]] = {}
    for code, name in zip(codes, names):
        if code.endswith("0000"):
            for variant in _name_variants(name):
                provinces[variant] = code
            continue
        prefecture = code[:4] + "00"
        parent = prefecture if code != prefecture and prefecture in known else code[:2] + "0000"
        for variant in _name_variants(name):
            children.setdefault(parent, {})[variant] = code
            global_names.setdefault(variant, set()).add(code)
    unique = {k: next(iter(v)) for k, v in global_names.items() if len(v) == 1}
    return provinces, children, unique, {}  # the last dict memoises address -> code


def _name_variants(name: str) -> list[str]:
    """The full name and, for province/city names, the name without 省/市/自治区 (浙江, 杭州)."""
    out = [name]
    for suffix in _STRIPPABLE:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            out.append(name[: -len(suffix)])
            break
    return out


def _match_prefix(text: str, pos: int, names: dict[str, str]) -> tuple[str | None, int]:
    """Longest name in `names` starting at pos -> (code, new pos)."""
    for end in range(min(len(text), pos + 12), pos + 1, -1):
        code = names.get(text[pos:end])
        if code:
            return code, end
    return None, pos


def _address_code(address: str, index: tuple) -> str | None:
    memo = index[3]
    if address not in memo:
        if len(memo) > 1 << 20:
            memo.clear()
        memo[address] = _find_address_code(address, index)
    return memo[address]


def _find_address_code(address: str, index: tuple) -> str | None:
    provinces, children, unique, _ = index
    text = re.sub(r"\s+", "", to_simplified(unicodedata.normalize("NFKC", address)))
    code, pos = _match_prefix(text, 0, provinces)
    if code is None:  # no province written: a unique prefecture or county name may start it
        code, pos = _match_prefix(text, 0, unique)
        if code is None:
            return None
    while code in children:  # descend: province -> prefecture -> county
        child, pos = _match_prefix(text, pos, children[code])
        if child is None:
            break
        code = child
    return code


def address_region(addresses: pd.Series, region_table: pd.DataFrame) -> pd.Series:
    """Six-digit code of the deepest current region an address names at its start
    (省 + 市 + 区/县, each optional but in that order; longest name wins); NA if none."""
    current = region_table[region_table["status"].astype(str) == "current"]
    index = _region_index((tuple(current["code"].astype(str)), tuple(current["name"].astype(str))))

    def compute(uniques: np.ndarray) -> pd.DataFrame:
        codes = [None if v is None or v is pd.NA or not str(v).strip() else _address_code(str(v), index)
                 for v in uniques]
        return pd.DataFrame({"region_code": strings(np.array(codes, dtype=object))})

    return per_unique(addresses, compute)["region_code"]
