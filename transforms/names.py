"""Person name normalisation (enterprise names: transforms/enterprise_names.py; mojibake repair:
transforms/mojibake.py).

Person names: NFKC; Chinese names lose all inner whitespace (U+3000 included), traditional
characters become simplified (OpenCC t2s) and every middle-dot variant becomes U+00B7;
name_pinyin is the toneless lower-case pinyin without separators (pypinyin lazy_pinyin) —
the cross-script key. Latin-only names ('Zhang San') give name NA, name_latin 'ZHANG SAN'
and name_pinyin 'zhangsan' (latin_name_keys gives their order-free key). A rare character (生僻字)
another system could not type stays as it was typed, in one spelling: a placeholder (* ? □ ＊ ？)
becomes '*' (name_pinyin NULL: its reading is unknown), a pinyin run becomes lower case
(王HONG -> 王hong, pinyin wanghong); name_agreement scores such names 0.5 against the full name.
Known limits: surname readings (曾 zeng, 单 shan) follow pypinyin's default reading unless
surname_readings is given; t2s also folds 於 to 于.
OpenCC and pypinyin are the slow parts: every distinct name is computed once per process
(memoised), and once per call through per_unique.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import Mapping

import numpy as np
import opencc
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pypinyin import lazy_pinyin

from govdata.transforms.unique import as_text, nfkc, per_unique, strings

_T2S = opencc.OpenCC("t2s")
_CACHE_SIZE = 1 << 20
_OPENCC_DICTS = Path(opencc.__file__).resolve().parent / "dictionary"


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    """Every character OpenCC t2s may change: TSCharacters keys that map elsewhere, plus
    the characters a TSPhrases entry rewrites. Text without any of them is already
    simplified, so OpenCC (the slow part) is skipped for it."""
    chars: set[str] = set()
    for line in (_OPENCC_DICTS / "TSCharacters.txt").read_text(encoding="utf-8").splitlines():
        key, targets = line.split("\t")
        if key != targets.split(" ")[0]:
            chars.add(key)
    for line in (_OPENCC_DICTS / "TSPhrases.txt").read_text(encoding="utf-8").splitlines():
        key, targets = line.split("\t")
        chars.update(a for a, b in zip(key, targets.split(" ")[0]) if a != b)
    return frozenset(chars)


@lru_cache(maxsize=1)
def _traditional_re() -> re.Pattern[str]:
    return re.compile(traditional_class())


@lru_cache(maxsize=1)
def traditional_class() -> str:
    """RE2/Python character class of every character t2s may change."""
    return "[" + "".join(sorted(_traditional_chars())) + "]"


def simplify_arrow(text: pa.Array) -> pa.Array:
    """to_simplified over an Arrow string array: only values holding a traditional
    character (one vectorised regex finds them) go through OpenCC."""
    hit = pc.fill_null(pc.match_substring_regex(text, traditional_class()), False)
    idx = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
    if not len(idx):
        return text
    converted = pa.array([to_simplified(v) for v in text.take(pa.array(idx)).to_pylist()], type=pa.string())
    return pc.replace_with_mask(text, hit, converted)


@lru_cache(maxsize=_CACHE_SIZE)
def to_simplified(text: str) -> str:
    """OpenCC t2s, only run when the text holds a character it may change."""
    return _T2S.convert(text) if _traditional_re().search(text) else text
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN_NAME = re.compile(r"[A-Za-z\u00c0-\u024f\s'.,\-\u00b7]+")
_SPACES = re.compile(r"[\s\u3000\u200b\ufeff]+")
# Middle-dot variants seen in minority and foreign names (after NFKC: U+FF0E -> '.',
# U+FF65 -> U+30FB).
_DOTS = re.compile(r"[\u00b7\u2022\uff0e.\u30fb\u2027\u2219\uff65\u22c5\u0387]+")
_MIDDLE_DOT = "\u00b7"
_NOT_KEY = re.compile(r"[^a-z0-9]")


def _fold_latin(text: str) -> str:
    """Accents off (Zhāng -> zhang), ü as pypinyin writes it (v), letters and digits only."""
    text = text.replace("ü", "v").replace("Ü", "V")
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_KEY.sub("", ascii_.lower())


@lru_cache(maxsize=None)
def _char_pinyin(ch: str) -> str:
    """Toneless pinyin of one character (pypinyin's reading; names are not phrases, so
    per-character readings are as good as phrase matching and far cheaper)."""
    return lazy_pinyin(ch)[0]


@lru_cache(maxsize=_CACHE_SIZE)
def _person_name(raw: str, surnames: tuple[tuple[str, str], ...] = ()) -> tuple[str | None, str | None, str | None]:
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        return None, None, None
    if not _HAN.search(text):
        if not _LATIN_NAME.fullmatch(text) or not re.search(r"[A-Za-z\u00c0-\u024f]", text):
            return _SPACES.sub("", text), None, None  # neither Chinese nor latin: keep as given
        latin = " ".join(text.upper().split())
        return None, latin, _fold_latin(text) or None
    name = _DOTS.sub(_MIDDLE_DOT, _SPACES.sub("", text)).strip(_MIDDLE_DOT)
    name = to_simplified(name)
    if has_stand_in(name):   # a rare character typed as a placeholder or as its pinyin
        name = _LATIN_RUN.sub(lambda m: m.group(0).lower(), _PLACEHOLDER_RE.sub(PLACEHOLDER, name))
        if PLACEHOLDER in name:   # the missing character's reading is unknown
            return name, None, None
    syllables = [_char_pinyin(ch) for ch in name if ch != _MIDDLE_DOT]
    readings = dict(surnames)
    if readings and name[0] in readings:
        syllables[0] = readings[name[0]]
    return name, None, _NOT_KEY.sub("", "".join(syllables).lower()) or None


class _PinyinTable:
    """Character -> toneless pinyin as two Arrow arrays, grown as new characters appear, so
    the pinyin of plain Chinese names is computed with Arrow kernels, not per name."""

    def __init__(self) -> None:
        self.chars = pa.array([], type=pa.string())
        self.readings = pa.array([], type=pa.string())

    def add_missing(self, chars: pa.Array) -> None:
        new = pc.filter(chars, pc.invert(pc.is_in(chars, value_set=self.chars)))
        new = [c for c in new.to_pylist() if c]
        if new:
            self.chars = pa.concat_arrays([self.chars, pa.array(new, type=pa.string())])
            self.readings = pa.concat_arrays([self.readings, pa.array(
                [_NOT_KEY.sub("", _char_pinyin(c).lower()) for c in new], type=pa.string())])

    def pinyin(self, names: pa.Array, longest: int) -> pa.Array:
        """Concatenated readings of every character of every name."""
        columns = [pc.utf8_slice_codeunits(names, i, i + 1) for i in range(longest)]
        if columns:
            self.add_missing(pc.unique(pa.chunked_array(columns)))
        parts = [pc.fill_null(self.readings.take(pc.index_in(col, value_set=self.chars)), "") for col in columns]
        return pc.binary_join_element_wise(*parts, "") if parts else names


_PINYIN = _PinyinTable()
_PLAIN_CHINESE = r"^[\x{4E00}-\x{9FFF}]{1,8}$"


def _plain_names(text: pa.Array, surnames: tuple[tuple[str, str], ...]) -> tuple[pa.Array, pa.Array]:
    """(name, pinyin) for names of plain CJK characters only: simplified, pinyin by table."""
    names = simplify_arrow(text)
    longest = pc.max(pc.utf8_length(names)).as_py() or 0
    pinyin = _PINYIN.pinyin(names, longest)
    if surnames:
        first = pc.utf8_slice_codeunits(names, 0, 1)
        keys = pa.array([k for k, _ in surnames], type=pa.string())
        override = pa.array([v for _, v in surnames], type=pa.string()).take(pc.index_in(first, value_set=keys))
        rest = _PINYIN.pinyin(pc.utf8_slice_codeunits(names, 1, longest), max(longest - 1, 0)) \
            if longest > 1 else pa.array([""] * len(names), type=pa.string())
        pinyin = pc.if_else(pc.is_valid(override), pc.binary_join_element_wise(override, rest, ""), pinyin)
    return names, pinyin


def _compute_person_uniques(uniques: np.ndarray, surnames: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    text = nfkc(as_text(uniques))
    plain = pc.fill_null(pc.match_substring_regex(text, _PLAIN_CHINESE), False)
    n = len(text)
    name = pa.nulls(n, pa.string())
    latin = pa.nulls(n, pa.string())
    pinyin = pa.nulls(n, pa.string())
    if pc.any(plain).as_py():
        fast_name, fast_pinyin = _plain_names(pc.filter(text, plain), surnames)
        name = pc.replace_with_mask(name, plain, fast_name)
        pinyin = pc.replace_with_mask(pinyin, plain, fast_pinyin)
    # Everything else (spaces, dots, latin, rare characters) one by one, memoised.
    other = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
    if len(other):
        rows = [(None, None, None) if v is None else _person_name(v, surnames)
                for v in text.take(pa.array(other)).to_pylist()]
        mask = pa.array(~plain.to_numpy(zero_copy_only=False))
        for k, target in enumerate(("name", "latin", "pinyin")):
            values = pa.array([r[k] for r in rows], type=pa.string())
            if target == "name":
                name = pc.replace_with_mask(name, mask, values)
            elif target == "latin":
                latin = pc.replace_with_mask(latin, mask, values)
            else:
                pinyin = pc.replace_with_mask(pinyin, mask, values)
    return pd.DataFrame({"name": strings(name), "name_latin": strings(latin), "name_pinyin": strings(pinyin)})


# raw name -> (name, name_latin, name_pinyin) per surname_readings, kept for the life of the
# process: the same names come back in every source and every run, and a dict lookup is
# far cheaper than recomputing them with Arrow kernels.
_PERSON_MEMO: dict[tuple[tuple[str, str], ...], dict[str, tuple[str | None, str | None, str | None]]] = {}


def _person_uniques(uniques: np.ndarray, surnames: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    memo = _PERSON_MEMO.setdefault(surnames, {})
    values = uniques.tolist()
    try:  # only strings are ever stored, so any other value simply misses
        got = list(map(memo.get, values))
    except TypeError:  # an unhashable raw value
        got = [memo.get(v) if type(v) is str else None for v in values]
    miss = [i for i, g in enumerate(got) if g is None]
    if miss:
        todo = uniques[miss] if len(miss) < len(uniques) else uniques
        fresh = _compute_person_uniques(todo, surnames)
        if len(memo) + len(miss) > _CACHE_SIZE:
            memo.clear()
        rows = zip(*(fresh[c].array.__arrow_array__().to_pylist() for c in ("name", "name_latin", "name_pinyin")))
        for i, row in zip(miss, rows):
            got[i] = row
            v = values[i]
            if type(v) is str:
                memo[v] = row
        if len(miss) == len(uniques):
            return fresh
    return pd.DataFrame({c: strings(pa.array(list(map(itemgetter(k), got)), type=pa.string()))
                         for k, c in enumerate(("name", "name_latin", "name_pinyin"))})


def normalise_person_names(values: pd.Series, surname_readings: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Raw person names -> name, name_latin, name_pinyin (see module doc).
    surname_readings (e.g. {'曾': 'zeng', '单': 'shan'}) overrides the first syllable."""
    surnames = tuple(sorted((surname_readings or {}).items()))
    return per_unique(values, lambda u: _person_uniques(u, surnames), dedupe=True)


# ---------------------------------------------------------------- foreigners' latin names
_LATIN_SPLIT = re.compile(r"[\s\-\u2010-\u2015,.'\u00b7]+")


@lru_cache(maxsize=_CACHE_SIZE)
def _latin_key(text: str) -> str | None:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    tokens = [_NOT_KEY.sub("", t) for t in _LATIN_SPLIT.split(folded)]
    tokens = sorted(t.upper() for t in tokens if t)
    return " ".join(tokens) or None


def latin_name_keys(name_latin: pd.Series) -> pd.Series:
    """Order-free key of a latin name: accents off, upper case, split at blanks, hyphens, commas
    and dots, tokens sorted ('Dupont, Jean-Pierre' and 'JEAN PIERRE DUPONT' -> 'DUPONT JEAN
    PIERRE'), so surname-first and surname-last spellings of one person compare equal."""
    def compute(uniques: np.ndarray) -> pd.DataFrame:
        keys = [None if v is None or v is pd.NA or not isinstance(v, str) else _latin_key(v) for v in uniques]
        return pd.DataFrame({"key": strings(np.array(keys, dtype=object))})
    return per_unique(name_latin, compute)["key"]


# ---------------------------------------------------------------- rare characters (生僻字)
# What other systems typed for a character they could not enter: a placeholder (after NFKC the
# full-width ？＊ are ? *), or the character's pinyin in latin letters (王hong, 王HONG).
PLACEHOLDERS = "*?\u25a1"        # * ? □ (also ＊ ？ via NFKC)
PLACEHOLDER = "*"                # the one standard spelling
_PLACEHOLDER_RE = re.compile(r"[*?\u25a1\uff0a\uff1f]")
_HAN_CLASS = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# a Chinese name with rare-character stand-ins: Han, placeholders and latin pinyin runs, at least one Han
RARE_NAME = re.compile(rf"(?=.*[{_HAN_CLASS}])[{_HAN_CLASS}\u00b7*?\u25a1A-Za-z]+")
# the same as an RE2 pattern, for Arrow (normalise's invalid_name exception)
RARE_NAME_RE2 = r"^[\p{Han}·*?\x{25A1}A-Za-z]*\p{Han}[\p{Han}·*?\x{25A1}A-Za-z]*$"
_LATIN_RUN = re.compile(r"[A-Za-z]+")


def has_stand_in(name: str) -> bool:
    """A Chinese name holding a placeholder or latin letters (pinyin for a rare character)."""
    return bool(_HAN.search(name)) and bool(_PLACEHOLDER_RE.search(name) or _LATIN_RUN.search(name))


def _units(name: str) -> list[str]:
    """Characters of a name, a latin run (pinyin of one character) counting as one unit."""
    return [m.group(0) for m in re.finditer(r"[A-Za-z]+|.", name.replace(_MIDDLE_DOT, ""))]


def encodable(text: str, codec: str) -> bool:
    """Whether a legacy codec (gb2312, gbk) can write text at all."""
    try:
        text.encode(codec)
        return True
    except UnicodeEncodeError:
        return False


def _unit_level(a: str, b: str) -> float:
    """1 same unit, 0.5 a stand-in for it (placeholder, its pinyin, a homophone of a rare
    character), 0 otherwise."""
    if a == b:
        return 1.0
    if a in PLACEHOLDERS or b in PLACEHOLDERS:
        return 0.5
    la, lb = a.isascii(), b.isascii()
    if la and lb:
        return 0.0
    if la or lb:   # pinyin typed for the character
        latin, han = (a, b) if la else (b, a)
        return 0.5 if latin.lower() == _char_pinyin(han) else 0.0
    # a common homophone typed for a rare character (one outside GB 2312)
    if (not encodable(a, "gb2312") or not encodable(b, "gb2312")) and _char_pinyin(a) == _char_pinyin(b):
        return 0.5
    return 0.0


@lru_cache(maxsize=_CACHE_SIZE)
def name_agreement(a: str, b: str) -> float:
    """Agreement level of two normalised Chinese names: 1 equal, 0.5 equal once placeholders,
    pinyin runs and homophones of rare characters are taken as the character they stand for,
    0 otherwise. Latin-only names (no Han) are not compared here (see latin_name_keys)."""
    if a == b:
        return 1.0
    ua, ub = _units(a), _units(b)
    if len(ua) != len(ub):
        return 0.0
    level = 1.0
    for x, y in zip(ua, ub):
        level = min(level, _unit_level(x, y))
        if level == 0.0:
            return 0.0
    return level
