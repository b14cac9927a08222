"""Demo department generator: a deterministic, vectorised world of siloed departments.

`generate(out, persons, seed)` writes, under OUT:

- departments/<source>.sqlite  one SQLite database per department, each with its own
  naming convention, code tables and date formats (and its own mistakes);
- sources/<source>.yaml        the source mapping per DESIGN.md (connection relative to
  the YAML's folder, so OUT can be moved);
- truth/*.parquet              which true person / enterprise each record belongs to
  (never written into a department database);
- service_items.csv            the service-item catalogue the service hall uses.

Departments (source: table, conventions, faults):
- gongan    T_RK_JBXX       RKBH pk; XBDM 1/2; CSRQ YYYY-MM-DD; MZDM GB/T 3304; ZHGXSJ watermark;
                            authoritative, clean IDs; ~1% cancelled duplicate registrations (ZXBZ=1)
- shebao    SI_PERSON_INFO  English names; 男/女; YYYY/M/D; 15-digit IDs for ~half of those born
                            before 1970; typos, transpositions, full-width, spaces, lowercase x
- minzheng  MZ_JMXX         NULL and '' IDs; ~5% mistyped; 15% traditional; 1990年1月2日; 男/女/未知
- weijian   WJ_JKDA_GRJBXX  YYYYMMDD; M/F; ~40% of children under 6 under a guardian's ID
- churujing CRJ_ZJSQ_RYXX   upper-case pinyin names only; DD/MM/YYYY (override dayfirst); M/F
- shichang  SC_QYDJ_JBXX    USCC for all, old 15-digit registration number for ~70% of pre-2015
- shuiwu    SW_DJ_NSRXX     ~30% of pre-2015 enterprises only by old tax number; name variants
- zhengwu   ZW_BJ_SQXX      applications against SERVICE_ITEMS; channel names; timestamps
- zhengzhao DZZZ_ZZXX       certificates by type name; some expiring within 30 / 90 days
- zhengwu_sqr ZW_SQR_JBXX   the service hall's applicant register: 证件类型 + 证件号码 (codes, labels, aliases)
- canlian   CL_CJRXX        disability register: no ID column, own registry number, Excel dates
All person departments also get homophone slips in names, middle-dot variants, a few
impossible dates (1990-02-30) and both NULL and '' for missing values. Issue 13's phenomena
(foreigners and HK/MO/TW residents, rare characters, mojibake, Excel damage, branches,
individual businesses, code-less tax records) come from govdata.demo_identity, each from its own
random stream; truth rows carry a `cause` label for the records they touched. Each department's
table, key, incremental column, column -> element mapping and table columns (order, SQL type) is
a YAML template in demo_departments/; the reference tables the world is drawn from (counties,
names, streets, trades, catalogues) are CSV files in demo_reference/.

Everything is drawn from one numpy Generator per stage, so the same seed (and the same
`as_of` date) gives the same bytes. Per-row Python work is limited to the few percent of
rows that receive a fault; everything else is array arithmetic and table lookups.
"""
from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

# --------------------------------------------------------------------------------------
# Reference tables (demo-sized, hand-picked) live beside the generator as CSV files in
# demo_reference/ (see its README.md), read once. Region codes are real GB/T 2260 county
# codes checked against the GB/T 2260 history file (CC0, yescallop/areacodes).
# --------------------------------------------------------------------------------------

REFERENCE_DIR = Path(__file__).with_name("demo_reference")


@cache
def reference_rows(table: str) -> tuple[dict[str, str], ...]:
    """The rows of demo_reference/<table>.csv, as text, in file order (the order draws use)."""
    with (REFERENCE_DIR / f"{table}.csv").open(encoding="utf-8", newline="") as fh:
        return tuple(csv.DictReader(fh))


def reference_table(table: str, /, **columns: Callable[[str], Any]) -> tuple[tuple[Any, ...], ...]:
    """The named columns of a reference table as one tuple per row, each value converted by its
    column's type (str, int, float)."""
    return tuple(tuple(convert(row[column]) for column, convert in columns.items())
                 for row in reference_rows(table))


def reference_column(table: str, column: str) -> tuple[str, ...]:
    return tuple(row[column] for row in reference_rows(table))


def reference_lists(table: str, key: str, column: str) -> dict[str, tuple[str, ...]]:
    """A column's non-empty values grouped by a key column, keys and values in file order."""
    out: dict[str, list[str]] = {}
    for row in reference_rows(table):
        if row[column]:
            out.setdefault(row[key], []).append(row[column])
    return {k: tuple(v) for k, v in out.items()}


# code, province, prefecture ("" for municipalities), county, weight
COUNTY_COLUMNS = {"code": str, "province": str, "prefecture": str, "county": str, "weight": float}
CURRENT_COUNTIES: tuple[tuple[str, str, str, str, float], ...] = reference_table("counties", **COUNTY_COLUMNS)
# Abolished codes that still occur in older ID numbers (the numbers stay valid for life).
ABOLISHED_COUNTIES: tuple[tuple[str, str, str, str, float], ...] = reference_table(
    "abolished_counties", **COUNTY_COLUMNS)
ABOLISHED_SHARE = 0.02
# Uyghur-style names (with a middle dot) are born in these counties.
XINJIANG_CODES = ("650102", "650104", "653101")

STREETS = reference_column("streets", "street")

# surname, pinyin, relative frequency (roughly the national ranking)
SURNAMES: tuple[tuple[str, str, float], ...] = reference_table("surnames", surname=str, pinyin=str, weight=float)
# Characters of Han given names with toneless pinyin (no heteronym surprises) and the
# sex they are usually given to: m, f or n (either).
GIVEN_CHARS: tuple[tuple[str, str, str], ...] = reference_table("given_names", character=str, pinyin=str, sex=str)
# Same sound, different character: the classic clerk's slip.
HOMOPHONES: dict[str, str] = dict(reference_table("homophones", character=str, homophone=str))
# Uyghur-style given names / father's names, written in Chinese and in pinyin.
MINORITY_GIVEN: tuple[tuple[str, str], ...] = reference_table("uyghur_given_names", chinese=str, pinyin=str)
MINORITY_FATHER: tuple[tuple[str, str], ...] = reference_table("uyghur_father_names", chinese=str, pinyin=str)
MINORITY_SHARE = 0.05
MIDDLE_DOT = "·"
DOT_VARIANTS = ("·", "•", "．", ".", "・", "")
# GB/T 3304 codes and names of the other ethnicities carried by Han-style names.
ETHNICITIES: dict[str, str] = dict(reference_table("ethnicities", code=str, name=str))
HAN_STYLE_ETHNICITY = (("01", 0.93), ("03", 0.02), ("08", 0.015), ("11", 0.015),
                       ("02", 0.007), ("15", 0.007), ("10", 0.003), ("09", 0.003))
MINORITY_ETHNICITY = "05"

# GB/T 4754 divisions and the word enterprises of that trade put in their names.
INDUSTRIES: tuple[tuple[str, str], ...] = reference_table("industries", code=str, trade=str)
NAME_CORES = reference_column("enterprise_name_cores", "core")
LEGAL_FORMS = (("有限公司", 0.55), ("有限责任公司", 0.3), ("股份有限公司", 0.15))

# The service hall's catalogue: code, name, legal time limit (working days), department,
# and who applies (person / enterprise). Written to OUT/service_items.csv without `subject`.
SERVICE_ITEMS: tuple[tuple[str, str, int, str, str], ...] = reference_table(
    "service_items", code=str, name=str, legal_limit_days=int, department=str, subject=str)
CHANNELS = (("窗口", 0.35), ("网上", 0.30), ("移动端", 0.20), ("自助终端", 0.10), ("热线", 0.05))

# certificate type, holder subject, issuer, validity in years (0: no expiry), weight
CERTIFICATE_TYPES: tuple[tuple[str, str, str, int, float], ...] = reference_table(
    "certificate_types", type=str, subject=str, issuer=str, validity_years=int, weight=float)
# The letters a certificate number of each type starts with.
CERT_PREFIX: dict[str, str] = dict(reference_table("certificate_types", type=str, prefix=str))

# Share of persons each person department holds (gongan is the authoritative register).
COVERAGE = {"gongan": 0.95, "shebao": 0.70, "minzheng": 0.30, "weijian": 0.55, "churujing": 0.15}

ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK_CHARS = np.frombuffer(b"10X98765432", dtype=np.uint8)
ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
FULLWIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
IMPOSSIBLE_MONTH_DAYS = np.array([[2, 30], [2, 31], [4, 31], [6, 31], [9, 31], [11, 31]])

# Lookup tables that turn integers into zero-padded strings without per-row formatting.
_PAD2 = np.array([f"{i:02d}" for i in range(100)], dtype=object)
_PAD4 = np.array([f"{i:04d}" for i in range(10000)], dtype=object)
_PLAIN = np.array([str(i) for i in range(10000)], dtype=object)


# --------------------------------------------------------------------------------------
# Small array helpers
# --------------------------------------------------------------------------------------

def pick(rng: np.random.Generator, n: int, rate: float, at_least: int = 1) -> np.ndarray:
    """Boolean mask choosing ~rate of n rows; at least `at_least` when rate > 0 so that
    every fault also shows up in a tiny demo world."""
    mask = rng.random(n) < rate
    if rate > 0 and n and mask.sum() < at_least:
        mask[rng.choice(n, size=min(at_least, n), replace=False)] = True
    return mask


def weighted_choice(rng: np.random.Generator, n: int, weights: np.ndarray | list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) matrix of the decimal digits of non-negative integers."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (np.asarray(values, dtype=np.int64)[:, None] // powers) % 10


def ascii_rows(matrix: np.ndarray) -> np.ndarray:
    """(n, w) ASCII byte matrix -> object array of str (one string per row)."""
    m = np.ascontiguousarray(matrix, dtype=np.uint8)
    if len(m) == 0:
        return np.array([], dtype=object)
    return m.view(f"S{m.shape[1]}").ravel().astype(f"U{m.shape[1]}").astype(object)


def concat(*parts: np.ndarray | str) -> np.ndarray:
    """Element-wise string concatenation of object arrays (and scalars)."""
    out: Any = ""
    for p in parts:
        out = out + (np.asarray(p, dtype=object) if not isinstance(p, str) else p)
    return np.asarray(out, dtype=object)


def map_unique(values: np.ndarray, fn: Callable[[str], str]) -> np.ndarray:
    """Apply fn once per distinct value (names repeat a lot)."""
    s = pd.Series(values, dtype=object)
    uniq = s.dropna().unique()
    return s.map(dict(zip(uniq, (fn(v) for v in uniq)))).to_numpy(dtype=object)


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days since 1970-01-01 -> (year, month, day) integer arrays."""
    dt = np.asarray(days, dtype="int64").astype("datetime64[D]")
    months = dt.astype("datetime64[M]")
    y = months.astype("datetime64[Y]").astype(np.int64) + 1970
    m = months.astype(np.int64) % 12 + 1
    d = (dt - months).astype(np.int64) + 1
    return y, m, d


def day_number(d: date) -> int:
    return int(np.datetime64(d, "D").astype(np.int64))


def format_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray, style: str) -> np.ndarray:
    """Format (year, month, day) the way a department writes it. Works on impossible
    combinations too (1990-02-30), which is why dates are not datetime objects here."""
    Y, M2, D2, M1, D1 = _PAD4[y], _PAD2[m], _PAD2[d], _PLAIN[m], _PLAIN[d]
    if style == "iso":
        return concat(Y, "-", M2, "-", D2)
    if style == "slash":          # 1990/1/2
        return concat(Y, "/", M1, "/", D1)
    if style == "chinese":        # 1990年1月2日
        return concat(Y, "年", M1, "月", D1, "日")
    if style == "compact":        # 19900102
        return concat(Y, M2, D2)
    if style == "dmy":            # 02/01/1990
        return concat(D2, "/", M2, "/", Y)
    raise ValueError(f"unknown date style {style!r}")


def make_impossible(y: np.ndarray, m: np.ndarray, d: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn the masked dates into calendar-impossible ones (Feb 30, Apr 31 ...), keeping the year."""
    m, d = m.copy(), d.copy()
    k = int(mask.sum())
    if k:
        choice = IMPOSSIBLE_MONTH_DAYS[np.arange(k) % len(IMPOSSIBLE_MONTH_DAYS)]
        m[mask], d[mask] = choice[:, 0], choice[:, 1]
    return y, m, d


def format_timestamps(seconds: np.ndarray) -> np.ndarray:
    """Seconds since epoch (int64, -1 for NULL) -> 'YYYY-MM-DD HH:MM:SS' or None."""
    sec = np.asarray(seconds, dtype=np.int64)
    text = np.ascontiguousarray(np.datetime_as_string(sec.astype("datetime64[s]"), unit="s"))
    if len(text):
        text.view(np.uint32).reshape(len(text), -1)[:, 10] = ord(" ")   # ISO 'T' -> ' '
    out = text.astype(object)
    out[sec < 0] = None
    return out


def blank_out(values: np.ndarray, rng: np.random.Generator, null_rate: float, empty_rate: float) -> np.ndarray:
    """Missing values both ways departments store them: NULL and ''."""
    out = np.asarray(values, dtype=object).copy()
    r = rng.random(len(out))
    null = r < null_rate
    empty = (r >= null_rate) & (r < null_rate + empty_rate)
    # Tiny worlds still get one of each, so both kinds of missing always occur.
    if null_rate > 0 and len(out) > 1 and not null.any():
        null[np.flatnonzero(~empty)[0]] = True
    if empty_rate > 0 and len(out) > 1 and not empty.any():
        empty[np.flatnonzero(~null)[-1]] = True
    out[null] = None
    out[empty] = ""
    return out


# --------------------------------------------------------------------------------------
# Identifiers (GB 11643 citizen ID, GB 11714 org code, GB 32100 USCC, old reg./tax numbers)
# --------------------------------------------------------------------------------------

def id_check_chars(body: np.ndarray) -> np.ndarray:
    """GB 11643 check character (ASCII code) for an (n, 17) matrix of digit values."""
    return ID_CHECK_CHARS[(body.astype(np.int64) @ ID_WEIGHTS) % 11]


def id_matrix(region: np.ndarray, y: np.ndarray, m: np.ndarray, d: np.ndarray, serial: np.ndarray) -> np.ndarray:
    """(n, 18) ASCII matrix of 18-digit citizen ID numbers with a correct check digit."""
    body = np.hstack([digits(region, 6), digits(y, 4), digits(m, 2), digits(d, 2), digits(serial, 3)])
    return np.hstack([(body + 48).astype(np.uint8), id_check_chars(body)[:, None]])


def legacy_15(matrix18: np.ndarray) -> np.ndarray:
    """First-generation 15-digit form: region + YYMMDD + serial, no check digit."""
    return np.hstack([matrix18[:, 0:6], matrix18[:, 8:14], matrix18[:, 14:17]])


def mistype(matrix: np.ndarray, rng: np.random.Generator, typo: np.ndarray, swap: np.ndarray, width: int = 17) -> np.ndarray:
    """Single-digit typos and adjacent transpositions within the first `width` digits."""
    m = matrix.copy()
    rows = np.flatnonzero(typo)
    if len(rows):
        pos = rng.integers(0, width, len(rows))
        old = m[rows, pos].astype(np.int64) - 48
        m[rows, pos] = ((old + rng.integers(1, 10, len(rows))) % 10 + 48).astype(np.uint8)
    rows = np.flatnonzero(swap)
    if len(rows):
        pos = rng.integers(0, width - 1, len(rows))
        a, b = m[rows, pos].copy(), m[rows, pos + 1].copy()
        # Swapping equal digits changes nothing; bump the position to the next differing pair.
        same = a == b
        pos[same] = (pos[same] + 1) % (width - 1)
        a, b = m[rows, pos].copy(), m[rows, pos + 1].copy()
        m[rows, pos], m[rows, pos + 1] = b, a
    return m


def disguise(ids: np.ndarray, rng: np.random.Generator, fullwidth: float = 0.0, spaces: float = 0.0,
             lower_x: float = 0.0) -> np.ndarray:
    """Typing-habit faults on otherwise correct numbers: full-width digits, embedded
    spaces (6-8-4 grouping) and a lowercase x check character."""
    out = np.asarray(ids, dtype=object).copy()
    s = pd.Series(out, dtype=object)
    present = (s.str.len() >= 15).to_numpy(dtype=bool)   # NULL/'' compare False
    ends_x = present & s.str.endswith("X", na=False).to_numpy(dtype=bool)
    low = ends_x & pick(rng, len(out), lower_x, at_least=1 if ends_x.any() else 0)
    for i in np.flatnonzero(low):
        out[i] = out[i][:-1] + "x"
    space = present & pick(rng, len(out), spaces, at_least=0)
    for i in np.flatnonzero(space):
        v = out[i]
        out[i] = f"{v[:6]} {v[6:14]} {v[14:]}"
    wide = present & ~space & pick(rng, len(out), fullwidth, at_least=0)
    for i in np.flatnonzero(wide):
        out[i] = out[i].translate(FULLWIDTH)
    return out


def org_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 9) ASCII matrix of distinct GB 11714 organisation codes (8 digits + check)."""
    body = digits(rng.choice(90_000_000, size=n, replace=False) + 10_000_000, 8)
    c = 11 - (body @ ORG_WEIGHTS) % 11
    check = np.where(c == 10, ord("X"), np.where(c == 11, ord("0"), c + 48))
    return np.hstack([(body + 48), check[:, None]]).astype(np.uint8)


def uscc_matrix(region: np.ndarray, org: np.ndarray, head_code: bytes = b"91") -> np.ndarray:
    """(n, 18) GB 32100 codes: '9' (market regulator) + entity kind ('1' enterprise, '2'
    individual business) + region + org code + check."""
    lookup = np.full(128, -1, dtype=np.int64)
    for i, ch in enumerate(USCC_ALPHABET):
        lookup[ord(ch)] = i
    n = len(region)
    head = np.tile(np.frombuffer(head_code, dtype=np.uint8), (n, 1))
    body = np.hstack([head, (digits(region, 6) + 48).astype(np.uint8), org])
    total = lookup[body] @ USCC_WEIGHTS
    check = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)[(31 - total % 31) % 31]
    return np.hstack([body, check[:, None]])


def reg_no_matrix(region: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """(n, 15) old business registration numbers: region + 8-digit sequence + ISO 7064 MOD 11,10."""
    body = np.hstack([digits(region, 6), digits(seq, 8)])
    p = np.full(len(body), 10, dtype=np.int64)
    for j in range(body.shape[1]):
        s = (p % 11) + body[:, j]
        s10 = s % 10
        p = (np.where(s10 == 0, 10, s10) * 2) % 11
    check = (1 - p % 11) % 10
    return np.hstack([body, check[:, None]]).astype(np.uint8) + 48


# --------------------------------------------------------------------------------------
# The true world: persons and enterprises
# --------------------------------------------------------------------------------------

@dataclass
class Persons:
    true_id: np.ndarray       # object: 'TP00000001'
    region: np.ndarray        # int64 county code
    region_idx: np.ndarray    # index into REGION_TABLE
    birth: np.ndarray         # int64 days since epoch
    y: np.ndarray
    m: np.ndarray
    d: np.ndarray
    sex: np.ndarray           # 1 male, 2 female (GB/T 2261.1)
    serial: np.ndarray
    id18: np.ndarray          # object str, valid 18-digit ID
    id_matrix: np.ndarray     # (n, 18) ASCII
    name: np.ndarray          # object, canonical simplified name, minority with U+00B7
    name_latin: np.ndarray    # object, 'ZHANG SAN' / 'AYIGULI MAIMAITI'
    minority: np.ndarray      # bool: dotted transliterated name
    ethnicity: np.ndarray     # object GB/T 3304 code
    phone: np.ndarray         # object 11-digit mobile or None
    street: np.ndarray        # index into STREETS
    house: np.ndarray         # house number
    parent: np.ndarray        # index of a parent, -1 when none known
    twin_of: np.ndarray       # index of the twin, -1
    namesake_of: np.ndarray   # index of the person whose name/sex/birth date was shared, -1

    def __len__(self) -> int:
        return len(self.id18)


REGION_TABLE = CURRENT_COUNTIES + ABOLISHED_COUNTIES
REGION_CODES = np.array([int(r[0]) for r in REGION_TABLE], dtype=np.int64)
REGION_PREFIX = np.array([r[1] + r[2] + r[3] for r in REGION_TABLE], dtype=object)
# Enterprises carry the city (or municipality) in their names.
REGION_CITY = np.array([r[2] or r[1] for r in REGION_TABLE], dtype=object)
BIRTH_FIRST, BIRTH_LAST = date(1935, 1, 1), date(2024, 12, 31)


def draw_regions(rng: np.random.Generator, n: int) -> np.ndarray:
    """Region index per person: current counties by weight, ~2% abolished codes."""
    n_current = len(CURRENT_COUNTIES)
    w = np.array([r[4] for r in CURRENT_COUNTIES], dtype=float)
    idx = weighted_choice(rng, n, w)
    old = rng.random(n) < ABOLISHED_SHARE
    idx[old] = n_current + rng.integers(0, len(ABOLISHED_COUNTIES), int(old.sum()))
    return idx


def draw_parents(rng: np.random.Generator, birth: np.ndarray) -> np.ndarray:
    """A parent 20-45 years older for everyone whose parents' generation exists in the world."""
    order = np.argsort(birth, kind="stable")
    sorted_birth = birth[order]
    lo = np.searchsorted(sorted_birth, birth - int(45 * 365.25), side="left")
    hi = np.searchsorted(sorted_birth, birth - int(20 * 365.25), side="right")
    has = hi > lo
    pos = lo + np.floor(rng.random(len(birth)) * np.maximum(hi - lo, 1)).astype(np.int64)
    return np.where(has, order[np.minimum(pos, len(birth) - 1)], -1)


def resolve_id_clashes(rng: np.random.Generator, region: np.ndarray, y: np.ndarray, m: np.ndarray,
                       d: np.ndarray, serial: np.ndarray, sex: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Redraw serials until every (region, birth date, serial) is unique; rows in `keep`
    (twins) win a clash so that their consecutive serials survive."""
    serial = serial.copy()
    order = np.argsort(~keep, kind="stable")
    for _ in range(50):
        key = region * 10**11 + (y * 10000 + m * 100 + d) * 1000 + serial
        dup = np.zeros(len(key), dtype=bool)
        dup[order] = pd.Series(key[order]).duplicated().to_numpy()
        if not dup.any():
            return serial
        k = int(dup.sum())
        serial[dup] = rng.integers(0, 500, k) * 2 + (sex[dup] == 1)
    raise RuntimeError("could not make citizen ID numbers unique; the world is too dense")


def draw_given_names(rng: np.random.Generator, sex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One or two given-name characters (indices into GIVEN_CHARS; -1 = none) fitting the sex."""
    n = len(sex)
    gender = np.array([g[2] for g in GIVEN_CHARS])
    male = np.flatnonzero(gender != "f")
    female = np.flatnonzero(gender != "m")

    def one() -> np.ndarray:
        u = rng.random(n)
        return np.where(sex == 1, male[(u * len(male)).astype(np.int64)], female[(u * len(female)).astype(np.int64)])

    g1 = one()
    g2 = np.where(rng.random(n) < 0.3, -1, one())
    return g1, g2


def build_persons(rng: np.random.Generator, n: int, as_of: date) -> Persons:
    """The true population: valid IDs, names, namesakes, twins, parents, phones, addresses."""
    region_idx = draw_regions(rng, n)
    last = min(day_number(BIRTH_LAST), day_number(as_of) - 1)
    birth = rng.integers(day_number(BIRTH_FIRST), last + 1, n)
    sex = rng.integers(1, 3, n)

    minority = rng.random(n) < MINORITY_SHARE
    xinjiang = np.array([i for i, r in enumerate(REGION_TABLE) if r[0] in XINJIANG_CODES])
    region_idx[minority] = rng.choice(xinjiang, int(minority.sum()))
    surname = weighted_choice(rng, n, [s[2] for s in SURNAMES])
    g1, g2 = draw_given_names(rng, sex)
    mg = rng.integers(0, len(MINORITY_GIVEN), n)
    mf = rng.integers(0, len(MINORITY_FATHER), n)
    eth_codes = np.array([e[0] for e in HAN_STYLE_ETHNICITY], dtype=object)
    ethnicity = eth_codes[weighted_choice(rng, n, [e[1] for e in HAN_STYLE_ETHNICITY])]
    ethnicity[minority] = MINORITY_ETHNICITY

    # Children take a parent's surname (and ethnicity) when both use Han-style names.
    parent = draw_parents(rng, birth)
    inherit = (parent >= 0) & ~minority
    inherit &= ~minority[np.maximum(parent, 0)]
    surname[inherit] = surname[parent[inherit]]
    ethnicity[inherit] = ethnicity[parent[inherit]]

    # Namesakes: same name, sex and birth date, different person (other region/serial).
    namesake_of = np.full(n, -1, dtype=np.int64)
    ns = np.flatnonzero(pick(rng, n, 0.005, at_least=2 if n >= 20 else 0))
    if len(ns):
        src = rng.integers(0, n, len(ns))
        ok = src != ns
        ns, src = ns[ok], src[ok]
        for arr in (surname, g1, g2, mg, mf, sex, birth, minority, ethnicity):
            arr[ns] = arr[src]
        namesake_of[ns] = src

    # Twins: same parents (surname), birth date and county, consecutive serial numbers.
    twin_of = np.full(n, -1, dtype=np.int64)
    serial = rng.integers(0, 999, n)
    tw = np.flatnonzero(pick(rng, n, 0.003, at_least=2 if n >= 20 else 0))
    if len(tw) >= 2:
        tw = tw[: len(tw) // 2 * 2]
        a, b = tw[0::2], tw[1::2]
        for arr in (surname, birth, region_idx, parent, minority, ethnicity, mf):
            arr[b] = arr[a]
        namesake_of[a[namesake_of[a] >= 0]] = -1
        namesake_of[b] = -1
        serial[a] = np.minimum(serial[a], 997)
        serial[b] = serial[a] + 1
        twin_of[a], twin_of[b] = b, a
    # The 17th digit carries the sex: odd for men. Twins' sexes follow their serials,
    # so the second twin gets a given name fitting that sex.
    is_twin = twin_of >= 0
    sex[is_twin] = np.where(serial[is_twin] % 2 == 1, 1, 2)
    if len(tw) >= 2:
        g1[b], g2[b] = draw_given_names(rng, sex[b])
    serial[~is_twin] = serial[~is_twin] // 2 * 2 + (sex[~is_twin] == 1)

    region = REGION_CODES[region_idx]
    y, m, d = ymd(birth)
    serial = resolve_id_clashes(rng, region, y, m, d, serial, sex, is_twin)
    matrix = id_matrix(region, y, m, d, serial)

    given_ch = np.array([g[0] for g in GIVEN_CHARS] + [""], dtype=object)
    given_py = np.array([g[1] for g in GIVEN_CHARS] + [""], dtype=object)
    sur_ch = np.array([s[0] for s in SURNAMES], dtype=object)
    sur_py = np.array([s[1] for s in SURNAMES], dtype=object)
    han_name = concat(sur_ch[surname], given_ch[g1], given_ch[g2])
    han_latin = concat(sur_py[surname], " ", given_py[g1], given_py[g2])
    mg_ch = np.array([x[0] for x in MINORITY_GIVEN], dtype=object)
    mg_py = np.array([x[1] for x in MINORITY_GIVEN], dtype=object)
    mf_ch = np.array([x[0] for x in MINORITY_FATHER], dtype=object)
    mf_py = np.array([x[1] for x in MINORITY_FATHER], dtype=object)
    name = np.where(minority, concat(mg_ch[mg], MIDDLE_DOT, mf_ch[mf]), han_name)
    latin = np.where(minority, concat(mg_py[mg], " ", mf_py[mf]),
                     pd.Series(han_latin, dtype=object).str.upper().to_numpy(dtype=object))

    phone_num = (10**10 + rng.integers(3, 10, n) * 10**9 + rng.integers(0, 10**9, n)).astype(str).astype(object)
    age_days = day_number(as_of) - birth
    phone = np.where((age_days > 14 * 365) & (rng.random(n) < 0.92), phone_num, None)

    return Persons(
        true_id=concat("TP", padded_numbers(1, n, 8)),
        region=region, region_idx=region_idx, birth=birth, y=y, m=m, d=d, sex=sex, serial=serial,
        id18=ascii_rows(matrix), id_matrix=matrix, name=name, name_latin=latin, minority=minority,
        ethnicity=ethnicity, phone=phone, street=rng.integers(0, len(STREETS), n),
        house=rng.integers(1, 400, n), parent=parent, twin_of=twin_of, namesake_of=namesake_of,
    )


def addresses(region_idx: np.ndarray, street: np.ndarray, house: np.ndarray,
              prefixes: np.ndarray = REGION_PREFIX, streets: np.ndarray | None = None) -> np.ndarray:
    street_names = np.asarray(STREETS if streets is None else streets, dtype=object)
    return concat(prefixes[region_idx], street_names[street], _PLAIN[house], "号")


@dataclass
class Enterprises:
    true_id: np.ndarray
    region_idx: np.ndarray
    founded: np.ndarray       # days since epoch
    uscc: np.ndarray          # object str
    org_code: np.ndarray      # object str (9)
    reg_no: np.ndarray        # object str (15), old registration number
    tax_no: np.ndarray        # object str (15), old tax number
    name: np.ndarray          # registered name (half-width parentheses)
    city: np.ndarray          # region prefix used in the name
    legal_form: np.ndarray    # index into LEGAL_FORMS
    industry: np.ndarray      # index into INDUSTRIES
    legal_rep: np.ndarray     # person index
    street: np.ndarray
    house: np.ndarray

    def __len__(self) -> int:
        return len(self.uscc)


REFORM_DAY = day_number(date(2015, 10, 1))   # "three certificates in one": USCC for all


def build_enterprises(rng: np.random.Generator, n: int, persons: Persons, as_of: date) -> Enterprises:
    region_idx = draw_regions(rng, n)
    region = REGION_CODES[region_idx]
    founded = rng.integers(day_number(date(1985, 1, 1)), day_number(as_of) - 30, n)
    org = org_codes(rng, n)
    uscc = ascii_rows(uscc_matrix(region, org))
    reg_no = ascii_rows(reg_no_matrix(region, rng.integers(0, 10**8, n)))
    tax_no = concat(region.astype(str).astype(object), ascii_rows(org))

    industry = rng.integers(0, len(INDUSTRIES), n)
    legal_form = weighted_choice(rng, n, [f[1] for f in LEGAL_FORMS])
    cores = np.asarray(NAME_CORES, dtype=object)
    first = rng.integers(0, len(NAME_CORES), n)
    second = (first + rng.integers(1, len(NAME_CORES), n)) % len(NAME_CORES)   # never the same twice
    core, core2 = cores[first], cores[second]
    # Two-part cores keep names mostly distinct in a big world.
    core = np.where(rng.random(n) < 0.5, concat(core, core2), core)
    trade = np.array([i[1] for i in INDUSTRIES], dtype=object)[industry]
    form = np.array([f[0] for f in LEGAL_FORMS], dtype=object)[legal_form]
    city = REGION_CITY[region_idx]
    r = rng.random(n)
    name = np.where(r < 0.08, concat(city, core, trade, "(集团)", form),
           np.where(r < 0.16, concat(core, "(", city, ")", trade, form),
                    concat(city, core, trade, form)))

    # Legal representatives are adults of the world (born at least 22 years before founding).
    order = np.argsort(persons.birth, kind="stable")
    hi = np.searchsorted(persons.birth[order], founded - 22 * 365, side="right")
    hi = np.maximum(hi, 1)
    legal_rep = order[np.floor(rng.random(n) * hi).astype(np.int64)]

    return Enterprises(
        true_id=concat("TE", padded_numbers(1, n, 8)),
        region_idx=region_idx, founded=founded, uscc=uscc, org_code=ascii_rows(org), reg_no=reg_no,
        tax_no=tax_no, name=name, city=city, legal_form=legal_form, industry=industry,
        legal_rep=legal_rep, street=rng.integers(0, len(STREETS), n), house=rng.integers(1, 400, n),
    )


# --------------------------------------------------------------------------------------
# Department records
# --------------------------------------------------------------------------------------

@dataclass
class Table:
    """One department table: column -> values in the table's order, the columns' SQL types
    (from the department's template), plus its truth rows."""

    source: str
    department: str
    kind: str
    table: str
    primary_key: str
    columns: dict[str, np.ndarray]
    sql_types: dict[str, str]
    mapping: dict[str, str]
    truth: dict[str, np.ndarray]
    incremental: str | None = None
    overrides: dict[str, dict[str, Any]] | None = None


# Each department's table name, primary key, incremental column, column -> element mapping
# and table columns (order and SQL type) live in a YAML template beside the generator
# (demo_departments/<source>.yaml): the stewards' kind of file, editable without touching the
# code that fills the table. A builder computes only the columns' values.
DEPARTMENTS_DIR = Path(__file__).with_name("demo_departments")


@cache
def department_template(source: str) -> dict[str, Any]:
    with (DEPARTMENTS_DIR / f"{source}.yaml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def in_table_order(columns: dict[str, np.ndarray], sql_types: dict[str, str]) -> dict[str, np.ndarray]:
    """The columns in the order the template declares them (dicts keep insertion order)."""
    return {c: columns[c] for c in sql_types if c in columns}


def truth_rows(source: str, keys: np.ndarray, true_ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Truth rows of a department's records: the record (its primary key, as text) and the
    true person / enterprise it belongs to (and a cause, where a phenomenon touched it)."""
    record_ids = np.asarray(keys, dtype=object).astype(str).astype(object)
    return {"source_system": np.full(len(record_ids), source, dtype=object), "source_record_id": record_ids,
            **true_ids}


def department_table(source: str, columns: dict[str, np.ndarray], true_ids: dict[str, np.ndarray]) -> Table:
    """A department's generated column values and truth, described by its template (which
    orders and types the columns). A column a phenomenon adds later may be missing here;
    check_table sees that the finished table has every column of the template."""
    doc = department_template(source)
    sql_types = dict(doc["table_columns"])
    undeclared = sorted(set(columns) - set(sql_types))
    if undeclared:
        raise ValueError(f"department {source}: the template's table_columns lack {', '.join(undeclared)}")
    return Table(source=source, department=doc["department"], kind=doc["kind"], table=doc["table"],
                 primary_key=doc["primary_key"], columns=in_table_order(columns, sql_types), sql_types=sql_types,
                 mapping=dict(doc["columns"]), truth=truth_rows(source, columns[doc["primary_key"]], true_ids),
                 incremental=(doc.get("incremental") or {}).get("column"), overrides=doc.get("overrides"))


def members(rng: np.random.Generator, persons: Persons, share: float, eligible: np.ndarray | None = None) -> np.ndarray:
    """Shuffled indices of the persons a department holds."""
    take = rng.random(len(persons)) < share
    if eligible is not None:
        take &= eligible
    idx = np.flatnonzero(take)
    return idx[rng.permutation(len(idx))]


def padded_numbers(first: int, n: int, width: int) -> np.ndarray:
    """first .. first + n - 1 as zero-padded text (object array; empty for n = 0, which
    np.char.zfill cannot take)."""
    if n == 0:
        return np.zeros(0, dtype=object)
    return np.char.zfill(np.arange(first, first + n).astype(str), width).astype(object)


def record_ids(prefix: str, n: int, width: int = 10) -> np.ndarray:
    return concat(prefix, padded_numbers(1, n, width))


def update_seconds(rng: np.random.Generator, n: int, as_of: date, years: float = 5.0) -> np.ndarray:
    end = day_number(as_of) * 86400
    return end - rng.integers(86400, int(years * 365 * 86400), n)


def update_times(rng: np.random.Generator, n: int, as_of: date, years: float = 5.0) -> np.ndarray:
    """When each record was last touched, some time in the `years` before as_of, as text."""
    return format_timestamps(update_seconds(rng, n, as_of, years))


def sex_labels(sex: np.ndarray, male: str, female: str) -> np.ndarray:
    """Sex (1 male, 2 female) in a department's own words."""
    return np.where(sex == 1, male, female).astype(object)


def vary_dots(names: np.ndarray, minority: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each clerk types the middle dot of transliterated names differently (or drops it)."""
    out = names.copy()
    variant = rng.integers(0, len(DOT_VARIANTS), len(names))
    for k, dot in enumerate(DOT_VARIANTS):
        rows = minority & (variant == k)
        if rows.any() and dot != MIDDLE_DOT:
            out[rows] = pd.Series(names[rows], dtype=object).str.replace(MIDDLE_DOT, dot, regex=False).to_numpy(dtype=object)
    return out


def homophone_variant(name: str) -> str:
    """Replace the last given-name character that has a common homophone."""
    for i in range(len(name) - 1, 0, -1):
        if name[i] in HOMOPHONES:
            return name[:i] + HOMOPHONES[name[i]] + name[i + 1:]
    return name


def slip_homophones(names: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    out = names.copy()
    can = map_unique(names, lambda v: any(c in HOMOPHONES for c in v[1:])).astype(bool)
    rows = can & pick(rng, len(names), rate, at_least=0)
    if can.any() and not rows.any():
        rows[np.flatnonzero(can)[0]] = True
    out[rows] = map_unique(names[rows], homophone_variant)
    return out


def clerk_ids(p: Persons, idx: np.ndarray, rng: np.random.Generator, *, typo: float = 0.0, swap: float = 0.0,
              fullwidth: float = 0.0, spaces: float = 0.0, lower_x: float = 0.0) -> np.ndarray:
    """ID numbers as a department typed them."""
    matrix = mistype(p.id_matrix[idx], rng, pick(rng, len(idx), typo), pick(rng, len(idx), swap))
    return disguise(ascii_rows(matrix), rng, fullwidth=fullwidth, spaces=spaces, lower_x=lower_x)


def person_truth(p: Persons, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {"true_person_id": p.true_id[idx]}


def birth_strings(p: Persons, idx: np.ndarray, rng: np.random.Generator, style: str, impossible: float) -> np.ndarray:
    y, m, d = make_impossible(p.y[idx], p.m[idx], p.d[idx], pick(rng, len(idx), impossible))
    return format_dates(y, m, d, style)


def gongan_table(p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """公安局人口户籍: the authoritative register; pinyin-initial column names; cancelled
    duplicate registrations (ZXBZ=1) of the same person."""
    idx = members(rng, p, COVERAGE["gongan"])
    twice = pick(rng, len(idx), 0.01)
    dup = idx[twice]
    updated = update_seconds(rng, len(idx), as_of)
    # The cancelled record is older and often carries the previous address.
    dup_updated = updated[twice] - rng.integers(400, 3000, len(dup)) * 86400
    all_idx = np.concatenate([idx, dup])
    order = rng.permutation(len(all_idx))
    all_idx = all_idx[order]
    cancelled = np.concatenate([np.zeros(len(idx), dtype=np.int64), np.ones(len(dup), dtype=np.int64)])[order]
    upd = np.concatenate([updated, dup_updated])[order]
    street = np.where(cancelled == 1, (p.street[all_idx] + 1 + rng.integers(0, 5, len(all_idx))) % len(STREETS),
                      p.street[all_idx])
    n = len(all_idx)
    rid = record_ids("RK", n, 12)
    phone = blank_out(p.phone[all_idx], rng, 0.0, 0.02)
    columns = {
        "RKBH": rid, "SFZHM": p.id18[all_idx], "XM": p.name[all_idx],
        "XBDM": p.sex[all_idx].astype(str).astype(object),
        "CSRQ": format_dates(p.y[all_idx], p.m[all_idx], p.d[all_idx], "iso"),
        "MZDM": p.ethnicity[all_idx], "LXDH": phone,
        "HJDZ": addresses(p.region_idx[all_idx], street, p.house[all_idx]),
        "ZHGXSJ": format_timestamps(upd), "ZXBZ": cancelled.astype(object),
    }
    return department_table("gongan", columns, person_truth(p, all_idx))


def shebao_table(p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """人社局社会保险: English column names, 男/女, 'YYYY/M/D', legacy 15-digit IDs."""
    adult = day_number(as_of) - p.birth >= 16 * 365
    idx = members(rng, p, COVERAGE["shebao"], adult)
    n = len(idx)
    matrix = mistype(p.id_matrix[idx], rng, pick(rng, n, 0.01), pick(rng, n, 0.005))
    ids = ascii_rows(matrix)
    # Records opened before the 1999 switch kept the first-generation number.
    legacy = (p.y[idx] < 1970) & (rng.random(n) < 0.5)
    if (p.y[idx] < 1970).any() and not legacy.any():
        legacy[np.flatnonzero(p.y[idx] < 1970)[0]] = True
    ids[legacy] = ascii_rows(legacy_15(p.id_matrix[idx[legacy]]))
    ids = disguise(ids, rng, fullwidth=0.01, spaces=0.01, lower_x=0.3)
    names = slip_homophones(vary_dots(p.name[idx], p.minority[idx], rng), rng, 0.02)
    person_no = (np.arange(n) + 10_000_001).astype(object)
    columns = {
        "person_no": person_no, "id_card": ids, "full_name": names, "gender": sex_labels(p.sex[idx], "男", "女"),
        "birthday": birth_strings(p, idx, rng, "slash", 0.002),
        "mobile": blank_out(p.phone[idx], rng, 0.08, 0.04),
        "update_time": update_times(rng, n, as_of),
    }
    return department_table("shebao", columns, person_truth(p, idx))


def to_traditional(values: np.ndarray) -> np.ndarray:
    import opencc  # imported here: only the civil-affairs bureau writes traditional characters

    converter = opencc.OpenCC("s2t")
    return map_unique(values, converter.convert)


def traditional_addresses(region_idx: np.ndarray, street: np.ndarray, house: np.ndarray) -> np.ndarray:
    """Addresses in traditional characters, converted per component (a few dozen strings)
    rather than per address."""
    prefixes = to_traditional(REGION_PREFIX)
    streets = to_traditional(np.asarray(STREETS, dtype=object))
    return concat(prefixes[region_idx], streets[street], _PLAIN[house], to_traditional(np.array(["号"], dtype=object))[0])


def minzheng_table(p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """民政局: missing and mistyped IDs, traditional characters, 1990年1月2日, 男/女/未知."""
    idx = members(rng, p, COVERAGE["minzheng"])
    n = len(idx)
    ids = clerk_ids(p, idx, rng, typo=0.03, swap=0.02, fullwidth=0.01, spaces=0.005, lower_x=0.2)
    ids = blank_out(ids, rng, 0.03, 0.02)
    names = slip_homophones(vary_dots(p.name[idx], p.minority[idx], rng), rng, 0.02)
    addr = addresses(p.region_idx[idx], p.street[idx], p.house[idx])
    trad = pick(rng, n, 0.15)
    names[trad] = to_traditional(names[trad])
    addr[trad] = traditional_addresses(p.region_idx[idx[trad]], p.street[idx[trad]], p.house[idx[trad]])
    sex = sex_labels(p.sex[idx], "男", "女")
    sex[pick(rng, n, 0.02)] = "未知"
    eth_names = pd.Series(p.ethnicity[idx], dtype=object).map(ETHNICITIES).to_numpy(dtype=object)
    rid = record_ids("MZ", n, 10)
    columns = {
        "JMBH": rid, "SFZH": ids, "XINGMING": names, "XB": sex,
        "CSRQ": birth_strings(p, idx, rng, "chinese", 0.003),
        "MZ": blank_out(eth_names, rng, 0.05, 0.02),
        "JTZZ": blank_out(addr, rng, 0.03, 0.02),
        "LXDH": blank_out(p.phone[idx], rng, 0.1, 0.05),
        "DJSJ": update_times(rng, n, as_of),
    }
    return department_table("minzheng", columns, person_truth(p, idx))


def weijian_table(p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """卫健委: young children often registered under a guardian's ID number; YYYYMMDD; M/F."""
    idx = members(rng, p, COVERAGE["weijian"])
    n = len(idx)
    ids = clerk_ids(p, idx, rng, typo=0.01, swap=0.005, spaces=0.01, lower_x=0.3)
    child = (day_number(as_of) - p.birth[idx] < 6 * 365) & (p.parent[idx] >= 0)
    guardian = child & (rng.random(n) < 0.4)
    if child.any() and not guardian.any():
        guardian[np.flatnonzero(child)[0]] = True
    ids[guardian] = p.id18[p.parent[idx[guardian]]]
    names = slip_homophones(vary_dots(p.name[idx], p.minority[idx], rng), rng, 0.02)
    moved = rng.random(n) < 0.2
    street = np.where(moved, rng.integers(0, len(STREETS), n), p.street[idx])
    rid = record_ids("JK", n, 10)
    columns = {
        "DAH": rid, "ZJHM": ids, "HZXM": names, "XB": sex_labels(p.sex[idx], "M", "F"),
        "CSRQ": birth_strings(p, idx, rng, "compact", 0.002),
        "LXDH": blank_out(p.phone[idx], rng, 0.05, 0.05),
        "JZDZ": blank_out(addresses(p.region_idx[idx], street, p.house[idx]), rng, 0.02, 0.02),
        "JDRQ": update_times(rng, n, as_of, 8),
    }
    return department_table("weijian", columns, person_truth(p, idx))


def churujing_table(p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """出入境: names only in upper-case pinyin; DD/MM/YYYY dates; M/F."""
    idx = members(rng, p, COVERAGE["churujing"])
    n = len(idx)
    ids = clerk_ids(p, idx, rng, typo=0.005, spaces=0.005, fullwidth=0.005)
    rid = record_ids("E", n, 11)
    columns = {
        "RYBH": rid, "SFZH": ids, "YWXM": p.name_latin[idx], "XB": sex_labels(p.sex[idx], "M", "F"),
        "CSRQ": birth_strings(p, idx, rng, "dmy", 0.001),
        "GJ": np.full(n, "CHN", dtype=object),
        "LXDH": blank_out(p.phone[idx], rng, 0.05, 0.0),
        "GXSJ": update_times(rng, n, as_of, 3),
    }
    return department_table("churujing", columns, person_truth(p, idx))


def enterprise_truth(e: Enterprises, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {"true_enterprise_id": e.true_id[idx]}


def shichang_table(e: Enterprises, p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """市场监管局: the business register (USCC for all, old registration number for some)."""
    idx = rng.permutation(len(e))
    n = len(idx)
    old = e.founded[idx] < REFORM_DAY
    reg_no = np.where(old & (rng.random(n) < 0.7), e.reg_no[idx], None)
    rep = e.legal_rep[idx]
    rep_ids = disguise(p.id18[rep], rng, fullwidth=0.01, spaces=0.005)
    fy, fm, fd = ymd(e.founded[idx])
    nbxh = (np.arange(n) + 1).astype(object)
    columns = {
        "NBXH": nbxh, "TYSHXYDM": e.uscc[idx], "ZCH": reg_no, "QYMC": e.name[idx],
        "FDDBR": p.name[rep], "FDDBRZJHM": rep_ids,
        "CLRQ": format_dates(fy, fm, fd, "iso"),
        "ZS": addresses(e.region_idx[idx], e.street[idx], e.house[idx]),
        "HYDM": np.array([i[0] for i in INDUSTRIES], dtype=object)[e.industry[idx]],
        "GXSJ": update_times(rng, n, as_of),
    }
    return department_table("shichang", columns, enterprise_truth(e, idx))


def tax_name_variant(name: str, city: str, variant: int) -> str:
    """How the tax bureau writes an enterprise name: full-width parentheses, the other
    legal-form wording, or the region prefix dropped."""
    if variant == 0:
        return name.replace("(", "（").replace(")", "）")
    if variant == 1:
        if name.endswith("有限责任公司"):
            return name[: -len("有限责任公司")] + "有限公司"
        if name.endswith("有限公司") and not name.endswith("股份有限公司"):
            return name[: -len("有限公司")] + "有限责任公司"
        return name
    if name.startswith(city):
        return name[len(city):]
    return name


def shuiwu_table(e: Enterprises, p: Persons, rng: np.random.Generator, as_of: date) -> Table:
    """税务局: USCC, or for old records only the 15-character tax number; name variants."""
    take = rng.random(len(e)) < 0.85
    idx = np.flatnonzero(take)
    idx = idx[rng.permutation(len(idx))]
    n = len(idx)
    pre_reform = e.founded[idx] < REFORM_DAY
    old_only = pre_reform & pick(rng, n, 0.3, at_least=1 if pre_reform.any() else 0)
    old_only &= pre_reform
    if pre_reform.any() and not old_only.any():
        old_only[np.flatnonzero(pre_reform)[0]] = True
    uscc = e.uscc[idx].copy()
    uscc[old_only] = np.where(rng.random(int(old_only.sum())) < 0.5, None, "")
    uscc[~old_only & pick(rng, n, 0.005)] = None
    tax_no = np.where(old_only | (pre_reform & (rng.random(n) < 0.3)), e.tax_no[idx], None)
    names = e.name[idx].copy()
    untouched = np.ones(n, dtype=bool)
    for v in range(3):
        variant = np.array([tax_name_variant(nm, c, v) for nm, c in zip(names, e.city[idx])], dtype=object)
        # Only rows the variant actually changes count, so every variant shows up.
        rows = untouched & (variant != names) & pick(rng, n, 0.12, at_least=0)
        if not rows.any() and (untouched & (variant != names)).any():
            rows[np.flatnonzero(untouched & (variant != names))[0]] = True
        names[rows] = variant[rows]
        untouched &= ~rows
    fy, fm, fd = ymd(e.founded[idx])
    djxh = concat("1", REGION_CODES[e.region_idx[idx]].astype(str).astype(object),
                  padded_numbers(1, n, 13))
    columns = {
        "DJXH": djxh, "SHXYDM": uscc, "YNSRSBH": tax_no, "NSRMC": names,
        "FDDBRXM": p.name[e.legal_rep[idx]],
        "SCJYDZ": blank_out(addresses(e.region_idx[idx], e.street[idx], e.house[idx]), rng, 0.02, 0.02),
        "KYRQ": format_dates(fy, fm, fd, "compact"),
        "HYDM": np.array([i[0] for i in INDUSTRIES], dtype=object)[e.industry[idx]],
        "LRSJ": update_times(rng, n, as_of),
    }
    return department_table("shuiwu", columns, enterprise_truth(e, idx))


@dataclass
class Certificates:
    number: np.ndarray
    type_idx: np.ndarray
    person: np.ndarray       # holder person index or -1
    enterprise: np.ndarray   # holder enterprise index or -1
    issue: np.ndarray        # days
    expiry: np.ndarray       # days, -1 when it never expires


def build_certificates(rng: np.random.Generator, n: int, p: Persons, e: Enterprises, as_of: date) -> Certificates:
    today = day_number(as_of)
    type_idx = weighted_choice(rng, n, [c[4] for c in CERTIFICATE_TYPES])
    is_ent = np.array([c[1] == "enterprise" for c in CERTIFICATE_TYPES])[type_idx]
    adults = np.flatnonzero(today - p.birth >= 18 * 365)
    adults = adults if len(adults) else np.arange(len(p))
    children = np.flatnonzero(today - p.birth < 18 * 365)
    birth_cert = np.array([c[0] == "出生医学证明" for c in CERTIFICATE_TYPES])[type_idx]
    person = adults[rng.integers(0, len(adults), n)]
    if len(children):
        person[birth_cert] = children[rng.integers(0, len(children), int(birth_cert.sum()))]
    enterprise = np.where(is_ent, rng.integers(0, len(e), n), -1)
    person = np.where(is_ent, -1, person)

    validity = np.array([c[3] for c in CERTIFICATE_TYPES])[type_idx]
    holder_start = np.where(is_ent, e.founded[np.maximum(enterprise, 0)],
                            p.birth[np.maximum(person, 0)] + np.where(birth_cert, 0, 18 * 365))
    span = np.maximum(today - np.maximum(holder_start, today - 20 * 365), 1)
    issue = today - np.floor(rng.random(n) * span).astype(np.int64)
    issue = np.where(birth_cert, np.minimum(p.birth[np.maximum(person, 0)] + rng.integers(0, 10, n), today), issue)
    expiry = np.where(validity > 0, issue + np.round(validity * 365.25).astype(np.int64) - 1, -1)
    # Proactive service needs licences that are about to expire: next 30 and next 90 days.
    expiring = validity > 0
    r = rng.random(n)
    soon30 = expiring & (r < 0.03)
    soon90 = expiring & (r >= 0.03) & (r < 0.07)
    expiry[soon30] = today + rng.integers(1, 31, int(soon30.sum()))
    expiry[soon90] = today + rng.integers(31, 91, int(soon90.sum()))
    back = soon30 | soon90
    issue[back] = expiry[back] - np.round(validity[back] * 365.25).astype(np.int64) + 1

    prefixes = np.array([CERT_PREFIX[c[0]] for c in CERTIFICATE_TYPES], dtype=object)[type_idx]
    iy, _, _ = ymd(issue)
    number = concat(prefixes, _PAD4[iy], padded_numbers(1, n, 9))
    # A business licence's number is the enterprise's USCC.
    licence = np.array([c[0] == "营业执照" for c in CERTIFICATE_TYPES])[type_idx]
    number[licence] = e.uscc[enterprise[licence]]
    # One business licence per enterprise: later duplicates become food licences.
    dup_lic = licence & pd.Series(np.where(licence, enterprise, -1)).duplicated().to_numpy()
    if dup_lic.any():
        food = next(i for i, c in enumerate(CERTIFICATE_TYPES) if c[0] == "食品经营许可证")
        type_idx[dup_lic] = food
        number[dup_lic] = concat(CERT_PREFIX["食品经营许可证"], _PAD4[iy[dup_lic]], "D",
                                 np.char.zfill(np.flatnonzero(dup_lic).astype(str), 9).astype(object))
    return Certificates(number=number, type_idx=type_idx, person=person, enterprise=enterprise,
                        issue=issue, expiry=expiry)


def holder_truth(p: Persons, e: Enterprises, person: np.ndarray, enterprise: np.ndarray) -> dict[str, np.ndarray]:
    """The true person or enterprise (the other None) holding a certificate or applying."""
    tp = np.where(person >= 0, p.true_id[np.maximum(person, 0)], None)
    te = np.where(enterprise >= 0, e.true_id[np.maximum(enterprise, 0)], None)
    return {"true_person_id": tp, "true_enterprise_id": te}


def zhengzhao_table(c: Certificates, p: Persons, e: Enterprises, rng: np.random.Generator, as_of: date) -> Table:
    """电子证照库: certificates by type name, holder ID or USCC, issuer, issue/expiry dates."""
    n = len(c.number)
    order = rng.permutation(n)
    person, enterprise = c.person[order], c.enterprise[order]
    type_idx = c.type_idx[order]
    holder_id = np.where(person >= 0, p.id18[np.maximum(person, 0)], None)
    holder_id = disguise(holder_id, rng, spaces=0.005, lower_x=0.1)
    holder_uscc = np.where(enterprise >= 0, e.uscc[np.maximum(enterprise, 0)], None)
    holder_name = np.where(person >= 0, p.name[np.maximum(person, 0)], e.name[np.maximum(enterprise, 0)])
    iy, im, id_ = ymd(c.issue[order])
    exp = c.expiry[order]
    ey, em, ed = ymd(np.maximum(exp, 0))
    expiry = np.where(exp >= 0, format_dates(ey, em, ed, "iso"), None)
    today = day_number(as_of)
    status = np.where((exp >= 0) & (exp < today), "过期", "有效").astype(object)
    status[pick(rng, n, 0.01)] = "注销"
    # Last touched some time between issue and today.
    issued_s = c.issue[order] * 86400
    touched = issued_s + (rng.random(n) * np.maximum(today * 86400 - issued_s, 1)).astype(np.int64)
    rid = concat("DZZZ", padded_numbers(1, n, 12))
    names = np.array([t[0] for t in CERTIFICATE_TYPES], dtype=object)
    issuers = np.array([t[2] for t in CERTIFICATE_TYPES], dtype=object)
    columns = {
        "ZZBS": rid, "ZZBH": c.number[order], "ZZLXMC": names[type_idx],
        "CZRSFZH": holder_id, "CZZTDM": holder_uscc, "CZZTMC": holder_name, "BFJGMC": issuers[type_idx],
        "QFRQ": format_dates(iy, im, id_, "iso"), "YXQZ": expiry, "ZZZT": status,
        "GXSJ": format_timestamps(touched),
    }
    return department_table("zhengzhao", columns, holder_truth(p, e, person, enterprise))


def zhengwu_table(n: int, c: Certificates, p: Persons, e: Enterprises, rng: np.random.Generator, as_of: date) -> Table:
    """政务服务大厅: applications with channel, timestamps, legal time limit, rating and
    (sometimes) the certificate the applicant presented."""
    today = day_number(as_of)
    subject_ent = np.array([s[4] == "enterprise" for s in SERVICE_ITEMS])
    by_ent = rng.random(n) < 0.12
    adults = np.flatnonzero(today - p.birth >= 16 * 365)
    adults = adults if len(adults) else np.arange(len(p))
    person = np.where(by_ent, -1, adults[rng.integers(0, len(adults), n)])
    enterprise = np.where(by_ent, rng.integers(0, len(e), n), -1)

    # Some applicants present a certificate they hold: take its holder as the applicant.
    cert = np.full(n, None, dtype=object)
    presents = pick(rng, n, 0.2)
    ci = rng.integers(0, len(c.number), n)
    presents &= np.where(c.person[ci] >= 0, ~by_ent, by_ent)
    cert[presents] = c.number[ci[presents]]
    person[presents] = c.person[ci[presents]]
    enterprise[presents] = c.enterprise[ci[presents]]

    person_items = np.flatnonzero(~subject_ent)
    ent_items = np.flatnonzero(subject_ent)
    item = np.where(enterprise >= 0, ent_items[rng.integers(0, len(ent_items), n)],
                    person_items[rng.integers(0, len(person_items), n)])
    limit = np.array([s[2] for s in SERVICE_ITEMS], dtype=np.int64)[item]
    channel = np.array([ch[0] for ch in CHANNELS], dtype=object)[weighted_choice(rng, n, [ch[1] for ch in CHANNELS])]

    day = today - rng.integers(1, 730, n)
    submitted = day * 86400 + rng.integers(8 * 3600, 18 * 3600, n)
    accepted = submitted + np.minimum(rng.exponential(3 * 3600, n).astype(np.int64), 2 * 86400)
    # Most are handled within the limit; about one in ten runs over it.
    ratio = np.where(rng.random(n) < 0.9, rng.uniform(0.1, 1.0, n), rng.uniform(1.05, 2.0, n))
    calendar_days = np.ceil(limit * ratio * 7 / 5).astype(np.int64)
    completed = accepted + calendar_days * 86400 + rng.integers(0, 6 * 3600, n)
    pending = (completed >= today * 86400) | (rng.random(n) < 0.02)
    completed = np.where(pending, -1, completed)
    rating = np.where(pending | (rng.random(n) < 0.3), None,
                      (weighted_choice(rng, n, [0.03, 0.04, 0.10, 0.28, 0.55]) + 1).astype(object))

    applicant_id = np.where(person >= 0, p.id18[np.maximum(person, 0)], None)
    applicant_id = disguise(applicant_id, rng, fullwidth=0.005, spaces=0.005, lower_x=0.1)
    applicant_uscc = np.where(enterprise >= 0, e.uscc[np.maximum(enterprise, 0)], None)
    applicant_name = np.where(person >= 0, p.name[np.maximum(person, 0)], e.name[np.maximum(enterprise, 0)])
    region = np.where(person >= 0, p.region[np.maximum(person, 0)],
                      REGION_CODES[e.region_idx[np.maximum(enterprise, 0)]]).astype(str).astype(object)

    order = np.argsort(submitted, kind="stable")
    sy, sm, sd = ymd(day[order])
    rid = concat("ZW", format_dates(sy, sm, sd, "compact"), padded_numbers(1, n, 8))
    codes = np.array([s[0] for s in SERVICE_ITEMS], dtype=object)
    names = np.array([s[1] for s in SERVICE_ITEMS], dtype=object)
    o = order
    columns = {
        "SQBH": rid, "SQRZJHM": applicant_id[o], "SQDWTYDM": applicant_uscc[o], "SQRMC": applicant_name[o],
        "SXBM": codes[item[o]], "SXMC": names[item[o]], "SQQD": channel[o], "XZQHDM": region[o],
        "TJSJ": format_timestamps(submitted[o]), "SLSJ": format_timestamps(accepted[o]),
        "BJSJ": format_timestamps(completed[o]),
        "FDBJSX": limit[o].astype(object), "MYDPJ": rating[o], "CXZZBH": cert[o],
        "GXSJ": format_timestamps(np.where(completed[o] >= 0, completed[o], accepted[o])),
    }
    return department_table("zhengwu", columns, holder_truth(p, e, person[o], enterprise[o]))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

CHUNK_ROWS = 200_000


def write_sqlite(path: Path, t: Table) -> None:
    """Write one department database in big executemany chunks, in a single transaction."""
    if path.exists():
        path.unlink()
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        cols = ", ".join(f'"{c}" {t.sql_types[c]}{" PRIMARY KEY" if c == t.primary_key else ""}'
                         for c in t.columns)
        con.execute(f'CREATE TABLE "{t.table}" ({cols})')
        names = list(t.columns)
        arrays = list(t.columns.values())
        sql = f'INSERT INTO "{t.table}" VALUES ({", ".join("?" * len(names))})'
        n = len(arrays[0])
        for start in range(0, n, CHUNK_ROWS):
            con.executemany(sql, zip(*(a[start:start + CHUNK_ROWS].tolist() for a in arrays)))
        con.commit()
    finally:
        con.close()


def source_yaml(t: Table) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": t.source, "department": t.department, "kind": t.kind,
        "connection": f"sqlite:///../departments/{t.source}.sqlite",
        "table": t.table, "primary_key": t.primary_key, "columns": dict(t.mapping),
    }
    if t.incremental:
        doc["incremental"] = {"column": t.incremental}
    if t.overrides:
        doc["overrides"] = t.overrides
    return doc


def write_truth(path: Path, parts: list[dict[str, np.ndarray]]) -> None:
    columns = list(parts[0])
    table = pa.table({c: pa.array(np.concatenate([p[c] for p in parts]).tolist(), type=pa.string())
                      for c in columns})
    pq.write_table(table, path)


def write_service_items(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["code", "name", "legal_limit_days", "department"])
        for code, name, limit, dept, _ in SERVICE_ITEMS:
            w.writerow([code, name, limit, dept])


def check_world_size(persons: int) -> None:
    if persons < 10:
        raise ValueError(f"persons must be at least 10 for a meaningful demo world, got {persons}")


def iter_world(persons: int, seed: int, as_of: date) -> Iterator[Table]:
    """The department tables of a world of `persons` persons, one at a time (no I/O), so a
    big world never holds all of them in memory at once."""
    check_world_size(persons)
    # One independent stream per stage: changing one department leaves the others as they were.
    streams = {k: np.random.default_rng([seed, i]) for i, k in enumerate(
        ("persons", "enterprises", "certificates", "gongan", "shebao", "minzheng", "weijian",
         "churujing", "shichang", "shuiwu", "zhengzhao", "zhengwu"))}
    p = build_persons(streams["persons"], persons, as_of)
    e = build_enterprises(streams["enterprises"], max(1, persons // 10), p, as_of)
    c = build_certificates(streams["certificates"], max(1, persons // 2), p, e, as_of)
    # Issue 13's phenomena (govdata.demo_identity), each from its own stream on top of these.
    from govdata import demo_identity as ident

    rare = ident.add_rare_characters(p, ident.phenomenon_rng(seed, "rare"))
    o = ident.build_outsiders(ident.phenomenon_rng(seed, "outsiders"), persons + 1, persons, as_of)
    x = ident.build_extra_enterprises(ident.phenomenon_rng(seed, "enterprise_extra"), e, p, as_of)

    def finish(t: Table) -> Table:
        ident.damage(t, p, rare, seed)
        ident.check_table(t)
        return t

    def docs(source: str) -> np.random.Generator:
        return ident.phenomenon_rng(seed, "doc_types", source)

    yield finish(gongan_table(p, streams["gongan"], as_of))
    t = shebao_table(p, streams["shebao"], as_of)
    ident.add_outsiders_shebao(t, o, docs("shebao"), as_of)
    yield finish(t)
    yield finish(minzheng_table(p, streams["minzheng"], as_of))
    yield finish(weijian_table(p, streams["weijian"], as_of))
    t = churujing_table(p, streams["churujing"], as_of)
    ident.add_outsiders_churujing(t, o, docs("churujing"), as_of)
    yield finish(t)
    t = shichang_table(e, p, streams["shichang"], as_of)
    ident.add_enterprises_shichang(t, x, p, docs("shichang"), as_of)
    yield finish(t)
    t = shuiwu_table(e, p, streams["shuiwu"], as_of)
    ident.ensure_cause(t)
    ident.drop_codes(t, ident.phenomenon_rng(seed, "no_code"), 0.015, len(t.truth["source_record_id"]))
    ident.add_enterprises_shuiwu(t, x, p, docs("shuiwu"), as_of)
    yield finish(t)
    yield finish(zhengwu_table(persons, c, p, e, streams["zhengwu"], as_of))
    yield finish(zhengzhao_table(c, p, e, streams["zhengzhao"], as_of))
    yield finish(ident.zhengwu_sqr_table(p, o, rare, ident.phenomenon_rng(seed, "zhengwu_sqr"), as_of))
    yield finish(ident.canlian_table(p, rare, ident.phenomenon_rng(seed, "canlian"), as_of))


def build_world(persons: int, seed: int, as_of: date) -> list[Table]:
    """All department tables of a world of `persons` persons (no I/O)."""
    return list(iter_world(persons, seed, as_of))


TRUTH_FILES = {"person": "persons.parquet", "enterprise": "enterprises.parquet",
               "application": "applications.parquet", "certificate": "certificates.parquet"}


def generate(out: Path, persons: int, seed: int = 42, as_of: date | None = None) -> dict[str, int]:
    """Write the demo world under `out`; return the number of records per source.

    `as_of` is the world's "today" (default: the real today) so that certificates about to
    expire and pending applications are relative to when the demo is used; pass a fixed
    date for byte-identical output across days.
    """
    check_world_size(persons)
    as_of = as_of or date.today()
    out = Path(out)
    for sub in ("departments", "sources", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[dict[str, np.ndarray]]] = {}
    counts: dict[str, int] = {}
    for t in iter_world(persons, seed, as_of):
        write_sqlite(out / "departments" / f"{t.source}.sqlite", t)
        with (out / "sources" / f"{t.source}.yaml").open("w", encoding="utf-8") as fh:
            yaml.safe_dump(source_yaml(t), fh, allow_unicode=True, sort_keys=False)
        truth.setdefault(t.kind, []).append(t.truth)
        counts[t.source] = len(t.truth["source_record_id"])
    for kind, parts in truth.items():
        write_truth(out / "truth" / TRUTH_FILES[kind], parts)
    write_service_items(out / "service_items.csv")
    return counts


__all__ = ["CERTIFICATE_TYPES", "CHANNELS", "SERVICE_ITEMS", "build_persons", "build_world", "generate", "iter_world"]
