"""Mojibake: GBK/GB18030 bytes that a legacy system decoded as Latin-1 or Windows-1252
(ÕÅÈý for 张三) are recognised and decoded again, with a note for the quarantine."""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from govdata.transforms.names import _CACHE_SIZE, _HAN, _HAN_CLASS
from govdata.transforms.unique import as_text, per_unique, strings


_LEGIT_SCRIPTS = re.compile(r"[\x00-\x7f\u0f00-\u0fff\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff"
                            r"\u1800-\u18af\ua000-\ua4cf\u0300-\u036f\u00b7]")
_CJK_TEXT = re.compile(rf"[{_HAN_CLASS}\u3000-\u303f\uff00-\uffef\u00b7]")
_NAME_TEXT = re.compile(rf"[{_HAN_CLASS}\u00b7\uff08\uff09]+")


def _legacy_bytes(text: str) -> bytes | None:
    """The bytes a Latin-1 / Windows-1252 decoder turned into text (C1 controls are the bytes
    Windows-1252 leaves undefined), or None when a character has no such byte."""
    out = bytearray()
    for ch in text:
        o = ord(ch)
        if o < 256:
            out.append(o)
        else:
            try:
                out += ch.encode("cp1252")
            except UnicodeEncodeError:
                return None
    return bytes(out)


def _plausible(fixed: str, address: bool) -> bool:
    if not _HAN.search(fixed):
        return False
    if not address:
        return bool(_NAME_TEXT.fullmatch(fixed))
    if any(ord(c) > 127 and not _CJK_TEXT.match(c) for c in fixed):
        return False
    han = len(_HAN.findall(fixed))
    return han >= 2 and sum(c.isascii() and c.isalpha() for c in fixed) <= han


@lru_cache(maxsize=_CACHE_SIZE)
def unmojibake(text: str, address: bool = False) -> str | None:
    """The Chinese text behind GBK/GB18030 bytes a legacy system decoded as Latin-1 or
    Windows-1252 ('ÕÅÈý' -> '张三') or as UTF-8 (Greek/Cyrillic-looking pairs), else None.
    Only text without any Han character is tried, and a repair is kept only when it reads as
    Chinese (a name: Han and middle dots only; an address: Han, CJK punctuation, ASCII digits,
    no more latin letters than Han): José or Müller stay as they are."""
    stripped = text.strip()
    if stripped.isascii() or _HAN.search(stripped) or "\ufffd" in stripped:
        return None
    tries = []
    raw = _legacy_bytes(stripped)
    if raw is not None:
        tries.append(raw)
    if not all(_LEGIT_SCRIPTS.match(c) for c in stripped):   # script a name cannot be in
        tries.append(stripped.encode("utf-8"))
    for data in tries:
        try:
            fixed = data.decode("gb18030")
        except UnicodeDecodeError:
            continue
        if _plausible(fixed, address):
            return fixed
    return None


def repair_mojibake(values: pd.Series, address: bool = False) -> tuple[pd.Series, pd.Series]:
    """(values with mojibake repaired, repaired flag), per unique value. Only strings holding a
    character outside ASCII and no Han character (an Arrow regex finds them) are tried."""
    text = as_text(values.to_numpy(dtype=object, na_value=None))
    candidate = pc.fill_null(pc.match_substring_regex(text, r"^[^\p{Han}]*[^\x00-\x7f][^\p{Han}]*$"), False)
    hit = candidate.to_numpy(zero_copy_only=False)
    repaired = pd.Series(False, index=values.index)
    if not hit.any():
        return values, repaired
    sub = values[hit]

    def compute(uniques: np.ndarray) -> pd.DataFrame:
        fixed = [None if not isinstance(v, str) else unmojibake(v, address) for v in uniques]
        return pd.DataFrame({"fixed": strings(np.array(fixed, dtype=object))})

    fixed = per_unique(sub, compute)["fixed"]
    ok = fixed.notna()
    if not ok.any():
        return values, repaired
    out = values.astype(object).copy()
    out[fixed.index[ok.to_numpy()]] = fixed[ok].astype(object).to_numpy()
    repaired[fixed.index[ok.to_numpy()]] = True
    return out, repaired
