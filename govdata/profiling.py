"""Column profiling for `govdata sources suggest`: what a column holds, read from its values
alone (checksum pass rates, code-table shares, character classes, patterns), each guess with
its evidence and rate (Evidence)."""
from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass

import pandas as pd

SAMPLE_ROWS = 5000
MIN_RATE = 0.8
CODE_SHARE = 0.9   # share of a column's distinct values that must be in a code table



def _profiling_settings() -> dict:
    """govdata/profiling.yaml: the value patterns a column's sample is matched against."""
    import yaml

    return yaml.safe_load((Path(__file__).with_name("profiling.yaml")).read_text(encoding="utf-8"))


_SETTINGS = _profiling_settings()
_PATTERNS = _SETTINGS["patterns"]
CJK_NAME, LATIN_NAME, ENTERPRISE_NAME = _PATTERNS["cjk_name"], _PATTERNS["latin_name"], _PATTERNS["enterprise_name"]
ADDRESS, ISSUER, CERTIFICATE_NO = _PATTERNS["address"], _PATTERNS["issuer"], _PATTERNS["certificate_no"]
UPDATE_NAME = re.compile(_SETTINGS["update_column_name"], re.IGNORECASE)
RESIDENT_ID_TYPES = {"111", "112", "居民身份证", "临时居民身份证", "身份证"}

# element: (code table, alias table); values match the table's codes, names or aliases
CODED = {
    "ethnicity": ("ethnicity", "ethnicity_alias"),
    "region_code": ("region", None),
    "industry_code": ("industry", "industry_alias"),
    "id_type": ("id_document_type", "id_document_type_alias"),
    "service_item_code": ("service_item", None),
    "channel": ("channel", None),
    "certificate_type": ("certificate_type", None),
    "status": ("certificate_status", None),
}


class SuggestError(RuntimeError):
    """A database that cannot be profiled (missing file, unreachable server): one line for the user."""


@dataclass(frozen=True)
class Evidence:
    element: str
    rate: float
    detail: str
    priority: float = 0.0   # among candidates for one element: higher wins (codes over names)

    def comment(self) -> str:
        return f"{self.detail} ({self.rate:.0%} of non-empty sample values)"


def _code_sets(standards, table: str, alias: str | None) -> tuple[set[str], set[str]]:
    """(codes, names and aliases) of a code table, lower-cased."""
    frame = standards.code_tables.get(table)
    if frame is None:
        return set(), set()
    codes = set(frame["code"].str.strip().str.lower())
    names: set[str] = set()
    for column in ("name", "name_en", "letter_code"):
        if column in frame:
            names |= set(frame[column].str.strip().str.lower())
    if alias and alias in standards.code_tables:
        names |= set(standards.code_tables[alias]["alias"].str.strip().str.lower())
    return codes - {""}, names - {""}


def _coded(sample: pd.Series, standards) -> list[Evidence]:
    distinct = pd.Series(sample.str.lower().unique())
    found = []
    for element, (table, alias) in CODED.items():
        codes, names = _code_sets(standards, table, alias)
        if not codes:
            continue
        by_code = float(distinct.isin(codes).mean())
        by_any = float(distinct.isin(codes | names).mean())
        if by_any < CODE_SHARE:
            continue
        rate = float(sample.str.lower().isin(codes | names).mean())
        what = "codes" if by_code >= CODE_SHARE else "names"
        found.append(Evidence(element, rate, f"{by_any:.0%} of {len(distinct)} distinct values are {table} {what}",
                              priority=1.0 if what == "codes" else 0.5))
    return found


def _sex(sample: pd.Series, standards) -> Evidence | None:
    alias = standards.code_table("sex_alias")
    lookup = dict(zip(alias["alias"].str.lower(), alias["code"]))
    lower = sample.str.lower()
    rate = float(lower.isin(lookup.keys()).mean())
    codes = set(lower.map(lookup).dropna())
    if rate >= 0.95 and sample.nunique() <= 6 and {"1", "2"} <= codes:
        return Evidence("sex", rate, f"values within the sex alias set {sorted(sample.unique())[:6]}", 2.0)
    return None


def profile_column(values: pd.Series, standards) -> list[Evidence]:
    """Every element the column's values support, best first (generic roles: `date`, `timestamp`,
    `enterprise_name`, `party_name`, `integer` are given their element per kind by suggest_table)."""
    from govdata.transforms.dates import parse_dates
    from govdata.transforms.codes import normalise_phone
    from govdata.transforms.enterprise_codes import normalise_reg_no, normalise_tax_no, normalise_uscc
    from govdata.transforms.identifiers import normalise_citizen_id

    text = values.astype("string").str.strip()
    non_empty = text.notna() & (text != "")
    if not non_empty.any():
        return []
    sample = text[non_empty]
    found: list[Evidence] = []

    ids = normalise_citizen_id(sample)
    rate = float(ids["status"].isin(["valid", "repaired"]).mean())
    if rate >= MIN_RATE:
        found.append(Evidence("id_number", rate, "GB 11643 check digit passes", 3.0))
    uscc = normalise_uscc(sample)
    rate = float(uscc["status"].isin(["valid", "repaired"]).mean())
    if rate >= MIN_RATE:
        found.append(Evidence("uscc", rate, "GB 32100 check character passes", 3.0))
    if not found and sample.str.fullmatch(r"[0-9A-Z]{15}").mean() >= MIN_RATE:
        for element, normalise, detail in (("reg_no", normalise_reg_no, "15-digit registration number, MOD 11,10 check passes"),
                                           ("tax_no", normalise_tax_no, "15-character tax number: region + GB 11714 organisation code")):
            rate = float((normalise(sample)["status"] == "valid").mean())
            if rate >= MIN_RATE:
                found.append(Evidence(element, rate, detail, 2.5))
    if found:
        return sorted(found, key=lambda e: -e.rate)

    sex = _sex(sample, standards)
    if sex is not None:
        return [sex]

    rate = float(normalise_phone(sample)["status"].eq("valid").mean())   # the phone element's own rule
    if rate >= MIN_RATE:
        return [Evidence("phone", rate, "mobile, landline or E.164 numbers", 2.0)]

    found = sorted(_coded(sample, standards), key=lambda e: (-e.priority, -e.rate))
    if sample.str.fullmatch(r"\d{1,3}").all():
        numbers = sample.astype(int)
        found.append(Evidence("integer", 1.0, f"whole numbers {int(numbers.min())}–{int(numbers.max())}", 0.1))
    if found:
        return found

    dates = parse_dates(sample)
    rate = float((dates["status"] == "valid").mean())
    if rate < MIN_RATE:
        dates = parse_dates(sample, dayfirst=True)   # DD/MM/YYYY
        rate = float((dates["status"] == "valid").mean())
    if rate >= MIN_RATE and not sample.str.fullmatch(r"\d{1,4}").all():
        years = pd.to_datetime(dates["value"]).dt.year.dropna().astype(int)
        has_time = bool(sample.str.contains(r"\d:\d").mean() > 0.5)
        kind = "timestamp" if has_time else "date"
        return [Evidence(kind, rate, f"parses as a {kind}, years {years.min()}–{years.max()}", 1.0)]

    rate = float(sample.str.contains(ADDRESS).mean())
    if rate >= MIN_RATE:
        return [Evidence("address", rate, "Chinese address (省/市/区/县 … 路/街/号)", 1.0)]
    rate = float(sample.str.contains(ISSUER).mean())
    if rate >= MIN_RATE:
        return [Evidence("issuer", rate, "authority names (…局/委/厅)", 1.0)]
    if sample.str.match(CERTIFICATE_NO).mean() >= MIN_RATE:
        return [Evidence("certificate_no", float(sample.str.match(CERTIFICATE_NO).mean()),
                         "letters + digits numbers (licence / certificate numbers)", 1.0)]

    person = sample.str.match(CJK_NAME) & ~sample.str.contains(ENTERPRISE_NAME)
    enterprise = sample.str.contains(ENTERPRISE_NAME)
    if person.mean() >= MIN_RATE and sample.str.len().median() <= 4:
        return [Evidence("name", float(person.mean()), "2–4 CJK characters", 1.0)]
    if enterprise.mean() >= MIN_RATE:
        return [Evidence("enterprise_name", float(enterprise.mean()), "enterprise legal-form words", 1.0)]
    if (person | enterprise).mean() >= MIN_RATE:
        return [Evidence("party_name", float((person | enterprise).mean()),
                         f"person names ({person.mean():.0%}) and enterprise names ({enterprise.mean():.0%})", 1.0)]
    rate = float(sample.str.match(LATIN_NAME).mean())
    if rate >= MIN_RATE:
        return [Evidence("name", rate, "latin words (pinyin name)", 1.0)]
    return []
