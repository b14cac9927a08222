"""Identifier normalisation: citizen ID (GB 11643, with residence permits and permanent
residence IDs) and other identity documents (GA/T 2000.156); the enterprise codes are in
transforms/enterprise_codes.py.

Every function takes a Series of raw strings and returns one row per input row with
value (standard form or NA), status (valid | repaired | invalid | missing) and note
(';'-joined repair codes and rejection reasons). Work is done once per distinct value on
numpy digit matrices; python-stdnum is the reference the tests compare against.
"""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.unique import as_text, join_notes, per_unique, strings

# Characters that are cleaned away before checking: ASCII/Unicode whitespace (U+3000
# becomes a plain space under NFKC) and the invisible ones copy-paste brings along.
_WHITESPACE_RE = r"[\s\x{200B}\x{200C}\x{200D}\x{FEFF}]+"
_FULLWIDTH_RE = r"[\x{FF01}-\x{FF5E}]"
_ANY_SPACE_RE = r"[\s\x{3000}\x{00A0}\x{2000}-\x{200D}\x{FEFF}]"

# GB 11643: weights 2^(17-i) mod 11, check character indexed by the weighted sum mod 11.
_RIC_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_RIC_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_RIC_MIN_YEAR = 1850



def _char_values(alphabet: str) -> np.ndarray:
    """Lookup byte -> value in alphabet, -1 for bytes outside it."""
    lut = np.full(256, -1, dtype=np.int64)
    for i, ch in enumerate(alphabet):
        lut[ord(ch)] = i
    return lut



# ---------------------------------------------------------------- shared cleaning
def _clean_text(text: pa.StringArray, clean_re: str, upper: bool = True) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Strip whitespace, full-width -> half-width (NFKC), upper-case; only values that do not
    already match clean_re are touched. Returns cleaned text and repair flags."""
    n = len(text)
    already = pc.fill_null(pc.match_substring_regex(text, clean_re), True)
    dirty = pc.invert(already)
    flags = {k: np.zeros(n, dtype=bool) for k in ("whitespace", "fullwidth", "lowercase")}
    # values already in standard form as given (nulls are not)
    flags["as_given"] = already.to_numpy(zero_copy_only=False) & pc.is_valid(text).to_numpy(zero_copy_only=False)
    if not pc.any(dirty).as_py():
        return text, flags
    idx = np.flatnonzero(dirty.to_numpy(zero_copy_only=False))
    sub = text.take(pa.array(idx))
    flags["whitespace"][idx] = pc.match_substring_regex(sub, _ANY_SPACE_RE).to_numpy(zero_copy_only=False)
    flags["fullwidth"][idx] = pc.match_substring_regex(sub, _FULLWIDTH_RE).to_numpy(zero_copy_only=False)
    fixed = pc.replace_substring_regex(pc.utf8_normalize(sub, "NFKC"), _WHITESPACE_RE, "")
    if upper:
        flags["lowercase"][idx] = pc.match_substring_regex(fixed, "[a-z]").to_numpy(zero_copy_only=False)
        fixed = pc.utf8_upper(fixed)
    cleaned = pc.replace_with_mask(text, dirty, fixed)
    return cleaned, flags


def _fixed_width_matrix(text: pa.Array, mask: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8 matrix holding the ASCII bytes of text[mask] rows (others zero).
    Every masked value must be exactly `width` ASCII characters."""
    out = np.zeros((len(text), width), dtype=np.uint8)
    if not mask.any():
        return out
    sub = pc.filter(text, pa.array(mask))
    if isinstance(sub, pa.ChunkedArray):
        sub = sub.combine_chunks()
    offsets = np.frombuffer(sub.buffers()[1], dtype=np.int32, count=len(sub) + 1, offset=sub.offset * 4)
    data = np.frombuffer(sub.buffers()[2], dtype=np.uint8)
    out[mask] = data[offsets[0]:offsets[-1]].reshape(len(sub), width)
    return out


def _rows_to_strings(matrix: np.ndarray, keep: np.ndarray) -> pa.StringArray:
    """Arrow strings of the matrix rows (ASCII) where keep, null elsewhere."""
    n, width = matrix.shape
    if not keep.any():
        return pa.nulls(n, pa.string())
    every = bool(keep.all())
    rows = np.ascontiguousarray(matrix if every else matrix[keep])
    sub = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(rows), [None, pa.py_buffer(rows)])
    if every:
        return sub.cast(pa.binary()).cast(pa.string())
    return pc.replace_with_mask(pa.nulls(n, pa.string()), pa.array(keep), sub.cast(pa.binary()).cast(pa.string()))


def _lengths(text: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)


def _matches(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


_STATUSES = pa.array(["valid", "repaired", "invalid", "missing"])


def _matches_where(text: pa.Array, pattern: str, where: np.ndarray) -> np.ndarray:
    """_matches evaluated only on the rows in `where` (False elsewhere)."""
    out = np.zeros(len(text), dtype=bool)
    if where.any():
        out[where] = _matches(text.filter(pa.array(where)), pattern)
    return out


def _status(missing: np.ndarray, invalid: np.ndarray, repaired: np.ndarray) -> pa.StringArray:
    codes = np.select([missing, invalid, repaired], [3, 2, 1], 0)
    return _STATUSES.take(pa.array(codes))


def _ymd_to_datetime(y: np.ndarray, m: np.ndarray, d: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """datetime64[ns] from integer year/month/day arrays; NaT where not ok."""
    months = np.where(ok, (y - 1970) * 12 + (m - 1), 0).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    out = days.astype("datetime64[ns]")
    out[~ok] = np.datetime64("NaT")
    return out


def real_ymd(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """True where year/month/day form a real calendar date (Gregorian leap years)."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(m, 0, 12)]
    dim = dim + ((m == 2) & leap)
    return (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim)


def _digits_to_int(matrix: np.ndarray, start: int, stop: int) -> np.ndarray:
    return _weighted_sum(matrix[:, start:stop], 48, 10 ** np.arange(stop - start - 1, -1, -1, dtype=np.int64))


# ---------------------------------------------------------------- citizen ID (GB 11643)
def ric_check_chars(body17: np.ndarray) -> np.ndarray:
    """GB 11643 check characters (uint8 ASCII) for an (n, 17) matrix of ASCII digits."""
    return _RIC_CHECK[_weighted_sum(body17, 48, _RIC_WEIGHTS) % 11]


def _weighted_sum(matrix: np.ndarray, zero: int, weights: np.ndarray) -> np.ndarray:
    """sum over columns of (byte - zero) * weight, column by column (integer matmul in
    numpy is a slow generic loop)."""
    total = np.zeros(len(matrix), dtype=np.int64)
    for j, w in enumerate(weights.tolist()):
        total += (matrix[:, j].astype(np.int64) - zero) * w
    return total


# Residence permits for Hong Kong, Macau and Taiwan residents (2018): GB 11643 numbers whose
# address code is one of these; the region is the one the holder comes from (Taiwan: 710000).
RESIDENCE_PERMIT_REGIONS = {"810000": "810000", "820000": "820000", "830000": "710000"}
# Province-level GB/T 2260 codes (standards/codes/region.csv, level province, current): the
# issuing province of a foreigner's permanent residence ID card (2023), digits 2-3.
PROVINCES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82"})
_PROVINCE_LUT = np.zeros(100, dtype=bool)
_PROVINCE_LUT[[int(p) for p in PROVINCES]] = True
# What Excel does to an 18-digit number stored as a number: scientific notation as shown
# (1.10105199001011E+17), or the digits beyond the 15th zeroed.
_EXCEL_SCIENTIFIC_RE = r"^[0-9](\.[0-9]+)?E\+?[0-9]{1,2}$"
ID_KINDS = pa.array(["citizen", "residence_permit", "permanent_residence"])


def _citizen_id_uniques(uniques: np.ndarray, today: date) -> pd.DataFrame:
    text = as_text(uniques)
    cleaned, flags = _clean_text(text, r"^[0-9]{17}[0-9X]$")
    n = len(cleaned)
    length = _lengths(cleaned)
    missing = length == 0
    # Most values were already clean: the regex only runs again on the repaired ones.
    ok18 = flags["as_given"] | _matches_where(cleaned, r"^[0-9]{17}[0-9X]$", ~flags["as_given"] & (length == 18))
    ok15 = _matches_where(cleaned, r"^[0-9]{15}$", length == 15)
    excel_sci = _matches_where(cleaned, _EXCEL_SCIENTIFIC_RE, ~missing & ~ok18 & ~ok15)
    bad_length = ~missing & (length != 15) & (length != 18) & ~excel_sci
    bad_chars = ~missing & ~bad_length & ~ok18 & ~ok15 & ~excel_sci

    m18 = _fixed_width_matrix(cleaned, ok18, 18)
    m15 = _fixed_width_matrix(cleaned, ok15, 15)
    # 15-digit IDs (issued before 1999): insert century '19' after the region code.
    m18[ok15, :6] = m15[ok15, :6]
    m18[ok15, 6:8] = np.frombuffer(b"19", dtype=np.uint8)
    m18[ok15, 8:17] = m15[ok15, 6:15]
    formed = ok18 | ok15
    check = ric_check_chars(m18[:, :17])
    m18[ok15, 17] = check[ok15]
    bad_check = ok18 & (m18[:, 17] != check)
    # Digits 16-18 zeroed (Excel's 15 significant digits) and the check digit no longer fits.
    excel_cut = bad_check & (m18[:, 15:18] == 48).all(axis=1)
    bad_check &= ~excel_cut

    # The kind of number, from its first digits: 81/82/83 residence permit (address code
    # exactly 810000/820000/830000), 9 foreigner's permanent residence ID (2023: 9, issuing
    # province, nationality, birth date, sequence, check digit), else a citizen ID.
    first2 = (m18[:, 0].astype(np.int64) - 48) * 10 + (m18[:, 1].astype(np.int64) - 48)
    permit = ok18 & (first2 >= 81) & (first2 <= 83)
    bad_permit = permit & ~(m18[:, 2:6] == 48).all(axis=1)
    foreigner = ok18 & (m18[:, 0] == ord("9"))
    province = np.clip((m18[:, 1].astype(np.int64) - 48) * 10 + (m18[:, 2].astype(np.int64) - 48), 0, 99)
    bad_province = foreigner & ~_PROVINCE_LUT[province]
    old_bad_region = ok15 & ((m18[:, 0] == ord("9")) | ((first2 >= 81) & (first2 <= 83)))
    bad_region = bad_permit | bad_province | old_bad_region

    y, mo, d = (_digits_to_int(m18, a, b) for a, b in ((6, 10), (10, 12), (12, 14)))
    real = formed & real_ymd(y, mo, d) & (y >= _RIC_MIN_YEAR)
    birth = _ymd_to_datetime(y, mo, d, real)
    bad_birth = formed & ~real
    future = real & (birth > np.datetime64(today, "ns"))

    invalid = bad_length | bad_chars | bad_check | bad_birth | future | excel_sci | excel_cut | bad_region
    repaired = flags["whitespace"] | flags["fullwidth"] | flags["lowercase"] | ok15
    good = ~missing & ~invalid
    lower_x = flags["lowercase"] & ~excel_sci  # only x can be a letter in a well-formed ID
    note = join_notes(n, [
        ("whitespace", flags["whitespace"]), ("fullwidth", flags["fullwidth"]),
        ("lowercase_x", lower_x), ("upgraded_15", ok15),
        ("excel_scientific", excel_sci), ("excel_truncated", excel_cut),
        ("bad_length", bad_length), ("bad_chars", bad_chars), ("bad_check_digit", bad_check),
        ("bad_region", bad_region), ("bad_birth_date", bad_birth), ("future_birth_date", future),
    ])
    birth[~good] = np.datetime64("NaT")
    sex = pa.array(["2", "1"]).take(pa.array((m18[:, 16] - 48) % 2, mask=~good))
    # region: the address code; a permit's home region; the issuing province of a foreigner's card
    region_m = m18[:, :6].copy()
    region_m[foreigner, :2] = m18[foreigner, 1:3]
    region_m[foreigner, 2:6] = 48
    taiwan = permit & (first2 == 83)
    region_m[taiwan, :2] = np.frombuffer(b"71", dtype=np.uint8)
    kind = pa.array(np.select([permit, foreigner], [1, 2], 0), mask=~good)
    return pd.DataFrame({
        "value": strings(_rows_to_strings(m18, good)),
        "status": strings(_status(missing, invalid, repaired)),
        "note": strings(note),
        "birth_date": birth,
        "sex": strings(sex),
        "region_code": strings(_rows_to_strings(np.ascontiguousarray(region_m), good)),
        "id_kind": strings(ID_KINDS.take(kind)),
    })


def normalise_citizen_id(values: pd.Series, today: date | None = None) -> pd.DataFrame:
    """GB 11643 citizen ID numbers -> value (18 chars or NA), status, note, birth_date,
    sex ('1' odd / '2' even 17th digit), region_code (first six digits, not checked here:
    see region_known), id_kind. 15-digit numbers are upgraded; an unknown region is not a
    rejection. The numbers built on GB 11643 are keys too (id_kind):
    - residence_permit: HK/Macau/Taiwan residents (address code 810000/820000/830000 exactly,
      else bad_region); region_code 810000 / 820000 / 710000 (Taiwan);
    - permanent_residence: foreigner's permanent residence ID card (2023): '9', issuing province
      (bad_region unless a GB/T 2260 province), nationality, birth date, sequence, check digit;
      region_code the issuing province (XX0000).
    Excel damage is invalid with its own note: excel_scientific (1.10105199001011E+17) or
    excel_truncated (the last three digits zeroed and the check digit no longer fits)."""
    today = today or date.today()
    return per_unique(values, lambda u: _citizen_id_uniques(u, today), arrow=True)


def region_known(region_codes: pd.Series, region_table: pd.DataFrame) -> pd.Series:
    """True where the six-digit code is in the GB/T 2260 table (current or historical);
    for warnings only — people keep the ID number issued under an abolished code."""
    known = set(region_table["code"].astype(str))
    return region_codes.isin(known) & region_codes.notna()


# ---------------------------------------------------------------- identity documents (GA/T 2000.156)
# Document types whose number is the holder's citizen ID number (ID card, temporary ID card,
# household register) or a GB 11643-built lifelong number (foreigner's permanent residence ID).
CITIZEN_ID_TYPES = frozenset({"111", "112", "113"})
PERMANENT_RESIDENCE = "553"
# Number formats of the other documents (after whitespace/full-width clean-up, upper case).
# 414 covers Chinese passports (E + 8 digits, E + letter + 7 digits, G/D/S/P + 8 digits) and
# foreign ones, which follow no common rule: 5-17 letters and digits.
DOCUMENT_FORMATS = {
    "414": r"^[A-Z0-9]{5,17}$",
    "511": r"^[0-9]{8}$|^[0-9]{10}[A-Z]?$",          # 台胞证: card (2015) 8 digits; booklet 10 + letter
    "513": r"^[CW][A-Z0-9][0-9]{7}$",                 # 往来港澳通行证: C/W + 8
    "516": r"^[HM][0-9]{8}([0-9]{2})?$",              # 港澳居民来往内地通行证: H/M + 8 (+2)
    "553": r"^[A-Z]{3}[0-9]{12}$",                    # permanent residence ID before 2023
}
OTHER_DOCUMENT_FORMAT = r"^[A-Z0-9][A-Z0-9()\-]{2,30}[A-Z0-9)]$"


def _document_uniques(keys: np.ndarray) -> pd.DataFrame:
    """keys 'type\\x1fnumber' -> cleaned number and whether it has the type's format."""
    pairs = [(str(k).split("\x1f", 1) + [""])[:2] if k is not None else ["", ""] for k in keys]
    numbers = np.array([p[1] for p in pairs], dtype=object)
    cleaned, _ = _clean_text(as_text(numbers), r"^[0-9A-Z()\-]+$")
    cleaned = pc.replace_substring_regex(cleaned, r"[（]", "(")
    cleaned = pc.replace_substring_regex(cleaned, r"[）]", ")")
    text = np.array(cleaned.to_pylist(), dtype=object)
    ok = np.zeros(len(keys), dtype=bool)
    types = np.array([p[0] for p in pairs], dtype=object)
    for t in np.unique(types):
        rows = types == t
        ok[rows] = _matches(pa.array(text[rows], type=pa.string()), DOCUMENT_FORMATS.get(t, OTHER_DOCUMENT_FORMAT))
    return pd.DataFrame({"number": strings(np.where(ok, text, None)), "formed": ok})


def normalise_identity_document(numbers: pd.Series, types: pd.Series | None = None,
                                today: date | None = None) -> pd.DataFrame:
    """Document number + GA/T 2000.156 type code (NA = citizen ID) -> the columns of
    normalise_citizen_id plus doc_number.

    A number that is a valid (or repaired) GB 11643 number — citizen ID, HK/Macau/Taiwan
    residence permit, foreigner's permanent residence ID (2023) — is the lifelong key
    whatever the type says (a driving licence's number is its holder's ID number; note
    `number_is_id` when the type is not an ID type). Otherwise, for types 111/112/113 and no
    type, the citizen-ID verdict stands (invalid, excel_*). Other documents (passports, travel
    permits, the old permanent residence ID, ...) are no key: value NA, status
    `other_document`, doc_number the cleaned number when it has the type's format; else status
    invalid, note `bad_document_format`. Excel damage stays invalid with its excel_* note."""
    today = today or date.today()
    out = normalise_citizen_id(numbers, today=today)
    out["doc_number"] = pd.Series(strings(pa.nulls(len(out), pa.string())), index=out.index)
    if types is None:
        return out
    types = types.astype("string[pyarrow]").reindex(numbers.index)
    key = out["status"].isin(["valid", "repaired"]).to_numpy(dtype=bool)
    excel = out["note"].str.contains("excel_", regex=False).fillna(False).to_numpy(dtype=bool)
    has_number = numbers.notna().to_numpy(dtype=bool) & (out["status"] != "missing").to_numpy(dtype=bool)
    typed = types.notna().to_numpy(dtype=bool)
    id_type = types.isin(CITIZEN_ID_TYPES).fillna(False).to_numpy(dtype=bool)
    residence = types.eq(PERMANENT_RESIDENCE).fillna(False).to_numpy(dtype=bool)
    document = typed & ~id_type & has_number & ~key & ~excel
    hit = typed & ~id_type & ~residence & key
    if hit.any():
        out.loc[hit, "note"] = out.loc[hit, "note"].fillna("").str.cat(
            pd.Series("number_is_id", index=out.index)[hit], sep=";").str.strip(";")
    if not document.any():
        return out
    pair = types[document].astype(str) + "\x1f" + numbers[document].astype(str)
    doc = per_unique(pair, _document_uniques)
    formed = doc["formed"].to_numpy(dtype=bool)
    rows = out.index[document]
    out.loc[rows, "doc_number"] = doc["number"].to_numpy()
    out.loc[rows, "status"] = np.where(formed, "other_document", "invalid")
    out.loc[rows, "note"] = np.where(formed, None, "bad_document_format")
    for column in ("birth_date", "sex", "region_code", "id_kind"):
        out.loc[rows, column] = None
    return out


def document_holder_keys(id_type: pd.Series, doc_number: pd.Series, types: pd.DataFrame) -> pd.Series:
    """'type:number' of each other document, cut to the characters that stay with the holder when
    the document is renewed (types: id_document_type.csv, column holder_key_chars — a HK/Macau
    permit H12345678 01 keeps H12345678), so a renewed permit is the same identifier; NA
    without a type or number."""
    chars = pd.to_numeric(types.set_index("code")["holder_key_chars"].replace("", np.nan), errors="coerce")
    width = id_type.astype("string").map(chars)
    cut = doc_number.astype("string")
    for w in width.dropna().unique():   # one slice per kept width (a handful of document types)
        rows = (width == w).to_numpy()
        cut[rows] = cut[rows].str.slice(0, int(w))
    return (id_type.astype("string") + ":" + cut).where(id_type.notna() & doc_number.notna())
