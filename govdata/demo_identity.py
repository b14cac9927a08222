"""Real departments' identity data in the demo world (issue 13), with truth.

Added on top of the base departments of govdata.demo_data, each phenomenon from its own
random stream (`phenomenon_rng`), so the base tables keep their rows:

- persons of other documents (`Outsiders`): foreigners (Latin names; a passport; some a
  foreigner's permanent residence ID, the 2023 GB 11643-style number starting with 9 or the
  older ABC+12-digit card) and Hong Kong / Macau / Taiwan residents (travel permits; some a
  residence permit 810000/820000/830000 + birth date + serial + check digit). They appear in
  exit-entry (passport / permit + Latin name), social insurance and the service hall's
  applicant register (permanent residence ID or residence permit, names as the clerk wrote
  them), so matching across documents is measured. A Latin name varies per record: case,
  surname first or last (with a comma), hyphens kept, spaced or dropped;
- 证件类型 + 证件号码 pairs: codes, Chinese labels and aliases mixed (GA/T 2000.156);
- the service hall's applicant register (zhengwu_sqr) and the disability federation (canlian),
  which has no ID column at all: its own registry number, rare-character stand-ins, dates as
  Excel serial numbers or dotted (1980.05.07), 男性/女性, phones shared within a family
  (a parent's on a child's record, a child's on an elder's);
- damage in the legacy departments: mojibake (GB18030 bytes read as Latin-1 / Windows-1252),
  Excel-damaged ID numbers (scientific notation; digits after the 15th zeroed), rare
  characters (生僻字) typed as a homophone, their pinyin, `*` or `?`;
- enterprises: branches (own USCC, name = head office + place + 分公司), individual
  businesses (个体工商户, USCC 92…, the operator is the legal representative), tax records
  without any code.

Truth rows carry a `cause` label for records a phenomenon touched (other_document,
latin_name, rare_character, mojibake, excel_damage, no_identifier, shared_phone, branch,
individual_business, no_code); govdata.evaluate reports errors by it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from govdata.demo_data import (
    GIVEN_CHARS,
    INDUSTRIES,
    REFORM_DAY,
    REGION_CITY,
    REGION_CODES,
    REGION_TABLE,
    STREETS,
    SURNAMES,
    Enterprises,
    Persons,
    Table,
    addresses,
    ascii_rows,
    blank_out,
    concat,
    day_number,
    department_table,
    digits,
    disguise,
    draw_regions,
    format_dates,
    format_timestamps,
    id_check_chars,
    id_matrix,
    in_table_order,
    map_unique,
    members,
    mistype,
    org_codes,
    padded_numbers,
    pick,
    record_ids,
    reference_lists,
    reference_table,
    reg_no_matrix,
    sex_labels,
    to_traditional,
    truth_rows,
    update_seconds,
    update_times,
    uscc_matrix,
    weighted_choice,
)
from govdata.transforms.names import encodable

# One stream per phenomenon (and per source where it touches several): adding or tuning one
# leaves every other table as it was.
PHENOMENA = ("outsiders", "rare", "doc_types", "zhengwu_sqr", "canlian", "enterprise_extra",
             "no_code", "mojibake", "excel", "stand_in")


def phenomenon_rng(seed: int, name: str, source: str = "") -> np.random.Generator:
    key = [seed, 1000 + PHENOMENA.index(name)]
    if source:
        key.append(int.from_bytes(source.encode()[:8].ljust(8, b"\0"), "little") % (2**31))
    return np.random.default_rng(key)


# --------------------------------------------------------------------------------------
# Foreigners and Hong Kong / Macau / Taiwan residents
# --------------------------------------------------------------------------------------

FOREIGNER, HONG_KONG, MACAU, TAIWAN = 1, 2, 3, 4
# Share of the world's persons (a big Chinese city: ~1% foreign residents, ~0.75% from HK/MO/TW).
OUTSIDER_SHARE = {FOREIGNER: 0.010, HONG_KONG: 0.0035, MACAU: 0.001, TAIWAN: 0.003}
PERMANENT_RESIDENCE_SHARE = 0.25   # of foreigners; of those, NEW_CARD_SHARE hold the 2023 card
NEW_CARD_SHARE = 0.65
RESIDENCE_PERMIT_SHARE = 0.45      # of HK/MO/TW residents


def name_pools() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Latin name pools: pool -> (given names, surnames), canonical upper case; hyphens are part
    of the name."""
    surnames = reference_lists("name_pools", "pool", "surname")
    return {pool: (given, surnames[pool]) for pool, given in reference_lists("name_pools", "pool", "given").items()}


NAME_POOLS = name_pools()
# alpha-3, ISO 3166 numeric (the nationality digits of the 2023 card), passport number
# template (L letter, D digit, A either), name pool, weight
NATIONALITIES: tuple[tuple[str, str, str, str, float], ...] = reference_table(
    "nationalities", alpha3=str, numeric=str, passport_template=str, name_pool=str, weight=float)
# How Hong Kong / Macau (Cantonese) and Taiwan (Wade-Giles) write the surnames of SURNAMES.
CANTONESE: dict[str, str] = dict(reference_table("surnames", surname=str, cantonese=str))
WADE_GILES: dict[str, str] = dict(reference_table("surnames", surname=str, wade_giles=str))
PERMIT_REGION = {HONG_KONG: 810000, MACAU: 820000, TAIWAN: 830000}
HOME_CODE = {HONG_KONG: "HKG", MACAU: "MAC", TAIWAN: "TWN"}


@dataclass
class Outsiders:
    """Persons whose documents are not the citizen ID card."""

    true_id: np.ndarray
    kind: np.ndarray          # FOREIGNER, HONG_KONG, MACAU, TAIWAN
    sex: np.ndarray           # 1 / 2
    birth: np.ndarray         # days since epoch
    given: np.ndarray         # Latin given name(s), canonical upper case
    surname: np.ndarray       # Latin surname
    name_zh: np.ndarray       # Chinese name (HK/MO/TW; None for foreigners), simplified
    name_trad: np.ndarray     # the same in traditional characters
    nationality: np.ndarray   # alpha-3 (HKG / MAC / TWN for the regions)
    passport: np.ndarray      # foreigners' passport number, else None
    travel_permit: np.ndarray  # HK/MO/TW travel permit number, else None
    old_card: np.ndarray      # foreigners' pre-2023 permanent residence card number, else None
    key_id: np.ndarray        # 2023 permanent residence ID / residence permit number (18), else None
    phone: np.ndarray
    region_idx: np.ndarray
    street: np.ndarray
    house: np.ndarray

    def __len__(self) -> int:
        return len(self.true_id)


def fill_template(rng: np.random.Generator, template: str, n: int) -> np.ndarray:
    """n strings of the template's shape: L a letter, D a digit, A either, anything else literal."""
    letters = np.frombuffer(b"ABCDEFGHJKLMNPRSTUVWXYZ", dtype=np.uint8)
    alnum = np.frombuffer(b"0123456789ABCDEFGHJKLMNPRTVWXYZ", dtype=np.uint8)
    cols = []
    for ch in template:
        if ch == "L":
            cols.append(letters[rng.integers(0, len(letters), n)])
        elif ch == "D":
            cols.append(rng.integers(48, 58, n).astype(np.uint8))
        elif ch == "A":
            cols.append(alnum[rng.integers(0, len(alnum), n)])
        else:
            cols.append(np.full(n, ord(ch), dtype=np.uint8))
    return ascii_rows(np.stack(cols, axis=1)) if n else np.array([], dtype=object)


def unique_gb11643(rng: np.random.Generator, head: np.ndarray, birth: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """18-character GB 11643-style numbers: 6-digit head (810000, or 9 + province + nationality)
    + birth date + serial (odd for men) + check digit, unique."""
    y, m, d = ymd_of(birth)
    serial = rng.integers(0, 500, len(head)) * 2 + (sex == 1)
    for _ in range(50):
        key = head * 10**11 + (y * 10000 + m * 100 + d) * 1000 + serial
        dup = pd.Series(key).duplicated().to_numpy()
        if not dup.any():
            break
        serial[dup] = rng.integers(0, 500, int(dup.sum())) * 2 + (sex[dup] == 1)
    return ascii_rows(id_matrix(head, y, m, d, serial))


def ymd_of(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from govdata.demo_data import ymd

    return ymd(days)


def hmt_names(rng: np.random.Generator, kind: np.ndarray, sex: np.ndarray) -> tuple[np.ndarray, ...]:
    """Chinese names of HK/MO/TW residents and their romanisation (Cantonese / Wade-Giles
    surname, given-name syllables spaced in HK/MO, hyphenated in Taiwan)."""
    n = len(kind)
    surname = weighted_choice(rng, n, [s[2] for s in SURNAMES])
    gender = np.array([g[2] for g in GIVEN_CHARS])
    pools = {1: np.flatnonzero(gender != "f"), 2: np.flatnonzero(gender != "m")}
    g1 = np.where(sex == 1, pools[1][rng.integers(0, len(pools[1]), n)], pools[2][rng.integers(0, len(pools[2]), n)])
    g2 = np.where(sex == 1, pools[1][rng.integers(0, len(pools[1]), n)], pools[2][rng.integers(0, len(pools[2]), n)])
    chars = np.array([g[0] for g in GIVEN_CHARS], dtype=object)
    syll = pd.Series([g[1].upper() for g in GIVEN_CHARS], dtype=object).to_numpy(dtype=object)
    sur_ch = np.array([s[0] for s in SURNAMES], dtype=object)[surname]
    name_zh = concat(sur_ch, chars[g1], chars[g2])
    romanised = np.array([(WADE_GILES if k == TAIWAN else CANTONESE)[s] for k, s in zip(kind, sur_ch)], dtype=object)
    given = np.where(kind == TAIWAN, concat(syll[g1], "-", syll[g2]), concat(syll[g1], " ", syll[g2]))
    return name_zh, romanised, given


def build_outsiders(rng: np.random.Generator, first_number: int, population: int, as_of: date) -> Outsiders:
    """The foreign and HK/MO/TW residents of a world of `population` persons; their true IDs
    continue the citizens' numbering from `first_number`."""
    counts = {k: round(population * share) for k, share in OUTSIDER_SHARE.items()}
    if population >= 50:   # every kind shows up in a small world too
        counts = {k: max(c, 2) for k, c in counts.items()}
    kind = np.repeat(np.array(list(counts)), list(counts.values()))
    n = len(kind)
    foreign = kind == FOREIGNER
    sex = rng.integers(1, 3, n)
    today = day_number(as_of)
    # Working-age adults mostly (18-75).
    birth = today - rng.integers(int(18 * 365.25), int(75 * 365.25), n)

    nat = weighted_choice(rng, n, [x[4] for x in NATIONALITIES])
    nationality = np.where(foreign, np.array([x[0] for x in NATIONALITIES], dtype=object)[nat],
                           np.array([HOME_CODE.get(int(k), "") for k in kind], dtype=object))
    given = np.full(n, None, dtype=object)
    surname = np.full(n, None, dtype=object)
    passport = np.full(n, None, dtype=object)
    for j, (_, _, template, pool, _) in enumerate(NATIONALITIES):
        rows = np.flatnonzero(foreign & (nat == j))
        if not len(rows):
            continue
        givens, surnames = NAME_POOLS[pool]
        given[rows] = np.asarray(givens, dtype=object)[rng.integers(0, len(givens), len(rows))]
        surname[rows] = np.asarray(surnames, dtype=object)[rng.integers(0, len(surnames), len(rows))]
        passport[rows] = fill_template(rng, template, len(rows))

    name_zh = np.full(n, None, dtype=object)
    name_trad = np.full(n, None, dtype=object)
    hmt = np.flatnonzero(~foreign)
    if len(hmt):
        zh, sur, giv = hmt_names(rng, kind[hmt], sex[hmt])
        name_zh[hmt], surname[hmt], given[hmt] = zh, sur, giv
        name_trad[hmt] = to_traditional(zh)

    travel_permit = np.full(n, None, dtype=object)
    for k, template in ((HONG_KONG, "HDDDDDDDD"), (MACAU, "MDDDDDDDD"), (TAIWAN, "DDDDDDDD")):
        rows = np.flatnonzero(kind == k)
        travel_permit[rows] = fill_template(rng, template, len(rows))
    # Some HK/MO permits carry the two-digit issue count.
    longer = (kind != TAIWAN) & ~foreign & (rng.random(n) < 0.3)
    travel_permit[longer] = concat(travel_permit[longer], fill_template(rng, "DD", int(longer.sum())))

    region_idx = draw_regions(rng, n)
    province = REGION_CODES[region_idx] // 10000
    numeric = np.array([int(x[1]) for x in NATIONALITIES])[nat]
    resident = foreign & (rng.random(n) < PERMANENT_RESIDENCE_SHARE)
    new_card = resident & (rng.random(n) < NEW_CARD_SHARE)
    permit = ~foreign & (rng.random(n) < RESIDENCE_PERMIT_SHARE)
    head = np.where(foreign, 900000 + province * 1000 + numeric,
                    np.array([PERMIT_REGION.get(int(k), 0) for k in kind]))
    numbers = unique_gb11643(rng, head, birth, sex)
    key_id = np.where(new_card | permit, numbers, None)
    # The pre-2023 card: nationality letters + 12 digits (no GB 11643 structure, no key).
    old = resident & ~new_card
    old_card = np.full(n, None, dtype=object)
    old_card[old] = concat(nationality[old], fill_template(rng, "DDDDDDDDDDDD", int(old.sum())))

    phone_num = (10**10 + rng.integers(3, 10, n) * 10**9 + rng.integers(0, 10**9, n)).astype(str).astype(object)
    phone = np.where(rng.random(n) < 0.85, phone_num, None)
    true_id = concat("TP", padded_numbers(first_number, n, 8))
    return Outsiders(true_id=true_id, kind=kind, sex=sex, birth=birth, given=given, surname=surname,
                     name_zh=name_zh, name_trad=name_trad, nationality=nationality, passport=passport,
                     travel_permit=travel_permit, old_card=old_card, key_id=key_id, phone=phone,
                     region_idx=region_idx, street=rng.integers(0, len(STREETS), n), house=rng.integers(1, 400, n))


def latin_variants(given: np.ndarray, surname: np.ndarray, rng: np.random.Generator,
                   canonical: float = 0.0) -> np.ndarray:
    """A Latin name as one clerk typed it: given-surname or surname-given (sometimes with a
    comma), upper / title / lower case, hyphens kept, spaced or dropped. `canonical` of the
    records keep the passport's 'SURNAME GIVEN' in upper case."""
    n = len(given)
    g = pd.Series(given, dtype=object)
    s = pd.Series(surname, dtype=object)
    hyphen = rng.random(n)
    g = g.where(hyphen < 0.6, g.str.replace("-", " ", regex=False).where(hyphen < 0.9, g.str.replace("-", "", regex=False)))
    order = rng.random(n)
    name = (g + " " + s).where(order < 0.5, (s + " " + g).where(order < 0.85, s + ", " + g))
    case = rng.random(n)
    name = name.where(case < 0.5, name.str.title().where(case < 0.85, name.str.lower()))
    keep = rng.random(n) < canonical
    name[keep] = (pd.Series(surname, dtype=object) + " " + pd.Series(given, dtype=object))[keep]
    return name.to_numpy(dtype=object)


# Document type as departments write it: (code, labels/aliases they use), weights uniform.
# No GA/T 2000.156 code for the HK/MO/TW residence permit (key `permit`): departments write it
# out or file it under 'other' (the normaliser keys on its GB 11643 number whatever the type).
TYPE_LABELS: dict[str, tuple[str, ...]] = reference_lists("document_labels", "type", "label")


def type_labels(rng: np.random.Generator, codes: np.ndarray, codes_only: bool = False) -> np.ndarray:
    """One label per row for the given document type keys (see TYPE_LABELS)."""
    out = np.full(len(codes), None, dtype=object)
    for code, labels in TYPE_LABELS.items():
        rows = np.flatnonzero(codes == code)
        if not len(rows):
            continue
        choices = np.asarray(labels[:1] if codes_only and code != "permit" else labels, dtype=object)
        out[rows] = choices[rng.integers(0, len(choices), len(rows))]
    return out


def outsider_documents(o: Outsiders, idx: np.ndarray, rng: np.random.Generator,
                       prefer_key: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(type key, number, cause) per record: the permanent residence ID / residence permit
    when the person has one (with probability prefer_key), else the old card (foreigners
    holding one, half the time) or the passport / travel permit."""
    n = len(idx)
    foreign = o.kind[idx] == FOREIGNER
    has_key = np.array([v is not None for v in o.key_id[idx]], dtype=bool)
    use_key = has_key & (rng.random(n) < prefer_key)
    has_old = np.array([v is not None for v in o.old_card[idx]], dtype=bool)
    use_old = ~use_key & has_old & (rng.random(n) < 0.5)
    doc = np.where(foreign, o.passport[idx], o.travel_permit[idx])
    doc = np.where(use_old, o.old_card[idx], doc)
    doc = np.where(use_key, o.key_id[idx], doc)
    code = np.where(foreign, "414", np.where(o.kind[idx] == TAIWAN, "511", "516")).astype(object)
    code[use_old] = "553"
    code[use_key] = np.where(foreign[use_key], "553", "permit")
    cause = np.where(use_key, np.where(foreign, "latin_name", None), "other_document").astype(object)
    return code, doc, cause


def outsider_names(o: Outsiders, idx: np.ndarray, rng: np.random.Generator, traditional: float) -> np.ndarray:
    """Foreigners in Latin letters (per-record variants); HK/MO/TW residents in Chinese,
    traditional characters for `traditional` of the records."""
    latin = latin_variants(o.given[idx], o.surname[idx], rng)
    trad = rng.random(len(idx)) < traditional
    zh = np.where(trad, o.name_trad[idx], o.name_zh[idx])
    return np.where(o.kind[idx] == FOREIGNER, latin, zh)


def outsider_truth(o: Outsiders, idx: np.ndarray, cause: np.ndarray) -> dict[str, np.ndarray]:
    return {"true_person_id": o.true_id[idx], "cause": np.asarray(cause, dtype=object)}


def append_rows(t: Table, columns: dict[str, np.ndarray], true_ids: dict[str, np.ndarray]) -> None:
    """Extend a department table with more rows (columns missing from `columns` stay NULL)
    and their truth (keyed by the rows' primary key, as for the table's own rows)."""
    ensure_cause(t)
    truth = truth_rows(t.source, columns[t.primary_key], true_ids)
    n = len(truth["source_record_id"])
    for name, values in list(t.columns.items()):
        extra = columns.get(name, np.full(n, None, dtype=object))
        t.columns[name] = np.concatenate([np.asarray(values, dtype=object), np.asarray(extra, dtype=object)])
    for key in t.truth:
        extra = truth.get(key, np.full(n, None, dtype=object))
        t.truth[key] = np.concatenate([np.asarray(t.truth[key], dtype=object), np.asarray(extra, dtype=object)])


def add_column(t: Table, name: str, values: np.ndarray) -> None:
    """Add a column to a table, in the place its template gives it."""
    t.columns = in_table_order(t.columns | {name: values}, t.sql_types)


def dmy(days: np.ndarray) -> np.ndarray:
    y, m, d = ymd_of(days)
    return format_dates(y, m, d, "dmy")


RENEWED_SHARE = 0.15   # outsiders whose earlier (expired) document is also on file


def earlier_documents(o: Outsiders, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A previous passport / travel permit per person: another number of the same format."""
    templates = {x[0]: x[2] for x in NATIONALITIES} | {"HKG": "HDDDDDDDD", "MAC": "MDDDDDDDD", "TWN": "DDDDDDDD"}
    out = np.full(len(idx), None, dtype=object)
    nationality = o.nationality[idx]
    for code, template in templates.items():
        rows = np.flatnonzero(nationality == code)
        out[rows] = fill_template(rng, template, len(rows))
    return out


def add_outsiders_churujing(t: Table, o: Outsiders, rng: np.random.Generator, as_of: date) -> None:
    """Exit-entry: citizens' rows get 证件类型 111; nine in ten outsiders are registered with
    their passport or travel permit and a Latin name (mostly the passport's form); some also
    under the document they held before (a renewed passport has a new number)."""
    add_column(t, "ZJLX", np.full(len(t.columns["RYBH"]), "111", dtype=object))
    idx = np.flatnonzero(rng.random(len(o)) < 0.9)
    idx = idx[rng.permutation(len(idx))]
    renewed = idx[rng.random(len(idx)) < RENEWED_SHARE]
    n_current = len(idx)
    idx = np.concatenate([idx, renewed])
    n = len(idx)
    foreign = o.kind[idx] == FOREIGNER
    doc = np.where(foreign, o.passport[idx], o.travel_permit[idx])
    doc[n_current:] = earlier_documents(o, renewed, rng)
    code = np.where(foreign, "414", np.where(o.kind[idx] == TAIWAN, "511", "516")).astype(object)
    start = len(t.columns["RYBH"])
    rid = concat("E", padded_numbers(start + 1, n, 11))
    updated = update_seconds(rng, n, as_of, 3)
    updated[n_current:] -= rng.integers(3 * 365, 8 * 365, n - n_current) * 86400   # the older record
    cols = {
        "RYBH": rid, "ZJLX": code, "SFZH": doc,
        "YWXM": latin_variants(o.given[idx], o.surname[idx], rng, canonical=0.7),
        "XB": sex_labels(o.sex[idx], "M", "F"),
        "CSRQ": dmy(o.birth[idx]), "GJ": o.nationality[idx],
        "LXDH": np.where(np.arange(n) < n_current, o.phone[idx], None), "GXSJ": format_timestamps(updated),
    }
    append_rows(t, cols, outsider_truth(o, idx, np.full(n, "other_document", dtype=object)))


def add_outsiders_shebao(t: Table, o: Outsiders, rng: np.random.Generator, as_of: date) -> None:
    """Social insurance: a 证件类型 column (codes, labels, aliases; NULL = citizen ID); the
    insured outsiders registered with the permanent residence ID or residence permit when they
    hold one, else their passport / travel permit / old card."""
    n0 = len(t.columns["person_no"])
    citizen_type = np.asarray(("居民身份证", "身份证", "111", None), dtype=object)[
        weighted_choice(rng, n0, [0.55, 0.15, 0.2, 0.1])]
    add_column(t, "cert_type", citizen_type)
    idx = np.flatnonzero(rng.random(len(o)) < 0.55)
    idx = idx[rng.permutation(len(idx))]
    n = len(idx)
    code, doc, cause = outsider_documents(o, idx, rng, prefer_key=0.9)
    person_no = (np.arange(n) + 10_000_001 + n0).astype(object)
    by, bm, bd = ymd_of(o.birth[idx])
    cols = {
        "person_no": person_no, "cert_type": type_labels(rng, code), "id_card": doc,
        "full_name": outsider_names(o, idx, rng, traditional=0.4),
        "gender": sex_labels(o.sex[idx], "男", "女"),
        "birthday": format_dates(by, bm, bd, "slash"), "mobile": o.phone[idx],
        "update_time": update_times(rng, n, as_of),
    }
    append_rows(t, cols, outsider_truth(o, idx, cause))


# --------------------------------------------------------------------------------------
# Rare characters (生僻字)
# --------------------------------------------------------------------------------------

# A common given-name character -> a rare one read the same (outside GB 2312): the person's
# real character is the rare one; systems that cannot type it write the common one instead.
RARE_FOR: dict[str, str] = dict(reference_table("rare_characters", common=str, rare=str))
RARE_PINYIN = {r: p for c, p, _ in GIVEN_CHARS for k, r in RARE_FOR.items() if c == k}
RARE_SHARE = 0.01
# How a department without the character writes it: homophone, pinyin (lower / upper), * or ?
STAND_IN_KINDS = (("homophone", 0.35), ("pinyin", 0.12), ("PINYIN", 0.13), ("*", 0.25), ("?", 0.15))
# Share of a department's rare-character records written with a stand-in.
STAND_IN_RATE = {"shebao": 0.6, "minzheng": 0.7, "weijian": 0.6, "zhengwu_sqr": 0.5, "canlian": 0.7}
HOMOPHONE_OF = {r: c for c, r in RARE_FOR.items()}


def add_rare_characters(p: Persons, rng: np.random.Generator) -> np.ndarray:
    """Give ~1% of persons a rare character in their given name (in place); returns the rare
    character per person (None for the others)."""
    n = len(p)
    given = pd.Series(p.name, dtype=object).str[1:]
    pattern = "[" + "".join(RARE_FOR) + "]"
    can = given.str.contains(pattern, regex=True, na=False).to_numpy(dtype=bool) & ~p.minority
    chosen = can & (rng.random(n) < RARE_SHARE / max(can.mean(), 1e-9))
    rare = np.full(n, None, dtype=object)
    rows = np.flatnonzero(chosen)
    names = p.name.copy()
    for i in rows:
        name = names[i]
        for j in range(len(name) - 1, 0, -1):   # the last replaceable given-name character
            if name[j] in RARE_FOR:
                rare[i] = RARE_FOR[name[j]]
                names[i] = name[:j] + rare[i] + name[j + 1:]
                break
    p.name = names
    return rare


def stand_in(name: str, rare: str, kind: str) -> str:
    if kind == "homophone":
        return name.replace(rare, HOMOPHONE_OF[rare])
    if kind == "pinyin":
        return name.replace(rare, RARE_PINYIN[rare])
    if kind == "PINYIN":
        return name.replace(rare, RARE_PINYIN[rare].upper())
    return name.replace(rare, kind)


def apply_stand_ins(t: Table, rare_of_record: np.ndarray, rng: np.random.Generator, rate: float) -> None:
    """Rare characters of a department's records written as stand-ins."""
    column = column_of(t, "name")
    names = t.columns[column].copy()
    has = np.array([r is not None for r in rare_of_record], dtype=bool)
    has &= np.array([isinstance(v, str) and r is not None and r in v for v, r in zip(names, rare_of_record)], dtype=bool)
    rows = np.flatnonzero(has & (rng.random(len(names)) < rate))
    kinds = np.array([k for k, _ in STAND_IN_KINDS])[weighted_choice(rng, len(rows), [w for _, w in STAND_IN_KINDS])]
    for i, kind in zip(rows, kinds):
        names[i] = stand_in(names[i], rare_of_record[i], str(kind))
    t.columns[column] = names
    label(t, rows, "rare_character")


# --------------------------------------------------------------------------------------
# Damage: mojibake and Excel
# --------------------------------------------------------------------------------------

def column_of(t: Table, element: str) -> str:
    return next(c for c, e in t.mapping.items() if e == element)


def label(t: Table, rows: np.ndarray, cause: str) -> None:
    """Truth cause for rows that have none yet (the first phenomenon applied wins)."""
    current = t.truth["cause"]
    free = rows[np.array([current[i] is None for i in rows], dtype=bool)] if len(rows) else rows
    current[free] = cause


def mojibake(text: str, codec: str) -> str:
    """GBK bytes decoded as Latin-1 or Windows-1252 (bytes cp1252 leaves undefined stay
    C1 controls, as a Latin-1 reader shows them)."""
    raw = text.encode("gbk")
    if codec == "cp1252":
        return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in raw)
    return raw.decode("latin-1")


def apply_mojibake(t: Table, element: str, rng: np.random.Generator, rate: float) -> None:
    column = column_of(t, element)
    values = t.columns[column].copy()
    chosen = pick(rng, len(values), rate, at_least=0)
    # Only a legacy GBK system garbles text, so only text GBK can hold (not '•' or '・').
    rows = np.array([i for i in np.flatnonzero(chosen) if isinstance(values[i], str) and not values[i].isascii()
                     and encodable(values[i], "gbk")], dtype=np.int64)
    codecs = np.where(rng.random(len(rows)) < 0.5, "latin-1", "cp1252")
    for i, codec in zip(rows, codecs):
        values[i] = mojibake(values[i], str(codec))
    t.columns[column] = values
    label(t, rows, "mojibake")


def excel_scientific(number: str, significant: int) -> str:
    """How Excel shows an 18-digit number: 1.10105E+17 (narrow column) or 15 significant digits."""
    mantissa = (number[0] + "." + number[1:significant]).rstrip("0").rstrip(".")
    return f"{mantissa}E+{len(number) - 1}"


def apply_excel_ids(t: Table, rng: np.random.Generator, scientific: float, truncated: float) -> None:
    """ID numbers that went through a spreadsheet as numbers: only all-digit 18-digit values
    (one ending in X stayed text)."""
    column = column_of(t, "id_number")
    values = t.columns[column].copy()
    s = pd.Series(values, dtype=object)
    digits18 = s.str.fullmatch(r"[0-9]{18}", na=False).to_numpy(dtype=bool)
    r = rng.random(len(values))
    sci = np.flatnonzero(digits18 & (r < scientific))
    cut = np.flatnonzero(digits18 & (r >= scientific) & (r < scientific + truncated))
    wide = rng.random(len(sci)) < 0.5
    for i, w in zip(sci, wide):
        values[i] = excel_scientific(values[i], 15 if w else 6)
    for i in cut:
        values[i] = values[i][:15] + "000"
    t.columns[column] = values
    label(t, np.concatenate([sci, cut]).astype(np.int64), "excel_damage")


def excel_serial(days: np.ndarray) -> np.ndarray:
    """Excel's serial day number (1900 system: day 25569 is 1970-01-01)."""
    return (np.asarray(days, dtype=np.int64) + 25569).astype(str).astype(object)


# --------------------------------------------------------------------------------------
# New departments: the service hall's applicant register and the disability federation
# --------------------------------------------------------------------------------------

def citizen_documents(p: Persons, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Citizens at the service hall: mostly the ID card; some a passport (no key), a driving
    licence or household register (both carry the ID number)."""
    n = len(idx)
    choice = weighted_choice(rng, n, [0.92, 0.04, 0.02, 0.02])
    code = np.array(["111", "414", "335", "113"], dtype=object)[choice]
    matrix = mistype(p.id_matrix[idx], rng, pick(rng, n, 0.005), pick(rng, n, 0.003))
    number = disguise(ascii_rows(matrix), rng, fullwidth=0.01, spaces=0.01, lower_x=0.3)
    passport = choice == 1
    number[passport] = fill_template(rng, "EDDDDDDDD", int(passport.sum()))
    cause = np.where(passport, "other_document", None).astype(object)
    return code, number, cause


def zhengwu_sqr_table(p: Persons, o: Outsiders, rare: np.ndarray, rng: np.random.Generator, as_of: date) -> Table:
    """政务服务大厅申请人: everyone who registered at the hall, with 证件类型 + 证件号码."""
    today = day_number(as_of)
    citizens = members(rng, p, 0.25, today - p.birth >= 16 * 365)
    outs = np.flatnonzero(rng.random(len(o)) < 0.5)
    c_code, c_number, c_cause = citizen_documents(p, citizens, rng)
    o_code, o_number, o_cause = outsider_documents(o, outs, rng, prefer_key=0.7)
    code = np.concatenate([c_code, o_code])
    number = np.concatenate([c_number, o_number])
    cause = np.concatenate([c_cause, o_cause])
    name = np.concatenate([p.name[citizens], outsider_names(o, outs, rng, traditional=0.5)])
    sex = np.concatenate([p.sex[citizens], o.sex[outs]])
    phone = np.concatenate([p.phone[citizens], o.phone[outs]])
    address = np.concatenate([addresses(p.region_idx[citizens], p.street[citizens], p.house[citizens]),
                              addresses(o.region_idx[outs], o.street[outs], o.house[outs])])
    true_id = np.concatenate([p.true_id[citizens], o.true_id[outs]])
    rare_rec = np.concatenate([rare[citizens], np.full(len(outs), None, dtype=object)])
    order = rng.permutation(len(code))
    n = len(order)
    rid = record_ids("SQR", n, 10)
    columns = {
        "SQRBH": rid, "ZJLX": type_labels(rng, code[order]), "ZJHM": number[order], "SQRXM": name[order],
        "XB": sex_labels(sex[order], "男", "女"),
        "LXDH": blank_out(phone[order], rng, 0.03, 0.02),
        "TXDZ": blank_out(address[order], rng, 0.05, 0.03),
        "GXSJ": update_times(rng, n, as_of, 4),
    }
    t = department_table("zhengwu_sqr", columns, {"true_person_id": true_id[order], "cause": cause[order].copy()})
    t.rare = rare_rec[order]   # type: ignore[attr-defined]
    return t


DISABILITY_KINDS = ("视力残疾", "听力残疾", "言语残疾", "肢体残疾", "智力残疾", "精神残疾", "多重残疾")


def family_phones(p: Persons, idx: np.ndarray, rng: np.random.Generator, as_of: date) -> tuple[np.ndarray, np.ndarray]:
    """Phone per record and whether it is a relative's: a minor's record carries a parent's
    phone, an elder's (70+) often a child's."""
    today = day_number(as_of)
    age = (today - p.birth[idx]) / 365.25
    phone = p.phone[idx].copy()
    shared = np.zeros(len(idx), dtype=bool)
    parent = p.parent[idx]
    minor = (age < 18) & (parent >= 0)
    minor &= np.array([p.phone[j] is not None for j in np.maximum(parent, 0)], dtype=bool)
    minor &= rng.random(len(idx)) < 0.85
    phone[minor] = p.phone[parent[minor]]
    shared |= minor
    kids = np.flatnonzero(p.parent >= 0)
    child_of = pd.Series(kids, index=p.parent[kids]).groupby(level=0).first()
    child = child_of.reindex(idx).to_numpy()
    elder = (age >= 70) & ~np.isnan(child.astype(float)) & (rng.random(len(idx)) < 0.5)
    ci = np.where(elder, np.nan_to_num(child.astype(float)), 0).astype(np.int64)
    elder &= np.array([p.phone[j] is not None for j in ci], dtype=bool)
    phone[elder] = p.phone[ci[elder]]
    shared |= elder
    return phone, shared


def canlian_table(p: Persons, rare: np.ndarray, rng: np.random.Generator, as_of: date) -> Table:
    """残联 disability register: no ID column; its own registry number; 男性/女性; birth dates
    dotted, ISO or as Excel serial numbers; phones shared within families; addresses."""
    today = day_number(as_of)
    age = (today - p.birth) / 365.25
    # Disability is far more common with age: ~1% of children, ~3% of adults, ~10% of 70+.
    share = np.where(age < 18, 0.01, np.where(age < 60, 0.025, np.where(age < 70, 0.06, 0.10)))
    idx = np.flatnonzero(rng.random(len(p)) < share)
    idx = idx[rng.permutation(len(idx))]
    n = len(idx)
    phone, shared = family_phones(p, idx, rng, as_of)
    y, m, d = p.y[idx], p.m[idx], p.d[idx]
    style = weighted_choice(rng, n, [0.55, 0.25, 0.2])
    iso = format_dates(y, m, d, "iso").astype(object)
    dotted = np.array([v.replace("-", ".") for v in iso], dtype=object)
    dates = np.where(style == 0, dotted, np.where(style == 1, excel_serial(p.birth[idx]), iso))
    moved = rng.random(n) < 0.1
    street = np.where(moved, rng.integers(0, len(STREETS), n), p.street[idx])
    region = REGION_CODES[p.region_idx[idx]].astype(str).astype(object)
    # The registry number: county code + year registered + sequence (no ID number in it).
    registered = today - rng.integers(30, 15 * 365, n)
    ry, _, _ = ymd_of(registered)
    rid = concat(region, ry.astype(str).astype(object), padded_numbers(1, n, 7))
    cause = np.where(shared, "shared_phone", "no_identifier").astype(object)
    columns = {
        "CJRBH": rid, "XM": p.name[idx], "XB": sex_labels(p.sex[idx], "男性", "女性"), "CSRQ": dates,
        "LXDH": blank_out(phone, rng, 0.05, 0.03),
        "JTZZ": blank_out(addresses(p.region_idx[idx], street, p.house[idx]), rng, 0.03, 0.02),
        "CJLB": np.asarray(DISABILITY_KINDS, dtype=object)[rng.integers(0, len(DISABILITY_KINDS), n)],
        "CJDJ": np.asarray(("一级", "二级", "三级", "四级"), dtype=object)[rng.integers(0, 4, n)],
        "GXSJ": update_times(rng, n, as_of, 6),
    }
    t = department_table("canlian", columns, {"true_person_id": p.true_id[idx], "cause": cause})
    t.rare = rare[idx]   # type: ignore[attr-defined]
    return t


# --------------------------------------------------------------------------------------
# Enterprises: branches, individual businesses, records without any code
# --------------------------------------------------------------------------------------

BRANCH_SHARE = 0.08        # branches per enterprise
INDIVIDUAL_SHARE = 0.40    # individual businesses per enterprise (demo-sized; really ~2:1)
# What individual businesses are (GB/T 4754 division, the shop word in their names).
SHOP_TRADES: tuple[tuple[str, str], ...] = reference_table("shop_trades", industry=str, shop=str)


@dataclass
class ExtraEnterprises:
    e: Enterprises
    is_branch: np.ndarray
    head: np.ndarray   # head-office index into the base enterprises, -1


def fresh_org_codes(rng: np.random.Generator, n: int, taken: np.ndarray) -> np.ndarray:
    """n organisation codes (ASCII matrix) distinct from `taken` and each other."""
    codes = org_codes(rng, n)
    used = set(taken.tolist())
    for _ in range(20):
        text = ascii_rows(codes)
        clash = np.array([c in used for c in text], dtype=bool) | pd.Series(text).duplicated().to_numpy()
        if not clash.any():
            break
        codes[clash] = org_codes(rng, int(clash.sum()))
    return codes


def build_extra_enterprises(rng: np.random.Generator, e: Enterprises, p: Persons, as_of: date) -> ExtraEnterprises:
    n_branch = max(1, round(len(e) * BRANCH_SHARE))
    n_ind = max(1, round(len(e) * INDIVIDUAL_SHARE))
    n = n_branch + n_ind
    is_branch = np.arange(n) < n_branch
    today = day_number(as_of)
    head = np.where(is_branch, rng.integers(0, len(e), n), -1)
    region_idx = draw_regions(rng, n)
    region = REGION_CODES[region_idx]
    h = np.maximum(head, 0)
    start = np.where(is_branch, e.founded[h] + 180, day_number(date(2000, 1, 1)))
    founded = start + np.floor(rng.random(n) * np.maximum(today - 30 - start, 1)).astype(np.int64)
    org = fresh_org_codes(rng, n, e.org_code)
    uscc = np.where(is_branch, ascii_rows(uscc_matrix(region, org, b"91")), ascii_rows(uscc_matrix(region, org, b"92")))
    reg_no = ascii_rows(reg_no_matrix(region, rng.integers(0, 10**8, n)))
    tax_no = concat(region.astype(str).astype(object), ascii_rows(org))
    # Operators / branch managers: adults of the world.
    adults = np.flatnonzero(today - p.birth >= 22 * 365)
    adults = adults if len(adults) else np.arange(len(p))
    legal_rep = adults[rng.integers(0, len(adults), n)]
    city = REGION_CITY[region_idx]
    place = pd.Series(city, dtype=object).str.replace(r"市$", "", regex=True).to_numpy(dtype=object)
    branch_name = concat(e.name[h], place, "分公司")
    trade = rng.integers(0, len(SHOP_TRADES), n)
    county = np.array([r[3] for r in REGION_TABLE], dtype=object)[region_idx]
    surname = pd.Series(p.name[legal_rep], dtype=object).str[0].to_numpy(dtype=object)
    brand = np.where(rng.random(n) < 0.5, concat(surname, "记"), np.asarray(("老", "小", "新", "福", "好"), dtype=object)[
        rng.integers(0, 5, n)] + surname)
    shop_name = concat(county, brand, np.array([s[1] for s in SHOP_TRADES], dtype=object)[trade])
    name = np.where(is_branch, branch_name, shop_name)
    industry_codes = [i[0] for i in INDUSTRIES]
    shop_industry = np.array([industry_codes.index(s[0]) for s in SHOP_TRADES])[trade]
    industry = np.where(is_branch, e.industry[h], shop_industry)
    first = len(e) + 1
    extra = Enterprises(
        true_id=concat("TE", padded_numbers(first, n, 8)),
        region_idx=region_idx, founded=founded, uscc=uscc, org_code=ascii_rows(org), reg_no=reg_no,
        tax_no=tax_no, name=name, city=city, legal_form=np.zeros(n, dtype=np.int64), industry=industry,
        legal_rep=legal_rep, street=rng.integers(0, len(STREETS), n), house=rng.integers(1, 400, n))
    return ExtraEnterprises(e=extra, is_branch=is_branch, head=head)


def extra_cause(x: ExtraEnterprises, idx: np.ndarray) -> np.ndarray:
    return np.where(x.is_branch[idx], "branch", "individual_business").astype(object)


def add_enterprises_shichang(t: Table, x: ExtraEnterprises, p: Persons, rng: np.random.Generator, as_of: date) -> None:
    """The business register holds every branch and individual business."""
    e = x.e
    idx = rng.permutation(len(e))
    n = len(idx)
    start = len(t.columns["NBXH"])
    nbxh = (np.arange(n) + start + 1).astype(object)
    old = e.founded[idx] < REFORM_DAY
    fy, fm, fd = ymd_of(e.founded[idx])
    cols = {
        "NBXH": nbxh, "TYSHXYDM": e.uscc[idx], "ZCH": np.where(old & (rng.random(n) < 0.7), e.reg_no[idx], None),
        "QYMC": e.name[idx], "FDDBR": p.name[e.legal_rep[idx]],
        "FDDBRZJHM": disguise(p.id18[e.legal_rep[idx]], rng, fullwidth=0.01, spaces=0.005),
        "CLRQ": format_dates(fy, fm, fd, "iso"),
        "ZS": addresses(e.region_idx[idx], e.street[idx], e.house[idx]),
        "HYDM": np.array([i[0] for i in INDUSTRIES], dtype=object)[e.industry[idx]],
        "GXSJ": update_times(rng, n, as_of),
    }
    append_rows(t, cols, {"true_enterprise_id": e.true_id[idx], "cause": extra_cause(x, idx)})


def add_enterprises_shuiwu(t: Table, x: ExtraEnterprises, p: Persons, rng: np.random.Generator, as_of: date) -> None:
    """Tax: most branches and individual businesses; a quarter of the individual businesses
    (fixed-quota taxpayers) are kept by name and operator only, without any code. A few
    ordinary records lost their codes as well."""
    e = x.e
    idx = np.flatnonzero(rng.random(len(e)) < 0.85)
    idx = idx[rng.permutation(len(idx))]
    n = len(idx)
    no_code = ~x.is_branch[idx] & (rng.random(n) < 0.25)
    uscc = np.where(no_code, None, e.uscc[idx])
    fy, fm, fd = ymd_of(e.founded[idx])
    start = len(t.columns["DJXH"])
    djxh = concat("1", REGION_CODES[e.region_idx[idx]].astype(str).astype(object),
                  padded_numbers(start + 1, n, 13))
    # Tax clerks name individual businesses their own way: without the county, or after the
    # operator (a fixed-quota taxpayer is often just a person's name).
    names = e.name[idx].copy()
    shop = ~x.is_branch[idx]
    r = rng.random(n)
    county = np.array([c[3] for c in REGION_TABLE], dtype=object)[e.region_idx[idx]]
    drop = np.flatnonzero(shop & (r < 0.25))
    names[drop] = [nm.removeprefix(c) for nm, c in zip(names[drop], county[drop])]
    by_operator = shop & (r >= 0.25) & (r < 0.4)
    names[by_operator] = p.name[e.legal_rep[idx[by_operator]]]
    cols = {
        "DJXH": djxh, "SHXYDM": uscc, "NSRMC": names, "FDDBRXM": p.name[e.legal_rep[idx]],
        "SCJYDZ": addresses(e.region_idx[idx], e.street[idx], e.house[idx]),
        "KYRQ": format_dates(fy, fm, fd, "compact"),
        "HYDM": np.array([i[0] for i in INDUSTRIES], dtype=object)[e.industry[idx]],
        "LRSJ": update_times(rng, n, as_of),
    }
    cause = np.where(no_code, "no_code", extra_cause(x, idx)).astype(object)
    append_rows(t, cols, {"true_enterprise_id": e.true_id[idx], "cause": cause})


def drop_codes(t: Table, rng: np.random.Generator, rate: float, first_rows: int) -> None:
    """Tax records (of the first `first_rows`, the base enterprises) that lost every code."""
    rows = np.flatnonzero(pick(rng, first_rows, rate, at_least=0))
    for element in ("uscc", "tax_no"):
        column = column_of(t, element)
        values = t.columns[column].copy()
        values[rows] = None
        t.columns[column] = values
    label(t, rows, "no_code")


# --------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------

# Per-source damage rates: (mojibake names, mojibake addresses, Excel scientific, Excel truncated).
DAMAGE = {
    "shebao": (0.0, 0.0, 0.006, 0.004),
    "minzheng": (0.012, 0.012, 0.006, 0.004),
    "weijian": (0.006, 0.006, 0.004, 0.003),
    "zhengwu_sqr": (0.0, 0.0, 0.003, 0.002),
    "canlian": (0.01, 0.01, 0.0, 0.0),
    "shuiwu": (0.004, 0.004, 0.0, 0.0),
}


def person_index(p: Persons, truth: dict[str, np.ndarray]) -> np.ndarray:
    """Citizen index of each truth row (-1 for outsiders), from the TP number."""
    number = pd.Series(truth["true_person_id"], dtype=object).str[2:].astype(np.int64).to_numpy() - 1
    return np.where(number < len(p), number, -1)


def ensure_cause(t: Table) -> None:
    n = len(t.truth["source_record_id"])
    if "cause" not in t.truth:
        t.truth["cause"] = np.full(n, None, dtype=object)


def damage(t: Table, p: Persons, rare: np.ndarray, seed: int) -> None:
    """Legacy damage of one department table, each phenomenon from its own stream."""
    ensure_cause(t)
    if t.kind == "person" and t.source in STAND_IN_RATE:
        rare_rec = getattr(t, "rare", None)
        if rare_rec is None:
            pi = person_index(p, t.truth)
            rare_rec = np.where(pi >= 0, rare[np.maximum(pi, 0)], None)
        apply_stand_ins(t, rare_rec, phenomenon_rng(seed, "stand_in", t.source), STAND_IN_RATE[t.source])
    rates = DAMAGE.get(t.source)
    if rates is None:
        return
    name_rate, address_rate, sci, cut = rates
    rng = phenomenon_rng(seed, "mojibake", t.source)
    if name_rate:
        apply_mojibake(t, "name", rng, name_rate)
    if address_rate:
        apply_mojibake(t, "address", rng, address_rate)
    if sci or cut:
        apply_excel_ids(t, phenomenon_rng(seed, "excel", t.source), sci, cut)


def check_table(t: Table) -> None:
    """The generator filled every column the template declares or maps, and all columns are
    one length."""
    missing = (set(t.sql_types) | set(t.mapping)) - set(t.columns)
    if missing:
        raise ValueError(f"department {t.source}: template declares column(s) the generator does not fill: "
                         f"{', '.join(sorted(missing))}")
    lengths = {len(v) for v in t.columns.values()} | {len(v) for v in t.truth.values()}
    if len(lengths) != 1:
        raise ValueError(f"department {t.source}: columns of different lengths {sorted(lengths)}")


__all__ = ["Outsiders", "add_rare_characters", "build_extra_enterprises", "build_outsiders", "canlian_table",
           "damage", "digits", "id_check_chars", "map_unique", "zhengwu_sqr_table"]
