"""Follow GB/T 2260 history: which code(s) in use today cover an old code's territory.

An old ID number or register keeps the code of its time (110103 崇文区, abolished 2010); analysts
group by today's divisions (110101 东城区). Only successors that took over when a code ended
count (successor_years == valid_to); earlier partial transfers do not move the whole code.
"""
from __future__ import annotations

import pandas as pd

CURRENT = "current"


def end_successors(regions: pd.DataFrame) -> dict[str, list[str]]:
    """code -> successors at the end of its latest period, for codes not in use today."""
    ended = regions[~regions["code"].isin(regions.loc[regions["status"] == CURRENT, "code"])]
    latest = ended.sort_values("valid_to").drop_duplicates("code", keep="last")
    result: dict[str, list[str]] = {}
    for code, successors, years, valid_to in zip(latest["code"], latest["successors"],
                                                 latest["successor_years"], latest["valid_to"]):
        pairs = list(zip(successors.split(";"), years.split(";"))) if successors else []
        at_end = [s for s, y in pairs if y == valid_to]
        result[code] = at_end or [s for s, _ in pairs]
    return result


def current_codes_map(regions: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """Every code in the history -> sorted current codes covering it (empty if the chain ends
    without one). Chains (A -> B -> C) are followed; cycles are cut."""
    current = set(regions.loc[regions["status"] == CURRENT, "code"])
    successors = end_successors(regions)
    resolved: dict[str, tuple[str, ...]] = {code: (code,) for code in current}

    def resolve(code: str, seen: frozenset[str]) -> tuple[str, ...]:
        if code in resolved:
            return resolved[code]
        if code in seen:
            return ()
        found = sorted({c for s in successors.get(code, []) for c in resolve(s, seen | {code})})
        resolved[code] = tuple(found)
        return resolved[code]

    for code in successors:
        resolve(code, frozenset())
    return resolved


def resolve_current(codes: pd.Series, regions: pd.DataFrame) -> pd.DataFrame:
    """Per value: `current_code` when exactly one current code covers it (else NULL) and
    `current_codes` (';'-joined, '' when none; NULL for codes not in the history)."""
    mapping = current_codes_map(regions)
    joined = {code: ";".join(found) for code, found in mapping.items()}
    single = {code: found[0] for code, found in mapping.items() if len(found) == 1}
    return pd.DataFrame({"current_code": codes.map(single).astype("string"),
                         "current_codes": codes.map(joined).astype("string")}, index=codes.index)
