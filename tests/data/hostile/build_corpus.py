"""The hostile corpus: three department SQLite databases and their source YAMLs, with clean
rows and rows damaged in every way departments damage data (issue 11, item 4).

Deterministic: the same seed writes the same rows. `build(out)` returns the manifest: for each
kind of damage, the records it touched and what the pipeline must do with them — quarantine
with a reason code (the row rejected or only the value), or load a repaired value.

    .venv/bin/python tests/data/hostile/build_corpus.py OUT   # writes OUT/departments, OUT/sources

The tables' columns have no declared type, so SQLite keeps each value's storage class as
written: REAL keys stay REAL, BLOBs stay BLOBs, invalid UTF-8 stays TEXT.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
SEED = 11
PERSONS, APPLICATIONS, ENTERPRISES = 7000, 2500, 800
PER_KIND = 60   # damaged rows per kind (pairs for duplicates)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英霞平刚桂兰华玉萍红梅鑫波斌宇浩凯健俊帆帅旭宁龙林欣佳琳晨阳雪婷倩颖琪子涵轩博文志国建新春海云飞"
TRADITIONAL = [("張偉", "张伟"), ("劉強", "刘强"), ("陳東", "陈东"), ("黃麗", "黄丽"), ("趙國華", "赵国华"),
               ("吳銘", "吴铭"), ("鄭義", "郑义"), ("馬曉東", "马晓东"), ("錢學軍", "钱学军"), ("孫紅", "孙红")]
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"


def check_digit(body17: str) -> str:
    return CHECK[sum(int(c) * w for c, w in zip(body17, WEIGHTS)) % 11]


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)


@dataclass
class Corpus:
    rnd: random.Random
    regions: list[str]
    items: list[str]
    channels: list[str]
    kinds: dict[str, dict] = field(default_factory=dict)
    identifiers: set[str] = field(default_factory=set)   # raw ID and phone numbers, every spelling
    serial: int = 0

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def citizen_id(self) -> str:
        born = dt.date(1950, 1, 1) + dt.timedelta(days=self.rnd.randrange(20000))
        body = f"{self.rnd.choice(self.regions)}{born:%Y%m%d}{self.next_serial() % 1000:03d}"
        number = body + check_digit(body)
        self.identifiers.add(number)
        return number

    def phone(self) -> str:
        number = f"1{self.rnd.choice('3456789')}{self.rnd.randrange(10**9):09d}"
        self.identifiers.add(number)
        return number

    def name(self) -> str:
        return self.rnd.choice(SURNAMES) + "".join(self.rnd.choice(GIVEN) for _ in range(self.rnd.choice((1, 2))))

    def expect(self, kind: str, source: str, description: str, **outcome) -> dict:
        entry = self.kinds.setdefault(kind, {"source": source, "description": description, "records": []})
        entry["records"].append(outcome)
        return outcome


def _person_row(c: Corpus, key) -> list:
    number = c.citizen_id()
    born = f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
    sex = "男" if int(number[16]) % 2 else "女"
    return [key, number, c.name(), sex, born, "汉族", c.phone(), "北京市东城区东华门街道" + str(c.rnd.randrange(1, 99)) + "号"]


PERSON_COLUMNS = ["RKBH", "SFZH", "XM", "XB", "CSRQ", "MZ", "LXDH", "ZZ"]


def persons(c: Corpus) -> Table:
    t = Table("T_RK_HOSTILE", PERSON_COLUMNS)
    n_clean = PERSONS - 28 * PER_KIND
    for i in range(n_clean):
        t.rows.append(_person_row(c, f"P{i:06d}"))
    col = {name: i for i, name in enumerate(PERSON_COLUMNS)}
    src = "h_person"

    def damaged(kind: str, description: str, key, change, **outcome):
        row = _person_row(c, key)
        change(row)
        t.rows.append(row)
        return c.expect(kind, src, description, **outcome)

    base = 100000
    for k in range(PER_KIND):
        i = base + k * 100
        damaged("null_key", "primary key NULL", None, lambda r: None, reason="missing_key", rejected=True)
        damaged("blank_key", "primary key '' or blanks", ["", "   ", "\u3000"][k % 3], lambda r: None,
                reason="missing_key", rejected=True)
        damaged("nullish_key", "primary key 'NULL' / 'N/A'", ["NULL", "N/A", "null"][k % 3], lambda r: None,
                reason="missing_key", rejected=True)
        # two rows with one key and different content: both rejected
        damaged("duplicate_key_conflicting", "one key, two different records", f"D{i}", lambda r: None,
                reason="duplicate_key", rejected=True, record_id=f"D{i}#1")
        damaged("duplicate_key_conflicting", "one key, two different records", f"D{i}", lambda r: None,
                reason="duplicate_key", rejected=True, record_id=f"D{i}#2")
        # the same record delivered twice: the first kept, the copy rejected
        row = _person_row(c, f"E{i}")
        t.rows.append(row)
        t.rows.append(list(row))
        c.expect("duplicate_key_identical", src, "one record delivered twice", reason="duplicate_key",
                 rejected=True, record_id=f"E{i}#2")
        c.expect("duplicate_key_identical", src, "one record delivered twice", loaded=f"E{i}")
        damaged("padded_key", "primary key with surrounding blanks", f"  W{i} ", lambda r: None, loaded=f"W{i}")
        # a padded copy of an existing key is that key's duplicate
        t.rows.append(_person_row(c, f"V{i}"))
        damaged("padded_duplicate_key", "' K ' next to 'K' (different records)", f" V{i}", lambda r: None,
                reason="duplicate_key", rejected=True, record_id=f"V{i}#1")
        c.kinds["padded_duplicate_key"]["records"].append({"reason": "duplicate_key", "rejected": True,
                                                           "record_id": f"V{i}#2"})
        real = 110000000000000000 + 16 * k   # exactly representable doubles
        damaged("real_key", "primary key stored as REAL", float(real), lambda r: None, loaded=str(real))
        fullwidth_key = "".join(chr(ord(ch) + 0xFEE0) for ch in f"{900000 + k}")
        damaged("fullwidth_key", "primary key in full-width digits", fullwidth_key, lambda r: None,
                loaded=f"{900000 + k}")
        key = f"X{i}"
        damaged("invalid_utf8", "invalid UTF-8 bytes stored as TEXT (address)", key,
                lambda r: r.__setitem__(col["ZZ"], b"\xff\xfe\xfd\xe5\xbc".decode("latin-1")), reason="undecodable",
                rejected=False, record_id=key, element="address", text_bytes=True)
        key = f"G{i}"
        gbk = c.name().encode("gbk")
        try:  # some GBK byte pairs are valid UTF-8 too: they decode to mojibake, repaired (kept, noted)
            gbk.decode("utf-8")
            outcome = dict(reason="repaired_mojibake", rejected=False, element="name")
        except UnicodeDecodeError:
            outcome = dict(reason="undecodable", rejected=True)
        damaged("mixed_encoding", "GBK bytes in a UTF-8 database (name)", key,
                lambda r: r.__setitem__(col["XM"], gbk.decode("latin-1")),
                record_id=key, text_bytes=True, **outcome)
        key = f"B{i}"
        damaged("blob", "address stored as a BLOB of non-UTF-8 bytes", key,
                lambda r: r.__setitem__(col["ZZ"], bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, k % 256])),
                reason="undecodable", rejected=False, record_id=key, element="address")
        key = f"C{i}"
        damaged("control_characters", "NUL, C0 and C1 controls inside the name", key,
                lambda r: r.__setitem__(col["XM"], r[col["XM"]][0] + "\x00\x07\x85" + r[col["XM"]][1:]),
                reason="control_characters", rejected=False, record_id=key, element="name")
        key = f"A{i}"
        damaged("ansi_escape", "ANSI escape sequences around the name", key,
                lambda r: r.__setitem__(col["XM"], "\x1b[31;1m" + r[col["XM"]] + "\x1b[0m"),
                reason="control_characters", rejected=False, record_id=key, element="name")
        key = f"Z{i}"
        damaged("zero_width", "zero-width space inside the name", key,
                lambda r: r.__setitem__(col["XM"], r[col["XM"]][0] + "\u200b" + r[col["XM"]][1:]),
                reason="control_characters", rejected=False, record_id=key, element="name")
        key = f"O{i}"
        damaged("bom", "byte-order mark in front of the address", key,
                lambda r: r.__setitem__(col["ZZ"], "\ufeff" + r[col["ZZ"]]),
                reason="control_characters", rejected=False, record_id=key, element="address")
        key = f"H{i}"
        damaged("huge_text", "an address of 1,000 to 100,000 characters", key,
                lambda r: r.__setitem__(col["ZZ"], "北京市" + "很长" * (50_000 if k < 5 else 500)),
                reason="too_long", rejected=False, record_id=key, element="address")
        key = f"F{i}"
        damaged("fullwidth_id", "ID number in full-width digits", key,
                lambda r: r.__setitem__(col["SFZH"], "".join(chr(ord(ch) + 0xFEE0) for ch in r[col["SFZH"]])),
                loaded=key, id_status="repaired")
        key = f"S{i}"

        def fifteen(r):
            # 15-digit numbers were issued to people born 19xx: region + yymmdd + serial
            # (the serial's last digit keeps the sex the row states)
            body = f"{r[col['SFZH']][:6]}19{50 + k % 40}{1 + k % 12:02d}{1 + k % 28:02d}{k % 100:02d}{r[col['SFZH']][16]}"
            r[col["SFZH"]] = body[:6] + body[8:]
            r[col["CSRQ"]] = f"{body[6:10]}-{body[10:12]}-{body[12:14]}"
            c.identifiers.update((r[col["SFZH"]], body + check_digit(body)))
        damaged("id_15_digit", "old 15-digit ID number", key, fifteen, loaded=key, id_status="repaired")
        key = f"K{i}"

        def wrong_check(r):
            number = r[col["SFZH"]]
            wrong = CHECK[(CHECK.index(number[-1]) + 1) % 11]
            r[col["SFZH"]] = number[:-1] + wrong
            c.identifiers.add(r[col["SFZH"]])
        damaged("bad_check_digit", "ID number with a wrong check digit", key, wrong_check,
                reason="invalid_id_number", rejected=False, record_id=key, element="id_number")
        key = f"I{i}"
        damaged("impossible_date", "birth date 30 February", key,
                lambda r: r.__setitem__(col["CSRQ"], f"19{70 + k % 30}-02-30"),
                reason="impossible_date", rejected=False, record_id=key, element="birth_date")
        key = f"L{i}"
        serial_day = dt.date(1980, 1, 1) + dt.timedelta(days=k * 97)
        damaged("excel_serial_date", "birth date as an Excel serial number", key,
                lambda r: r.__setitem__(col["CSRQ"], str((serial_day - dt.date(1899, 12, 30)).days)),
                loaded=key, birth_date=serial_day.isoformat())
        key = f"T{i}"
        traditional, simplified = TRADITIONAL[k % len(TRADITIONAL)]
        damaged("traditional_name", "name in traditional characters", key,
                lambda r: r.__setitem__(col["XM"], traditional), loaded=key, name=simplified)
        key = f"J{i}"
        damaged("emoji_name", "emoji in the name", key, lambda r: r.__setitem__(col["XM"], r[col["XM"]] + "😀"),
                reason="invalid_name", rejected=True, record_id=key)
        key = f"Q{i}"
        damaged("sql_string", "SQL in the name", key,
                lambda r: r.__setitem__(col["XM"], ["Robert'); DROP TABLE dim_person;--", "1' OR '1'='1",
                                                    "'; DELETE FROM quarantine; --"][k % 3]),
                reason="invalid_name", rejected=True, record_id=key)
        key = f"N{i}"
        damaged("nullish_value", "'NULL' / 'N/A' / '无' for a missing phone", key,
                lambda r: r.__setitem__(col["LXDH"], ["NULL", "N/A", "无", " null "][k % 4]), loaded=key, phone=None)
        key = f"R{i}"
        damaged("real_code", "sex code stored as REAL 1.0 / 2.0", key,
                lambda r: r.__setitem__(col["XB"], 1.0 if int(r[col["SFZH"]][16]) % 2 else 2.0),
                loaded=key)
        key = f"U{i}"
        damaged("unknown_code", "sex code outside GB/T 2261.1", key, lambda r: r.__setitem__(col["XB"], "X7"),
                reason="unknown_code", rejected=False, record_id=key, element="sex")
        key = f"M{i}"
        damaged("invalid_phone", "phone number with too few digits", key,
                lambda r: r.__setitem__(col["LXDH"], "1380013"), reason="invalid_phone", rejected=False,
                record_id=key, element="phone")
    return t


APP_COLUMNS = ["SQBH", "SQRZJHM", "SQRMC", "SXBM", "SQQD", "TJSJ", "FDBJSX", "PJ"]


def applications(c: Corpus, holders: list[str]) -> Table:
    t = Table("ZW_HOSTILE", APP_COLUMNS)
    src = "h_app"
    start = dt.datetime(2024, 3, 1, 9, 0)
    n_clean = APPLICATIONS - 5 * PER_KIND
    def row(key):
        return [key, c.rnd.choice(holders), c.name(), c.rnd.choice(c.items), c.rnd.choice(c.channels),
                (start + dt.timedelta(minutes=c.rnd.randrange(500_000))).strftime("%Y-%m-%d %H:%M:%S"),
                c.rnd.choice((5, 10, 20)), c.rnd.randrange(1, 6)]
    for i in range(n_clean):
        t.rows.append(row(f"Y{i:06d}"))
    for k in range(PER_KIND):
        key = f"AR{k:04d}"
        r = row(key); r[7] = [-5, 0, 6, 9, 100][k % 5]; t.rows.append(r)
        c.expect("out_of_range_rating", src, "rating outside 1..5 (warehouse CHECK)", reason="out_of_range",
                 rejected=False, record_id=key, element="rating")
        key = f"AF{k:04d}"
        r = row(key); r[7] = 4.0; t.rows.append(r)
        c.expect("real_integer", src, "rating stored as REAL 4.0", loaded=key, rating=4)
        key = f"AH{k:04d}"
        r = row(key); r[7] = 4.5; t.rows.append(r)
        c.expect("fractional_integer", src, "rating 4.5", reason="not_integer", rejected=False, record_id=key,
                 element="rating")
        key = f"AL{k:04d}"
        r = row(key); r[6] = 99999; t.rows.append(r)
        c.expect("out_of_range_limit", src, "legal time limit of 99,999 working days", reason="out_of_range",
                 rejected=False, record_id=key, element="legal_limit_days")
        key = f"AN{k:04d}"
        r = row(key); r[0] = f"  {key}"; r[2] = "\x1b[2J" + r[2]; t.rows.append(r)
        c.expect("padded_key_mapped", src, "padded key that is also the application number", loaded=key)
    return t


ENT_COLUMNS = ["NBXH", "TYSHXYDM", "QYMC", "FDDBR", "CLRQ"]
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]


def uscc(c: Corpus) -> str:
    body8 = f"{c.next_serial():08d}"
    org_check = 11 - sum(int(ch) * w for ch, w in zip(body8, ORG_WEIGHTS)) % 11
    org = body8 + {10: "X", 11: "0"}.get(org_check, str(org_check))
    body = "91" + c.rnd.choice(c.regions) + org
    check = (31 - sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(body, USCC_WEIGHTS)) % 31) % 31
    return body + USCC_ALPHABET[check]


def enterprises(c: Corpus) -> Table:
    t = Table("SC_HOSTILE", ENT_COLUMNS)
    src = "h_ent"
    words = "华信达恒通宏泰盛兴隆鑫源瑞丰汇"
    def row(key):
        name = "北京" + "".join(c.rnd.choice(words) for _ in range(3)) + str(c.next_serial()) + "科技有限公司"
        return [key, uscc(c), name, c.name(), f"20{c.rnd.randrange(0, 24):02d}-0{c.rnd.randrange(1, 10)}-1{c.rnd.randrange(0, 9)}"]
    for i in range(ENTERPRISES - 2 * PER_KIND):
        t.rows.append(row(f"Q{i:06d}"))
    for k in range(PER_KIND):
        key = f"QE{k:04d}"
        r = row(key); r[3] = c.phone(); t.rows.append(r)   # a phone number typed into the name field
        c.expect("identifier_in_name", src, "a phone number in the legal representative's name",
                 reason="invalid_name", rejected=False, record_id=key, element="legal_rep_name")
        key = f"QN{k:04d}"
        r = row(key); r[1] = None; r[2] = "NULL"; t.rows.append(r)
        c.expect("nullish_required", src, "enterprise name 'NULL' (a required element)", reason="missing_required",
                 rejected=True, record_id=key)
    return t


def _write(path: Path, table: Table) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as con:
        con.execute(f'CREATE TABLE "{table.name}" ({", ".join(table.columns)})')   # no types: values keep theirs
        con.executemany(f'INSERT INTO "{table.name}" VALUES ({", ".join("?" * len(table.columns))})', table.rows)
    con.close()


def _as_raw_text_bytes(path: Path, table: str, key_column: str, column: str, keys: list[str]) -> None:
    """Store the latin-1 stand-ins of these rows as TEXT holding the original (invalid UTF-8) bytes."""
    with sqlite3.connect(path) as con:
        for key in keys:
            (value,) = con.execute(f'SELECT {column} FROM "{table}" WHERE {key_column} = ?', (key,)).fetchone()
            con.execute(f'UPDATE "{table}" SET {column} = CAST(? AS TEXT) WHERE {key_column} = ?',
                        (value.encode("latin-1"), key))
    con.close()


SOURCES = {
    "h_person": ("person", "T_RK_HOSTILE", "RKBH", {"SFZH": "id_number", "XM": "name", "XB": "sex",
                                                     "CSRQ": "birth_date", "MZ": "ethnicity", "LXDH": "phone",
                                                     "ZZ": "address"}),
    "h_app": ("application", "ZW_HOSTILE", "SQBH", {"SQBH": "application_no", "SQRZJHM": "applicant_id_number",
                                                    "SQRMC": "applicant_name", "SXBM": "service_item_code",
                                                    "SQQD": "channel", "TJSJ": "submitted_at",
                                                    "FDBJSX": "legal_limit_days", "PJ": "rating"}),
    "h_ent": ("enterprise", "SC_HOSTILE", "NBXH", {"TYSHXYDM": "uscc", "QYMC": "name", "FDDBR": "legal_rep_name",
                                                   "CLRQ": "founded_date"}),
}


def build(out: Path, seed: int = SEED) -> dict:
    """Write out/departments/*.sqlite and out/sources/*.yaml; return the manifest."""
    out = Path(out)
    (out / "departments").mkdir(parents=True, exist_ok=True)
    (out / "sources").mkdir(parents=True, exist_ok=True)
    regions = pd.read_csv(ROOT / "standards" / "codes" / "region.csv", dtype=str, keep_default_na=False)
    counties = sorted(regions.loc[(regions.level == "county") & (regions.status == "current")
                                  & regions.code.str.startswith("11"), "code"])
    items = pd.read_csv(ROOT / "standards" / "codes" / "service_item.csv", dtype=str)["code"].tolist()
    channels = pd.read_csv(ROOT / "standards" / "codes" / "channel.csv", dtype=str)["code"].tolist()
    c = Corpus(random.Random(seed), counties, items, channels)
    tables = {"h_person": persons(c)}
    holders = [r[1] for r in tables["h_person"].rows[:1000]]
    tables["h_app"] = applications(c, holders)
    tables["h_ent"] = enterprises(c)
    for name, table in tables.items():
        _write(out / "departments" / f"{name}.sqlite", table)
    text_bytes = {}
    for kind, entry in c.kinds.items():
        for rec in entry["records"]:
            if rec.pop("text_bytes", False):
                text_bytes.setdefault(("address" if kind == "invalid_utf8" else "name"), []).append(rec["record_id"])
    person_db = out / "departments" / "h_person.sqlite"
    _as_raw_text_bytes(person_db, "T_RK_HOSTILE", "RKBH", "ZZ", text_bytes.get("address", []))
    _as_raw_text_bytes(person_db, "T_RK_HOSTILE", "RKBH", "XM", text_bytes.get("name", []))
    for name, (kind, table, key, columns) in SOURCES.items():
        lines = [f"name: {name}", f"department: 敌意语料 {name}", f"kind: {kind}",
                 f"connection: sqlite:///../departments/{name}.sqlite", f"table: {table}", f"primary_key: {key}",
                 "columns:"] + [f"  {col}: {el}" for col, el in columns.items()] + [
                 "# damaged on purpose: far above the stewards' 5% bound, which would (rightly) stop the run",
                 "quality:", "  max_quarantine_rate: 0.25"]
        (out / "sources" / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {"seed": seed, "rows": {n: len(t.rows) for n, t in tables.items()}, "kinds": c.kinds,
                "identifiers": sorted(c.identifiers)}
    return manifest


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile")
    m = build(target)
    (target / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != "identifiers"},
                                                     ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{sum(m['rows'].values())} rows, {len(m['kinds'])} kinds of damage -> {target}")
