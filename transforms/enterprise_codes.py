"""Enterprise identifiers: USCC (GB 32100), organisation code (GB 11714), old business
registration number (ISO 7064 MOD 11,10) and old tax number. Same contract as
transforms/identifiers.py: one row per input row with value, status and note, worked out once
per distinct value on numpy character matrices; python-stdnum is the tests' reference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.identifiers import (_char_values, _clean_text,
                                            _fixed_width_matrix, _lengths, _matches,
                                            _rows_to_strings, _status)
from govdata.transforms.unique import as_text, join_notes, per_unique, strings

# GB 32100: 31-character alphabet (no I O S V Z), weights 3^i mod 31.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
# GB 11714: 8 body characters (digits, A=10 .. Z=35), check 0-9 or X.
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_USCC_LUT = _char_values(_USCC_ALPHABET)
_ORG_LUT = _char_values("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


# ---------------------------------------------------------------- USCC (GB 32100)
def uscc_check_chars(body17: np.ndarray) -> np.ndarray:
    """GB 32100 check characters (uint8 ASCII) for an (n, 17) matrix of alphabet bytes."""
    values = _USCC_LUT[body17]
    check = (31 - (values @ _USCC_WEIGHTS) % 31) % 31
    return np.frombuffer(_USCC_ALPHABET.encode(), dtype=np.uint8)[check]


# Registration authority + organisation category, six-digit region, 10 characters.
_USCC_RE = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"


def _uscc_uniques(uniques: np.ndarray) -> pd.DataFrame:
    cleaned, flags = _clean_text(as_text(uniques), _USCC_RE)
    n = len(cleaned)
    checked = _fixed_format_check(cleaned, _USCC_RE, 18, uscc_check_chars)
    missing, bad_length, bad_chars, bad_check, m = (checked[k] for k in
                                                    ("missing", "bad_length", "bad_chars", "bad_check", "matrix"))
    invalid = bad_length | bad_chars | bad_check
    repaired = flags["whitespace"] | flags["fullwidth"] | flags["lowercase"]
    good = ~missing & ~invalid
    note = join_notes(n, [
        ("whitespace", flags["whitespace"]), ("fullwidth", flags["fullwidth"]),
        ("lowercase", flags["lowercase"]), ("bad_length", bad_length), ("bad_chars", bad_chars),
        ("bad_check_digit", bad_check),
    ])
    return pd.DataFrame({
        "value": strings(_rows_to_strings(m, good)),
        "status": strings(_status(missing, invalid, repaired)),
        "note": strings(note),
        "org_code": strings(_rows_to_strings(m[:, 8:17], good)),
        "region_code": strings(_rows_to_strings(m[:, 2:8], good)),
    })


def normalise_uscc(values: pd.Series) -> pd.DataFrame:
    """GB 32100 unified social credit codes -> value, status, note, org_code (characters
    9..17, the embedded GB 11714 code) and region_code (characters 3..8)."""
    return per_unique(values, _uscc_uniques, arrow=True)


# ---------------------------------------------------------------- organisation code (GB 11714)
def org_check_chars(body8: np.ndarray) -> np.ndarray:
    """GB 11714 check characters for an (n, 8) matrix of [0-9A-Z] bytes."""
    c = 11 - (_ORG_LUT[body8] @ _ORG_WEIGHTS) % 11
    return np.frombuffer(b"0123456789X0", dtype=np.uint8)[c]


_ORG_RE = r"^[0-9A-Z]{8}[0-9X]$"


def _fixed_format_check(cleaned: pa.Array, pattern: str, width: int, check_chars) -> dict[str, np.ndarray]:
    """Shared shape of the code checks: empty, wrong length, wrong characters, wrong check
    character (the last one, computed by check_chars from the others)."""
    length = _lengths(cleaned)
    missing = length == 0
    formed = _matches(cleaned, pattern)
    bad_length = ~missing & (length != width)
    bad_chars = ~missing & ~bad_length & ~formed
    m = _fixed_width_matrix(cleaned, formed, width)
    bad_check = formed & (m[:, width - 1] != check_chars(m[:, :width - 1]))
    return {"missing": missing, "bad_length": bad_length, "bad_chars": bad_chars,
            "bad_check": bad_check, "matrix": m}


def _org_check(cleaned: pa.Array, hyphen: np.ndarray) -> dict[str, np.ndarray]:
    return _fixed_format_check(cleaned, _ORG_RE, 9, org_check_chars)


def _org_code_uniques(uniques: np.ndarray) -> pd.DataFrame:
    text = as_text(uniques)
    # Printed form is XXXXXXXX-X: the hyphen is formatting, not a repair.
    hyphen = _matches(text, "-")
    text = pc.replace_substring(text, "-", "")
    cleaned, flags = _clean_text(text, _ORG_RE)
    r = _org_check(cleaned, hyphen)
    invalid = r["bad_length"] | r["bad_chars"] | r["bad_check"]
    repaired = flags["whitespace"] | flags["fullwidth"] | flags["lowercase"]
    good = ~r["missing"] & ~invalid
    note = join_notes(len(cleaned), [
        ("whitespace", flags["whitespace"]), ("fullwidth", flags["fullwidth"]),
        ("lowercase", flags["lowercase"]), ("bad_length", r["bad_length"]),
        ("bad_chars", r["bad_chars"]), ("bad_check_digit", r["bad_check"]),
    ])
    return pd.DataFrame({
        "value": strings(_rows_to_strings(r["matrix"], good)),
        "status": strings(_status(r["missing"], invalid, repaired)),
        "note": strings(note),
    })


def normalise_org_code(values: pd.Series) -> pd.DataFrame:
    """GB 11714 organisation codes (with or without the hyphen) -> value (9 chars), status, note."""
    return per_unique(values, _org_code_uniques, arrow=True)


# ---------------------------------------------------------------- registration number
def mod_11_10_valid(digits: np.ndarray) -> np.ndarray:
    """ISO 7064 MOD 11,10 over each row of an (n, k) matrix of ASCII digits."""
    check = np.full(len(digits), 5, dtype=np.int64)
    for j in range(digits.shape[1]):
        check = ((np.where(check == 0, 10, check) * 2) % 11 + (digits[:, j].astype(np.int64) - 48)) % 10
    return check == 1


def _reg_no_uniques(uniques: np.ndarray) -> pd.DataFrame:
    cleaned, flags = _clean_text(as_text(uniques), r"^[0-9]{15}$")
    length = _lengths(cleaned)
    missing = length == 0
    formed = _matches(cleaned, r"^[0-9]{15}$")
    bad_length = ~missing & (length != 15)
    bad_chars = ~missing & ~bad_length & ~formed
    m = _fixed_width_matrix(cleaned, formed, 15)
    bad_check = formed & ~mod_11_10_valid(m)
    invalid = bad_length | bad_chars | bad_check
    repaired = flags["whitespace"] | flags["fullwidth"]
    good = ~missing & ~invalid
    note = join_notes(len(cleaned), [
        ("whitespace", flags["whitespace"]), ("fullwidth", flags["fullwidth"]),
        ("bad_length", bad_length), ("bad_chars", bad_chars), ("bad_check_digit", bad_check),
    ])
    return pd.DataFrame({
        "value": strings(_rows_to_strings(m, good)),
        "status": strings(_status(missing, invalid, repaired)),
        "note": strings(note),
        "region_code": strings(_rows_to_strings(m[:, :6], good)),
    })


def normalise_reg_no(values: pd.Series) -> pd.DataFrame:
    """Old 15-digit business registration numbers (ISO 7064 MOD 11,10) -> value, status,
    note, region_code (first six digits: the registering authority)."""
    return per_unique(values, _reg_no_uniques, arrow=True)


# ---------------------------------------------------------------- old tax number
_TAX_RE = r"^[0-9]{6}[0-9A-Z]{8}[0-9X]$"


def _tax_no_uniques(uniques: np.ndarray) -> pd.DataFrame:
    text = pc.replace_substring(as_text(uniques), "-", "")
    cleaned, flags = _clean_text(text, _TAX_RE)
    n = len(cleaned)
    length = _lengths(cleaned)
    missing = length == 0
    formed15 = _matches(cleaned, _TAX_RE)
    formed18 = _matches(cleaned, _USCC_RE)  # since 2015 the tax number is the USCC
    bad_length = ~missing & (length != 15) & (length != 18)
    bad_chars = ~missing & ~bad_length & ~formed15 & ~formed18
    m15 = _fixed_width_matrix(cleaned, formed15, 15)
    m18 = _fixed_width_matrix(cleaned, formed18, 18)
    bad_check = (formed15 & (m15[:, 14] != org_check_chars(m15[:, 6:14]))) | (
        formed18 & (m18[:, 17] != uscc_check_chars(m18[:, :17])))
    invalid = bad_length | bad_chars | bad_check
    repaired = flags["whitespace"] | flags["fullwidth"] | flags["lowercase"]
    good = ~missing & ~invalid
    note = join_notes(n, [
        ("whitespace", flags["whitespace"]), ("fullwidth", flags["fullwidth"]),
        ("lowercase", flags["lowercase"]), ("uscc", formed18 & good), ("bad_length", bad_length),
        ("bad_chars", bad_chars), ("bad_check_digit", bad_check),
    ])
    value = np.where(formed18, _rows_to_strings(m18, good & formed18), _rows_to_strings(m15, good & formed15))
    org = np.where(formed18, _rows_to_strings(m18[:, 8:17], good & formed18),
                   _rows_to_strings(m15[:, 6:15], good & formed15))
    region = np.where(formed18, _rows_to_strings(m18[:, 2:8], good & formed18),
                      _rows_to_strings(m15[:, :6], good & formed15))
    return pd.DataFrame({
        "value": strings(value), "status": strings(_status(missing, invalid, repaired)),
        "note": strings(note), "org_code": strings(org), "region_code": strings(region),
    })


def normalise_tax_no(values: pd.Series) -> pd.DataFrame:
    """Old 15-character tax numbers (6-digit region + 9-character GB 11714 org code, the
    org code's check character verified) -> value, status, note, org_code, region_code.
    An 18-character value that is a valid USCC is accepted as such (note 'uscc')."""
    return per_unique(values, _tax_no_uniques, arrow=True)
