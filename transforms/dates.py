"""Date and timestamp parsing for the formats departments actually store.

Recognised (after NFKC and trimming): YYYYMMDD, YYYY-MM-DD / YYYY/M/D / YYYY.M.D,
YYYY年M月D日, 'YYYY-MM-DD HH:MM[:SS[.ffffff]]' (also with 'T'), DD/MM/YYYY only when
dayfirst=True, and Excel serial day numbers (20000..60000, i.e. 1954..2064) when nothing
else fits. Each format is one regex applied with pyarrow to the distinct values.
Status: valid | invalid | missing; note on invalid: impossible_date (1990-02-30),
out_of_range (year outside 1800..2199) or unparseable; 'excel_serial' on serial numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from transforms.identifiers import real_ymd
from transforms.unique import as_text, per_unique, strings

_TIME = r"(?:[ T](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<F>\d{1,9}))?)?)?"
# (name, regex with named groups y m d [H M S F]); first match wins.
_FORMATS: list[tuple[str, str]] = [
    ("ymd_compact", r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})" + _TIME + "$"),
    ("ymd", r"^(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})" + _TIME + "$"),
    ("ymd_zh", r"^(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日?" + _TIME + "$"),
]
_DAYFIRST = ("dmy", r"^(?P<d>\d{1,2})[-/.](?P<m>\d{1,2})[-/.](?P<y>\d{4})" + _TIME + "$")
_EXCEL_RE = r"^(?P<serial>\d{5})(?:\.(?P<frac>\d+))?$"
_EXCEL_MIN, _EXCEL_MAX = 20000, 60000
_EXCEL_EPOCH = np.datetime64("1899-12-30", "ns")  # Excel's day 0 (after its 1900 leap bug)
_YEAR_MIN, _YEAR_MAX = 1800, 2199
_PARTS = ("y", "m", "d", "H", "M", "S", "F")


def _clean(uniques: np.ndarray) -> pa.Array:
    text = pc.utf8_normalize(as_text(uniques), "NFKC")
    return pc.utf8_trim_whitespace(text)


def _extract(text: pa.Array, regex: str) -> dict[str, np.ndarray]:
    """Named groups as int arrays (-1 where the regex does not match or the group is empty);
    plus 'matched' (bool)."""
    matched = pc.fill_null(pc.match_substring_regex(text, regex), False).to_numpy(zero_copy_only=False)
    out: dict[str, np.ndarray] = {"matched": matched}
    if not matched.any():
        return out
    groups = pc.extract_regex(text, regex)
    for field in groups.type:
        col = pc.struct_field(groups, field.name)
        if field.name == "F":  # fraction of a second -> microseconds
            col = pc.utf8_slice_codeunits(pc.binary_join_element_wise(col, "000000", ""), 0, 6)
        col = pc.if_else(pc.equal(pc.utf8_length(col), 0), None, col)
        out[field.name] = pc.fill_null(pc.cast(col, pa.int64()), -1).to_numpy(zero_copy_only=False)
    return out


# The two commonest shapes, read by position (a capture-free regex test is much cheaper
# than extracting named groups): YYYY-MM-DD and YYYYMMDD.
_FIXED = ((r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", (0, 5, 8)), (r"^[0-9]{8}$", (0, 4, 6)))


def _fixed_positions(text: pa.Array, parts: dict[str, np.ndarray], matched: np.ndarray) -> None:
    for regex, (y, m, d) in _FIXED:
        hit = pc.fill_null(pc.match_substring_regex(text, regex), False).to_numpy(zero_copy_only=False) & ~matched
        if not hit.any():
            continue
        sub = text.filter(pa.array(hit))
        for key, start, width in (("y", y, 4), ("m", m, 2), ("d", d, 2)):
            parts[key][hit] = pc.cast(pc.utf8_slice_codeunits(sub, start, start + width), pa.int64()).to_numpy()
        matched |= hit


def _components(text: pa.Array, dayfirst: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Date/time components per value from the first format that matches, and whether any
    did. Each format only sees the values the earlier ones left unmatched."""
    n = len(text)
    parts = {k: np.full(n, -1, dtype=np.int64) for k in _PARTS}
    matched = np.zeros(n, dtype=bool)
    _fixed_positions(text, parts, matched)
    formats = _FORMATS + ([_DAYFIRST] if dayfirst else [])
    for _, regex in formats:
        todo = np.flatnonzero(~matched)
        if not len(todo):
            break
        got = _extract(text.take(pa.array(todo)), regex)
        hit = todo[got["matched"]]
        for k in _PARTS:
            if k in got:
                parts[k][hit] = got[k][got["matched"]]
        matched[hit] = True
    return parts, matched


def _assemble(parts: dict[str, np.ndarray], ok: np.ndarray) -> np.ndarray:
    """datetime64[ns] from components; NaT where not ok. Missing time parts count as zero."""
    y, m, d = parts["y"], parts["m"], parts["d"]
    month = np.where(ok, (y - 1970) * 12 + (m - 1), 0).astype("datetime64[M]")
    out = month.astype("datetime64[ns]") + np.where(ok, d - 1, 0).astype("timedelta64[D]")
    for key, unit in (("H", "h"), ("M", "m"), ("S", "s"), ("F", "us")):
        out = out + np.where(ok, np.maximum(parts[key], 0), 0).astype(f"timedelta64[{unit}]")
    out[~ok] = np.datetime64("NaT")
    return out


def _time_ok(parts: dict[str, np.ndarray]) -> np.ndarray:
    h, mi, s = parts["H"], parts["M"], parts["S"]
    return (h <= 23) & (mi <= 59) & (s <= 59)  # -1 (absent) passes


def _parse_uniques(uniques: np.ndarray, dayfirst: bool, fmt: str | None, keep_time: bool) -> pd.DataFrame:
    text = _clean(uniques)
    n = len(text)
    missing = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True).to_numpy(zero_copy_only=False)
    excel = np.zeros(n, dtype=bool)
    if fmt is not None:
        parsed = pd.to_datetime(pd.Series(text.to_pandas()), format=fmt, errors="coerce")
        value = parsed.to_numpy(dtype="datetime64[ns]")
        matched = ~missing & ~np.isnat(value)
        impossible = out_of_range = np.zeros(n, dtype=bool)
    else:
        parts, matched = _components(text, dayfirst)
        y = parts["y"]
        in_range = (y >= _YEAR_MIN) & (y <= _YEAR_MAX)
        real = matched & real_ymd(y, parts["m"], parts["d"]) & _time_ok(parts)
        impossible = matched & ~real
        out_of_range = real & ~in_range
        value = _assemble(parts, real & in_range)
        # Excel serial day numbers, only for values no date format explains.
        serial = _extract(text, _EXCEL_RE)
        if "serial" in serial:
            days = serial["serial"]
            excel = serial["matched"] & ~matched & (days >= _EXCEL_MIN) & (days <= _EXCEL_MAX)
            value[excel] = _EXCEL_EPOCH + days[excel].astype("timedelta64[D]")
            matched = matched | excel
    if not keep_time:
        value = value.astype("datetime64[D]").astype("datetime64[ns]")
    unparseable = ~missing & ~matched
    invalid = unparseable | impossible | out_of_range
    status = np.select([missing, invalid], ["missing", "invalid"], "valid").astype(object)
    note = np.select([impossible, out_of_range, unparseable, excel],
                     ["impossible_date", "out_of_range", "unparseable", "excel_serial"], "").astype(object)
    note[note == ""] = None
    value[invalid | missing] = np.datetime64("NaT")
    return pd.DataFrame({"value": value, "status": strings(status), "note": strings(note)})


def parse_dates(values: pd.Series, dayfirst: bool = False, fmt: str | None = None) -> pd.DataFrame:
    """Raw date strings -> value (datetime64[ns], midnight), status, note. Times are dropped.
    fmt (strptime pattern) pins one format; dayfirst enables DD/MM/YYYY."""
    return per_unique(values, lambda u: _parse_uniques(u, dayfirst, fmt, keep_time=False))


def parse_timestamps(values: pd.Series, dayfirst: bool = False, fmt: str | None = None) -> pd.DataFrame:
    """Raw timestamp strings -> value (datetime64[ns]), status, note; a bare date is midnight."""
    return per_unique(values, lambda u: _parse_uniques(u, dayfirst, fmt, keep_time=True))
