"""Regenerate standards/codes/region.csv from the GB/T 2260 history file.

Source: "areacodes" by yescallop, result.csv at commit eed219a, CC0 1.0, kept in
standards/reference/. Run: python -m govdata.standards.build_region_table [SRC [DEST]]
Every source row is kept (6,823): a code reused for a renamed/re-levelled division appears
once per period, so (code, valid_from) is the key, not code alone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

DEFAULT_SOURCE = Path(__file__).resolve().parent / "reference" / "gbt2260_history.csv"
DEFAULT_DEST = Path(__file__).resolve().parent / "codes" / "region.csv"

SOURCE_COLUMNS = {
    "代码": "code", "一级行政区": "province", "二级行政区": "prefecture", "名称": "name",
    "级别": "level", "状态": "status", "启用时间": "valid_from", "变更/弃用时间": "valid_to",
    "新代码": "successors",
}
LEVELS = {"省级": "province", "地级": "prefecture", "县级": "county"}
# 变更 = the code lives on under another name/level; the row records the earlier period.
STATUSES = {"在用": "current", "弃用": "abolished", "变更": "changed"}
# Second-level column says 直辖 for counties directly under a province/municipality.
DIRECTLY_ADMINISTERED = "直辖"
REGION_COLUMNS = ["code", "name", "level", "status", "valid_from", "valid_to", "successors",
                  "province", "prefecture", "successor_years"]
SUCCESSOR = r"^(?P<code>\d{6})(?:\[(?P<year>\d{4})\])?$"


def strip_successor_years(successors: pd.Series) -> pd.Series:
    """'130108[2001];130111' -> '130108;130111' (the bracketed year of each change dropped)."""
    return successors.str.replace(r"\[\d{4}\]", "", regex=True)


def successor_years(successors: pd.Series, valid_to: pd.Series) -> pd.Series:
    """Year each successor took over, aligned with `successors`: the bracketed year, else the
    year the code ended ('130108[2001];130111' ending 2014 -> '2001;2014'). Keeps the source's
    distinction between earlier partial transfers and the successors at the end."""
    parts = successors.str.split(";").explode()
    parts = parts[parts != ""]
    found = parts.str.extract(SUCCESSOR)
    if found["code"].isna().any():
        bad = sorted(set(parts[found["code"].isna()]))[:5]
        raise ValueError(f"column 新代码: unexpected successor entries {bad}, expected CODE or CODE[YEAR]")
    years = found["year"].fillna(valid_to.reindex(found.index))
    joined = years.groupby(level=0).agg(";".join)
    return joined.reindex(successors.index, fill_value="")


def translate(values: pd.Series, mapping: dict[str, str], column: str) -> pd.Series:
    unknown = sorted(set(values) - set(mapping))
    if unknown:
        raise ValueError(f"column {column}: unexpected values {unknown}, expected {sorted(mapping)}")
    return values.map(mapping)


def build_region_table(source: Path) -> pd.DataFrame:
    raw = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = set(SOURCE_COLUMNS) - set(raw.columns)
    if missing:
        raise ValueError(f"{source}: missing columns {sorted(missing)}")
    table = raw.rename(columns=SOURCE_COLUMNS)
    table["level"] = translate(table["level"], LEVELS, "级别")
    table["status"] = translate(table["status"], STATUSES, "状态")
    table["successor_years"] = successor_years(table["successors"], table["valid_to"])
    table["successors"] = strip_successor_years(table["successors"])
    table["prefecture"] = table["prefecture"].replace(DIRECTLY_ADMINISTERED, "")
    return table[REGION_COLUMNS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m govdata.standards.build_region_table",
                                     description="Regenerate region.csv from the GB/T 2260 history file.")
    parser.add_argument("source", type=Path, nargs="?", default=DEFAULT_SOURCE,
                        help=f"the history CSV (yescallop/areacodes result.csv); default {DEFAULT_SOURCE}")
    parser.add_argument("dest", type=Path, nargs="?", default=DEFAULT_DEST, help=f"default {DEFAULT_DEST}")
    args = parser.parse_args(argv)
    table = build_region_table(args.source)
    table.to_csv(args.dest, index=False, lineterminator="\n")
    print(f"wrote {len(table)} rows to {args.dest}")


if __name__ == "__main__":
    main()
