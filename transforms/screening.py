"""Row-level fault isolation before any normaliser: NULL spellings, control characters,
undecodable bytes and over-long values are recognised per value (Arrow, vectorised), so one bad
cell is a quarantine row and never an exception; record keys are canonicalised as text."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.transforms.unique import (any_byte, arrow_text, label_where, nfkc, strings)


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
