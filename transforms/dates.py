"""Date and timestamp parsing for the formats departments actually store.

Recognised (after NFKC and trimming): YYYYMMDD, YYYY-MM-DD / YYYY/M/D / YYYY.M.D,
YYYY年M月D日, 'YYYY-MM-DD HH:MM[:SS[.ffffff]]' (also with 'T'), English month names
(7-May-1980, May 7, 1980), YYYY MM DD and a trailing dot, DD/MM/YYYY only when
dayfirst=True, and Excel serial day numbers (10000..60000, i.e. 1927..2064: the birth dates of today's
elderly too) when nothing else fits. Each format is one regex applied with pyarrow to the distinct values.
Status: valid | invalid | missing; note on invalid: impossible_date (1990-02-30),
out_of_range (year outside 1800..2199) or unparseable; 'excel_serial' on serial numbers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.identifiers import real_ymd
from govdata.transforms.unique import as_text, nfkc, per_unique, strings

_TIME = r"(?:[ T](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<F>\d{1,9}))?)?)?"
# (name, regex with named groups y m d [H M S F]); first match wins.
_FORMATS: list[tuple[str, str]] = [
    ("ymd_compact", r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})" + _TIME + "$"),
    ("ymd", r"^(?P<y>\d{4})[-/. ](?P<m>\d{1,2})[-/. ](?P<d>\d{1,2})\.?" + _TIME + "$"),
    ("ymd_zh", r"^(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日?" + _TIME + "$"),
]
_DAYFIRST = ("dmy", r"^(?P<d>\d{1,2})[-/.](?P<m>\d{1,2})[-/.](?P<y>\d{4})" + _TIME + "$")
_EXCEL_RE = r"^(?P<serial>\d{5})(?:\.(?P<frac>\d+))?$"
_EXCEL_MIN, _EXCEL_MAX = 10000, 60000
_EXCEL_EPOCH = np.datetime64("1899-12-30", "ns")  # Excel's day 0 (after its 1900 leap bug)
_YEAR_MIN, _YEAR_MAX = 1800, 2199
_PARTS = ("y", "m", "d", "H", "M", "S", "F")
_STATUS = pa.array(["valid", "invalid", "missing"])
_NOTES = pa.array(["impossible_date", "out_of_range", "unparseable", "excel_serial"])


# English month names, as passports, exit-entry and spreadsheet exports write them
# (7-May-1980, 07 MAY 1980, May 7, 1980, 7 Sept. 1980): rewritten to ISO before parsing.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _month_names_to_iso(text: pa.Array) -> pa.Array:
    letters = pc.fill_null(pc.match_substring_regex(text, "[A-Za-z]{3}"), False)
    if not pc.any(letters).as_py():
        return text
    upper = pc.utf8_upper(text)
    for number, month in enumerate(_MONTHS, 1):
        name = month + r"[A-Z]*\.?"
        upper = pc.replace_substring_regex(upper, r"^(\d{1,2})[-\s/]+" + name + r"[-\s/,]+(\d{4})",
                                           rf"\2-{number:02d}-\1")
        upper = pc.replace_substring_regex(upper, "^" + name + r"\s+(\d{1,2}),?\s+(\d{4})", rf"\2-{number:02d}-\1")
    return pc.if_else(letters, upper, text)


def _clean(uniques: np.ndarray) -> pa.Array:
    text = nfkc(as_text(uniques))
    return _month_names_to_iso(pc.utf8_trim_whitespace(text))


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


# The commonest shapes, read by position from the UTF-8 bytes (no regex at all): each
# template ('d' = ASCII digit, anything else literal) is the shape of exactly one of the
# formats above with no optional parts left open, so its components are those the regex
# would give. Values of any other shape go through the regexes.
def _template(shape: str, seps: str = "", time: str = "") -> tuple[bytes, dict[str, tuple[int, int]]]:
    """shape uses y m d (and H M S in time) for digits; returns (byte template, key -> (start, width))."""
    text = shape + time
    spans: dict[str, tuple[int, int]] = {}
    out = bytearray()
    for ch in text:
        if ch in "ymdHMS":
            start, width = spans.get(ch, (len(out), 0))
            spans[ch] = (start, width + 1)
            out += b"d"
        else:
            out += ch.encode()
    return bytes(out), spans


def _ymd_shapes(order: str) -> list[str]:
    """y-m-d (or d-m-y) with one or two digit month/day, one separator kind throughout."""
    shapes = []
    for sep in "-/.":
        for m in ("m", "mm"):
            for d in ("d", "dd"):
                parts = {"y": "yyyy", "m": m, "d": d}
                shapes.append(sep.join(parts[k] for k in order))
    return shapes


_TIMES = ("", " HH:MM:SS", "THH:MM:SS", " HH:MM")
_SHAPES: list[tuple[bytes, dict[str, tuple[int, int]]]] = (
    [_template("yyyymmdd", time=t) for t in ("", " HH:MM:SS")]
    + [_template(s, time=t) for s in _ymd_shapes("ymd") for t in _TIMES]
    + [_template(f"yyyy年{m}月{d}{z}") for m in ("m", "mm") for d in ("d", "dd") for z in ("日", "")]
)
_DAYFIRST_SHAPES = [_template(s, time=t) for s in _ymd_shapes("dmy") for t in _TIMES]


def _byte_rows(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, starts, byte lengths) of a string array; nulls get length -1."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=n + 1, offset=text.offset * 4)
    data = text.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    lengths = np.diff(offsets)
    if text.null_count:
        lengths = np.where(text.is_valid().to_numpy(zero_copy_only=False), lengths, -1)
    return data, offsets[:-1], lengths


def _by_shape(text: pa.Array, shapes: list, parts: dict[str, np.ndarray], matched: np.ndarray,
              check: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None) -> None:
    """Components of the values that have one of the byte shapes (and pass check)."""
    data, starts, lengths = _byte_rows(text)
    by_length: dict[int, list] = {}
    for template, spans in shapes:
        by_length.setdefault(len(template), []).append((template, spans))
    for length, group in by_length.items():
        rows = np.flatnonzero((lengths == length) & ~matched)
        if not len(rows):
            continue
        if len(rows) == len(lengths):  # every value has this length: the bytes are one block
            m = data[starts[0]:starts[0] + len(rows) * length].reshape(len(rows), length)
        else:
            m = data[starts[rows][:, None] + np.arange(length)]
        # each row's shape: digits as 'd', other bytes as they are
        shape_of = np.where((m - 48) < 10, np.uint8(ord("d")), m).view(f"S{length}").ravel()
        for template, spans in group:
            ok = shape_of == template
            if not ok.any():
                continue
            every = bool(ok.all())
            sub = m if every else m[ok]
            got = {}
            for key, (start, width) in spans.items():
                v = sub[:, start].astype(np.int64) - 48
                for j in range(start + 1, start + width):
                    v = v * 10 + (sub[:, j] - 48)
                got[key] = v
            hit = rows if every else rows[ok]
            if check is not None:
                keep = check(got)
                hit, got = hit[keep], {k: v[keep] for k, v in got.items()}
            for key, v in got.items():
                parts[key][hit] = v
            matched[hit] = True


def _components(text: pa.Array, dayfirst: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Date/time components per value from the first format that matches, and whether any
    did. Each format only sees the values the earlier ones left unmatched."""
    n = len(text)
    parts = {k: np.full(n, -1, dtype=np.int64) for k in _PARTS}
    matched = np.zeros(n, dtype=bool)
    _by_shape(text, _SHAPES + (_DAYFIRST_SHAPES if dayfirst else []), parts, matched)
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


# strptime patterns departments pin, as zero-padded byte shapes: values of that exact shape
# holding a real date well inside the datetime64[ns] range are read by position; all
# others still go through pandas (which decides what an unpadded or odd value means).
_STRPTIME_SHAPES = {
    "%d/%m/%Y": "dd/mm/yyyy", "%d.%m.%Y": "dd.mm.yyyy", "%d-%m-%Y": "dd-mm-yyyy",
    "%Y-%m-%d": "yyyy-mm-dd", "%Y/%m/%d": "yyyy/mm/dd", "%Y.%m.%d": "yyyy.mm.dd", "%Y%m%d": "yyyymmdd",
    "%m/%d/%Y": "mm/dd/yyyy",
}


def _safe_date(got: dict[str, np.ndarray]) -> np.ndarray:
    y = got["y"]
    return real_ymd(y, got["m"], got["d"]) & (y >= 1678) & (y <= 2261)


def _strptime(text: pa.Array, fmt: str) -> np.ndarray:
    """pd.to_datetime(format=fmt, errors='coerce') as datetime64[ns]."""
    n = len(text)
    value = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    done = np.zeros(n, dtype=bool)
    if fmt in _STRPTIME_SHAPES:
        parts = {k: np.full(n, -1, dtype=np.int64) for k in _PARTS}
        _by_shape(text, [_template(_STRPTIME_SHAPES[fmt])], parts, done, check=_safe_date)
        value[done] = _assemble(parts, done)[done]
    rest = np.flatnonzero(~done)
    if len(rest):
        sub = text.take(pa.array(rest)) if len(rest) < n else text
        parsed = pd.to_datetime(pd.Series(sub.to_pandas()), format=fmt, errors="coerce")
        value[rest] = parsed.to_numpy(dtype="datetime64[ns]")
    return value


def _impossible_in_shape(text: pa.Array, fmt: str) -> np.ndarray:
    """Values of a pinned format's exact shape that name no real day (30/02/1968): impossible
    dates, not unparseable ones."""
    found = np.zeros(len(text), dtype=bool)
    if fmt in _STRPTIME_SHAPES:
        parts = {k: np.full(len(text), -1, dtype=np.int64) for k in _PARTS}
        _by_shape(text, [_template(_STRPTIME_SHAPES[fmt])], parts, found,
                  check=lambda got: ~real_ymd(got["y"], got["m"], got["d"]))
    return found


def _parse_uniques(uniques: np.ndarray, dayfirst: bool, fmt: str | None, keep_time: bool) -> pd.DataFrame:
    text = _clean(uniques)
    n = len(text)
    missing = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True).to_numpy(zero_copy_only=False)
    excel = np.zeros(n, dtype=bool)
    if fmt is not None:
        value = _strptime(text, fmt)
        matched = ~missing & ~np.isnat(value)
        impossible = ~missing & ~matched & _impossible_in_shape(text, fmt)
        out_of_range = np.zeros(n, dtype=bool)
    else:
        parts, matched = _components(text, dayfirst)
        y = parts["y"]
        in_range = (y >= _YEAR_MIN) & (y <= _YEAR_MAX)
        real = matched & real_ymd(y, parts["m"], parts["d"]) & _time_ok(parts)
        impossible = matched & ~real
        out_of_range = real & ~in_range
        value = _assemble(parts, real & in_range)
        # Excel serial day numbers, only for values no date format explains.
        todo = np.flatnonzero(~matched & ~missing)
        serial = _extract(text.take(pa.array(todo)), _EXCEL_RE) if len(todo) else {}
        if "serial" in serial:
            days = serial["serial"]
            hit = serial["matched"] & (days >= _EXCEL_MIN) & (days <= _EXCEL_MAX)
            excel[todo[hit]] = True
            value[todo[hit]] = _EXCEL_EPOCH + days[hit].astype("timedelta64[D]")
            matched = matched | excel
    if not keep_time:
        value = value.astype("datetime64[D]").astype("datetime64[ns]")
    unparseable = ~missing & ~matched
    invalid = unparseable | impossible | out_of_range
    status = _STATUS.take(pa.array(np.select([missing, invalid], [2, 1], 0).astype(np.int8)))
    note = np.select([impossible, out_of_range, unparseable, excel], [0, 1, 2, 3], 4).astype(np.int8)
    note = _NOTES.take(pa.array(note, mask=note == 4))
    value[invalid | missing] = np.datetime64("NaT")
    return pd.DataFrame({"value": value, "status": strings(status), "note": strings(note)})


def parse_dates(values: pd.Series, dayfirst: bool = False, fmt: str | None = None) -> pd.DataFrame:
    """Raw date strings -> value (datetime64[ns], midnight), status, note. Times are dropped.
    fmt (strptime pattern) pins one format; dayfirst enables DD/MM/YYYY."""
    return per_unique(values, lambda u: _parse_uniques(u, dayfirst, fmt, keep_time=False), arrow=True)


def parse_timestamps(values: pd.Series, dayfirst: bool = False, fmt: str | None = None) -> pd.DataFrame:
    """Raw timestamp strings -> value (datetime64[ns]), status, note; a bare date is midnight."""
    return per_unique(values, lambda u: _parse_uniques(u, dayfirst, fmt, keep_time=True), arrow=True)
