"""Enterprise names: NFKC + simplified; parentheses in the Chinese convention, full-width （）;
有限责任公司 is written 有限公司 (one canonical form, so both spellings compare equal); the
leading region (province/city/county names, with or without their 省/市/区/县 suffix) goes to
name_region; name_core drops that prefix and the legal form, so that 北京市某某科技有限公司 and
某某科技（北京）有限责任公司 compare on one core."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd

from govdata.transforms.names import to_simplified
from govdata.transforms.unique import per_unique, strings


# Legal forms, longest first; 有限责任公司 has already been rewritten to 有限公司.
LEGAL_FORMS: tuple[str, ...] = (
    "合伙企业（有限合伙）", "合伙企业（普通合伙）", "农民专业合作社", "个人独资企业",
    "股份有限公司", "（有限合伙）", "（普通合伙）", "专业合作社", "有限公司", "合伙企业", "公司",
)
_REGION_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区",
                    "省", "市", "区", "县")
_NON_ASCII = r"[^\x00-\x7f]"


@lru_cache(maxsize=8)
def _region_prefixes(region_names: tuple[str, ...]) -> tuple[frozenset[str], int]:
    """All spellings a region prefix can take: full names and names without their suffix
    (only when at least two characters remain, so 东区 never yields a bare 东)."""
    variants: set[str] = set()
    for name in region_names:
        name = unicodedata.normalize("NFKC", str(name)).strip()
        if len(name) < 2:
            continue
        variants.add(name)
        for suffix in _REGION_SUFFIXES:
            if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                variants.add(name[: -len(suffix)])
                break
    return frozenset(variants), max((len(v) for v in variants), default=0)


def _canonical_enterprise_name(raw: str) -> str:
    text = to_simplified(unicodedata.normalize("NFKC", raw))
    text = text.replace("(", "（").replace(")", "）")
    text = re.sub(r"\s+", " ", text).strip()
    # Spaces only matter between latin words; next to Chinese characters they are noise.
    text = re.sub(rf"(?<={_NON_ASCII}) | (?={_NON_ASCII})", "", text)
    return text.replace("有限责任公司", "有限公司")


def _split_region(name: str, prefixes: frozenset[str], longest: int) -> tuple[str, str]:
    """Longest region names at the start, repeatedly (浙江省杭州市西湖区…); never eats the
    whole name."""
    pos = 0
    while True:
        for length in range(min(longest, len(name) - pos - 1), 1, -1):
            if name[pos:pos + length] in prefixes:
                pos += length
                break
        else:
            if name[pos:] in _REGION_SUFFIXES:  # 北京市 alone: the name is the region
                return "", name
            return name[:pos], name[pos:]


def _strip_legal_form(core: str) -> str:
    for form in LEGAL_FORMS:
        if core.endswith(form) and len(core) > len(form):
            return core[: -len(form)]
    return core


def _drop_bracketed_region(core: str, prefixes: frozenset[str]) -> tuple[str, str]:
    """某某科技（北京） -> ('某某科技', '北京'): a region in brackets is not part of the core."""
    for match in re.finditer(r"（([^（）]+)）", core):
        if match.group(1) in prefixes and len(core) > len(match.group(0)):
            return core[: match.start()] + core[match.end():], match.group(1)
    return core, ""


def _enterprise_uniques(uniques: np.ndarray, prefixes: frozenset[str], longest: int) -> pd.DataFrame:
    names, cores, regions = [], [], []
    for v in uniques:
        if v is None or v is pd.NA or not str(v).strip():
            names.append(None), cores.append(None), regions.append(None)
            continue
        name = _canonical_enterprise_name(str(v))
        region, core = _split_region(_strip_legal_form(name), prefixes, longest)
        core, inner = _drop_bracketed_region(core, prefixes)
        names.append(name)
        regions.append(region or inner or None)
        cores.append(core or None)
    return pd.DataFrame({
        "name": strings(np.array(names, dtype=object)),
        "name_core": strings(np.array(cores, dtype=object)),
        "name_region": strings(np.array(regions, dtype=object)),
    })


def normalise_enterprise_names(values: pd.Series, region_names: Iterable[str]) -> pd.DataFrame:
    """Raw enterprise names -> name (canonical full name), name_core, name_region."""
    prefixes, longest = _region_prefixes(tuple(sorted(set(map(str, region_names)))))
    return per_unique(values, lambda u: _enterprise_uniques(u, prefixes, longest))
