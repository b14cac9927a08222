"""The demo department generator: determinism, contracts and the faults it must contain."""
from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import opencc
import pandas as pd
import pytest
import yaml
from govdata.standards.model import KINDS
from govdata.standards.sources import load_source
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError
from stdnum.iso7064 import mod_11_10

from govdata import demo_data
from govdata.demo_data import (
    HOMOPHONES,
    SERVICE_ITEMS,
    build_persons,
    format_dates,
    generate,
    id_matrix,
    mistype,
)
from tests.govdata.demo_world import AS_OF, generated_world, read_source, source_doc

PERSONS = 400
SOURCES = ("gongan", "shebao", "minzheng", "weijian", "churujing", "shichang", "shuiwu",
           "zhengwu", "zhengzhao", "zhengwu_sqr", "canlian")
ID18 = re.compile(r"^\d{17}[\dX]$")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_world(tmp_path_factory, "demo", PERSONS, seed=7)


def checksum_ok(number: str) -> bool:
    """GB 11643 checksum and birth date via python-stdnum. Not ric.is_valid: its region table
    stops in 2014 and rejects newer county codes (DESIGN.md: stdnum for checksums only)."""
    try:
        ric.get_birth_date(number)
    except (ValidationError, ValueError):
        return False
    return ric.calc_check_digit(number) == number[17]


def files_by_name(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(world: Path, tmp_path: Path) -> None:
    counts = generate(tmp_path / "again", PERSONS, seed=7, as_of=AS_OF)
    first, second = files_by_name(world), files_by_name(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert len(first) == 11 + 11 + 4 + 1   # databases, source YAMLs, truth files, service items
    assert all(first[name] == second[name] for name in first)
    assert set(counts) == set(SOURCES)
    assert counts["zhengwu"] == PERSONS and counts["zhengzhao"] == PERSONS // 2
    # 40 enterprises, 3 of their branches (8%) and 16 individual businesses (40%)
    assert counts["shichang"] == PERSONS // 10 + 3 + 16


def test_different_seed_gives_different_world(world: Path, tmp_path: Path) -> None:
    generate(tmp_path / "other", PERSONS, seed=8, as_of=AS_OF)
    for source in ("gongan", "shichang", "zhengwu"):
        assert not read_source(world, source).equals(read_source(tmp_path / "other", source))


def test_source_yamls_follow_the_contract(world: Path) -> None:
    required = ["name", "department", "kind", "connection", "table", "primary_key", "columns"]
    for source in SOURCES:
        path = world / "sources" / f"{source}.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert list(doc)[:7] == required, source
        assert doc["name"] == source and doc["kind"] in KINDS
        assert doc["connection"] == f"sqlite:///../departments/{source}.sqlite"
        db = (path.parent / doc["connection"].removeprefix("sqlite:///")).resolve()
        assert db.is_file()
        with sqlite3.connect(db) as con:
            table_cols = [r[1] for r in con.execute(f'PRAGMA table_info("{doc["table"]}")')]
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", doc["table"]), doc["table"]
        assert doc["primary_key"] in table_cols
        assert set(doc["columns"]) <= set(table_cols), source
        if "incremental" in doc:
            assert doc["incremental"]["column"] in table_cols
        # The project's loader accepts it: keys, elements of the kind, overrides, connection.
        config = load_source(path)
        assert config.elements == list(doc["columns"].values())
        assert config.connection == f"sqlite:///{db}"
    churujing = source_doc(world, "churujing")
    assert churujing["overrides"] == {"birth_date": {"format": "%d/%m/%Y", "dayfirst": True}}


@pytest.mark.parametrize("kind,sources,truth_file,key", [
    ("person", ("gongan", "shebao", "minzheng", "weijian", "churujing", "zhengwu_sqr", "canlian"),
     "persons.parquet", "true_person_id"),
    ("enterprise", ("shichang", "shuiwu"), "enterprises.parquet", "true_enterprise_id"),
    ("application", ("zhengwu",), "applications.parquet", "true_person_id"),
    ("certificate", ("zhengzhao",), "certificates.parquet", "true_person_id"),
])
def test_truth_covers_every_record_exactly_once(world: Path, kind: str, sources: tuple[str, ...],
                                                truth_file: str, key: str) -> None:
    truth = pd.read_parquet(world / "truth" / truth_file)
    assert not truth.duplicated(["source_system", "source_record_id"]).any()
    assert set(truth["source_system"]) == set(sources)
    for source in sources:
        records = read_source(world, source)[source_doc(world, source)["primary_key"]].astype(str)
        mine = truth.loc[truth["source_system"] == source, "source_record_id"]
        assert sorted(mine) == sorted(records), source
    if kind in ("person", "enterprise"):
        assert truth[key].notna().all()


def test_truth_never_enters_department_databases(world: Path) -> None:
    for source in SOURCES:
        frame = read_source(world, source)
        text = frame.astype(str).to_numpy().ravel()
        assert not any(v.startswith(("TP0", "TE0")) for v in text), source


def test_applications_and_certificates_name_one_holder(world: Path) -> None:
    apps = read_source(world, "zhengwu")
    truth = pd.read_parquet(world / "truth" / "applications.parquet").set_index("source_record_id")
    by_person = apps["SQRZJHM"].notna().to_numpy()
    assert (by_person ^ apps["SQDWTYDM"].notna().to_numpy()).all()
    t = truth.loc[apps["SQBH"]]
    assert (t["true_person_id"].notna().to_numpy() == by_person).all()
    assert (t["true_enterprise_id"].notna().to_numpy() == ~by_person).all()
    assert set(apps["SQQD"]) == {"窗口", "网上", "移动端", "自助终端", "热线"}
    assert set(apps["SXBM"]) <= {s[0] for s in SERVICE_ITEMS}
    assert apps["MYDPJ"].isna().any() and set(apps["MYDPJ"].dropna().astype(int)) <= {1, 2, 3, 4, 5}
    assert apps["CXZZBH"].notna().any()
    # A presented certificate exists in the certificate library.
    certs = read_source(world, "zhengzhao")
    assert set(apps["CXZZBH"].dropna()) <= set(certs["ZZBH"])
    limits = {s[0]: s[2] for s in SERVICE_ITEMS}
    assert (apps["FDBJSX"] == apps["SXBM"].map(limits)).all()
    done = apps["BJSJ"].notna()
    assert (apps.loc[done, "BJSJ"] >= apps.loc[done, "SLSJ"]).all()
    assert (apps["SLSJ"] >= apps["TJSJ"]).all()


def test_certificates_expire_soon_for_some(world: Path) -> None:
    certs = read_source(world, "zhengzhao")
    expiry = pd.to_datetime(certs["YXQZ"], format="%Y-%m-%d")
    days_left = (expiry - pd.Timestamp(AS_OF)).dt.days
    assert ((days_left > 0) & (days_left <= 30)).any()
    assert ((days_left > 30) & (days_left <= 90)).any()
    assert certs["YXQZ"].isna().any()   # marriage certificates, business licences never expire
    assert (certs["CZRSFZH"].notna() ^ certs["CZZTDM"].notna()).all()
    licences = certs[certs["ZZLXMC"] == "营业执照"]
    assert (licences["ZZBH"] == licences["CZZTDM"]).all()
    assert certs["ZZBH"].is_unique


def test_service_item_catalogue_is_written(world: Path) -> None:
    items = pd.read_csv(world / "service_items.csv", dtype=str)
    assert list(items.columns) == ["code", "name", "legal_limit_days", "department"]
    assert len(items) == 20
    assert list(items["code"]) == [f"S{i:04d}" for i in range(1, 21)]
    assert items.iloc[0].tolist() == ["S0001", "户口迁移登记", "5", "公安局"]


# --- identifiers ----------------------------------------------------------------------

def test_generated_person_ids_pass_the_gb11643_checksum() -> None:
    persons = build_persons(np.random.default_rng(3), 2000, AS_OF)
    assert all(checksum_ok(v) for v in persons.id18)
    assert len(set(persons.id18)) == 2000
    # The 17th digit is odd for men (sex code 1) and even for women (2).
    seventeenth = np.array([int(v[16]) for v in persons.id18])
    assert ((seventeenth % 2 == 1) == (persons.sex == 1)).all()
    assert any(v.endswith("X") for v in persons.id18)
    assert {v[:6] for v in persons.id18} & {"110103", "110104", "310103"}   # abolished codes


def test_check_digit_matches_a_known_number() -> None:
    m = id_matrix(np.array([110105]), np.array([1949]), np.array([12]), np.array([31]), np.array([2]))
    assert m.tobytes().decode() == "11010519491231002X"


def test_department_ids_that_look_valid_are_valid(world: Path) -> None:
    gongan = read_source(world, "gongan")
    assert gongan["SFZHM"].map(checksum_ok).all()
    assert (gongan["XBDM"] == gongan["SFZHM"].str[16].astype(int).mod(2).map({1: "1", 0: "2"})).all()
    shichang = read_source(world, "shichang")
    assert shichang["TYSHXYDM"].map(uscc.is_valid).all()
    assert shichang["ZCH"].dropna().map(mod_11_10.is_valid).all()
    assert shichang["ZCH"].isna().any()


def test_given_names_fit_the_sex() -> None:
    p = build_persons(np.random.default_rng(2), 2000, AS_OF)
    female_only = {g[0] for g in demo_data.GIVEN_CHARS if g[2] == "f"}
    male_only = {g[0] for g in demo_data.GIVEN_CHARS if g[2] == "m"}
    han = ~p.minority
    men = [n[1:] for n in p.name[han & (p.sex == 1)]]
    women = [n[1:] for n in p.name[han & (p.sex == 2)]]
    assert men and women
    assert not any(set(g) & female_only for g in men)
    assert not any(set(g) & male_only for g in women)


def test_namesakes_and_twins_exist() -> None:
    p = build_persons(np.random.default_rng(11), 3000, AS_OF)
    frame = pd.DataFrame({"name": p.name, "sex": p.sex, "birth": p.birth, "id": p.id18})
    same = frame[frame.duplicated(["name", "sex", "birth"], keep=False)]
    assert same.groupby(["name", "sex", "birth"])["id"].nunique().gt(1).any()
    twins = np.flatnonzero(p.twin_of >= 0)
    assert len(twins) >= 2
    for a in twins:
        b = p.twin_of[a]
        assert p.name[a][0] == p.name[b][0] or p.minority[a]
        assert p.birth[a] == p.birth[b] and p.region[a] == p.region[b]
        assert abs(int(p.id18[a][14:17]) - int(p.id18[b][14:17])) == 1


def test_mistype_changes_one_digit_or_swaps_neighbours() -> None:
    m = id_matrix(np.array([110105] * 2), np.array([1980] * 2), np.array([1] * 2), np.array([23] * 2),
                  np.array([456] * 2))
    rng = np.random.default_rng(0)
    typo = mistype(m, rng, np.array([True, False]), np.array([False, False]))
    assert (typo[0] != m[0]).sum() == 1 and (typo[1] == m[1]).all()
    swap = mistype(m, rng, np.array([False, False]), np.array([False, True]))
    diff = np.flatnonzero(swap[1] != m[1])
    assert len(diff) == 2 and diff[1] == diff[0] + 1
    assert sorted(swap[1][diff]) == sorted(m[1][diff])
    assert not checksum_ok(typo[0].tobytes().decode())


# --- faults ---------------------------------------------------------------------------

def all_person_ids(world: Path) -> pd.Series:
    cols = {"gongan": "SFZHM", "shebao": "id_card", "minzheng": "SFZH", "weijian": "ZJHM", "churujing": "SFZH"}
    return pd.concat([read_source(world, s)[c] for s, c in cols.items()], ignore_index=True)


def test_id_typing_faults_occur(world: Path) -> None:
    ids = all_person_ids(world).dropna()
    assert ids.str.contains("[０-９]").any()             # full-width digits
    assert ids.str.contains(" ").any()                   # embedded spaces
    assert ids.str.endswith("x").any()                   # lowercase check character
    shebao = read_source(world, "shebao")["id_card"].dropna()
    assert shebao.str.fullmatch(r"\d{15}").any()           # legacy 15-digit numbers
    legacy = shebao[shebao.str.fullmatch(r"\d{15}")]
    assert (legacy.str[6:8].astype(int) < 70).all()        # only people born before 1970
    minzheng = read_source(world, "minzheng")["SFZH"]
    assert minzheng.isna().any() and (minzheng == "").any()
    look_valid = minzheng.dropna()[minzheng.dropna().str.fullmatch(ID18)]
    assert (~look_valid.map(checksum_ok)).any()           # typos / transpositions


def test_weijian_children_carry_a_guardian_id(world: Path) -> None:
    wj = read_source(world, "weijian")
    clean = wj[wj["ZJHM"].fillna("").str.fullmatch(ID18) & wj["CSRQ"].str.fullmatch(r"\d{8}")]
    birth_year = clean["CSRQ"].str[:4].astype(int)
    id_year = clean["ZJHM"].str[6:10].astype(int)
    guardian = (birth_year >= AS_OF.year - 6) & (birth_year - id_year >= 20)
    assert guardian.any()


def test_churujing_names_are_pinyin_only(world: Path) -> None:
    # Citizens (证件类型 111) in upper-case pinyin; foreigners' and HK/MO/TW residents' Latin
    # names vary per record (test_demo_identity).
    crj = read_source(world, "churujing")
    names = crj.loc[crj["ZJLX"] == "111", "YWXM"]
    assert len(names) and names.str.fullmatch(r"[A-Z]+ [A-Z]+").all()


def test_churujing_has_minority_pinyin_names() -> None:
    p = build_persons(np.random.default_rng(5), 2000, AS_OF)
    minority_latin = set(p.name_latin[p.minority])
    assert minority_latin and all(re.fullmatch(r"[A-Z]+ [A-Z]+", v) for v in minority_latin)
    i = int(np.flatnonzero(p.minority)[0])
    given, father = p.name[i].split("·")
    latin_given = dict(demo_data.MINORITY_GIVEN)[given]
    assert p.name_latin[i] == f"{latin_given} {dict(demo_data.MINORITY_FATHER)[father]}"
    assert (p.ethnicity[p.minority] == "05").all()


def test_shuiwu_has_old_tax_numbers_and_name_variants(world: Path) -> None:
    sw = read_source(world, "shuiwu")
    old = sw[sw["SHXYDM"].fillna("").eq("") & sw["YNSRSBH"].notna()]
    assert len(old) and old["YNSRSBH"].str.fullmatch(r"\d{6}[0-9A-Z]{9}").all()
    truth = pd.read_parquet(world / "truth" / "enterprises.parquet")
    sc = read_source(world, "shichang").assign(NBXH=lambda f: f["NBXH"].astype(str))
    key = truth.set_index(["source_system", "source_record_id"])["true_enterprise_id"]
    sc["true"] = key.loc["shichang"].loc[sc["NBXH"]].to_numpy()
    sw["true"] = key.loc["shuiwu"].loc[sw["DJXH"]].to_numpy()
    # The base enterprises (branches and individual businesses are test_demo_identity's).
    extra = set(truth.loc[truth["cause"].isin(["branch", "individual_business"]), "true_enterprise_id"])
    both = sw.merge(sc, on="true", suffixes=("_sw", "_sc"))
    both = both[~both["true"].isin(extra)]
    # An old tax number is the region code plus the organisation code inside the USCC.
    old_pairs = both[both["SHXYDM"].fillna("").eq("") & both["YNSRSBH"].notna()]
    assert (old_pairs["YNSRSBH"] == old_pairs["TYSHXYDM"].str[2:8] + old_pairs["TYSHXYDM"].str[8:17]).all()
    differ = both[both["NSRMC"] != both["QYMC"]]

    def canon(name: str) -> str:
        return name.replace("（", "(").replace("）", ")").replace("有限责任公司", "有限公司")

    # Every difference is one of the known variants; each variant occurs.
    assert all(canon(a) == canon(b) or canon(b).endswith(canon(a)) for a, b in zip(differ["NSRMC"], differ["QYMC"]))
    assert differ["NSRMC"].str.contains("（").any()
    assert any(canon(a) == canon(b) and "（" not in a for a, b in zip(differ["NSRMC"], differ["QYMC"]))
    assert any(canon(a) != canon(b) for a, b in zip(differ["NSRMC"], differ["QYMC"]))


def test_minzheng_has_traditional_names_and_chinese_dates(world: Path) -> None:
    mz = read_source(world, "minzheng")
    t2s = opencc.OpenCC("t2s")
    simplified = mz["XINGMING"].map(t2s.convert)
    assert (simplified != mz["XINGMING"]).any()
    assert mz["CSRQ"].str.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日").all()
    assert set(mz["XB"]) == {"男", "女", "未知"}


def test_impossible_dates_occur(world: Path) -> None:
    formats = {"shebao": ("birthday", "%Y/%m/%d"), "minzheng": ("CSRQ", "%Y年%m月%d日"),
               "weijian": ("CSRQ", "%Y%m%d"), "churujing": ("CSRQ", "%d/%m/%Y")}
    bad = 0
    for source, (col, fmt) in formats.items():
        values = read_source(world, source)[col]
        parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        bad += int(parsed.isna().sum())
        assert parsed.notna().mean() > 0.95, source
    assert bad >= 4


def test_format_dates_writes_impossible_dates_verbatim() -> None:
    y, m, d = np.array([1990, 2001]), np.array([2, 1]), np.array([30, 2])
    assert format_dates(y, m, d, "iso").tolist() == ["1990-02-30", "2001-01-02"]
    assert format_dates(y, m, d, "slash").tolist() == ["1990/2/30", "2001/1/2"]
    assert format_dates(y, m, d, "chinese").tolist() == ["1990年2月30日", "2001年1月2日"]
    assert format_dates(y, m, d, "compact").tolist() == ["19900230", "20010102"]
    assert format_dates(y, m, d, "dmy").tolist() == ["30/02/1990", "02/01/2001"]


def test_name_faults_against_the_register(world: Path) -> None:
    truth = pd.read_parquet(world / "truth" / "persons.parquet")
    key = truth.set_index(["source_system", "source_record_id"])["true_person_id"]
    ga = read_source(world, "gongan")
    ga = ga[ga["ZXBZ"] == 0].assign(true=key.loc["gongan"].loc[ga.loc[ga["ZXBZ"] == 0, "RKBH"]].to_numpy())
    sb = read_source(world, "shebao")
    sb["true"] = key.loc["shebao"].loc[sb["person_no"].astype(str)].to_numpy()
    both = sb.merge(ga, on="true")
    differ = both[both["full_name"] != both["XM"]]
    homophone = [a for a, b in zip(differ["full_name"], differ["XM"])
                 if len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
                 and any(HOMOPHONES.get(y) == x for x, y in zip(a, b))]
    assert homophone
    dotted = both[both["XM"].str.contains("·")]
    assert len(dotted) and not dotted["full_name"].str.contains("·").all()


def test_gongan_has_cancelled_duplicate_registrations(world: Path) -> None:
    ga = read_source(world, "gongan")
    truth = pd.read_parquet(world / "truth" / "persons.parquet").set_index("source_record_id")
    cancelled = ga[ga["ZXBZ"] == 1]
    assert len(cancelled)
    active = ga[ga["ZXBZ"] == 0].set_index("SFZHM")
    for _, row in cancelled.iterrows():
        twin = active.loc[row["SFZHM"]]
        assert twin["XM"] == row["XM"] and twin["ZHGXSJ"] > row["ZHGXSJ"]
        assert truth.loc[row["RKBH"], "true_person_id"] == truth.loc[twin["RKBH"], "true_person_id"]
    assert ga["SFZHM"][ga["ZXBZ"] == 0].is_unique


def test_empty_strings_beside_nulls(world: Path) -> None:
    phones = read_source(world, "shebao")["mobile"]
    assert phones.isna().any() and (phones == "").any()
    assert phones.dropna()[phones.dropna() != ""].str.fullmatch(r"1[3-9]\d{9}").all()


def test_date_conventions_per_department(world: Path) -> None:
    assert read_source(world, "gongan")["CSRQ"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert read_source(world, "shebao")["birthday"].str.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}").all()
    assert read_source(world, "weijian")["CSRQ"].str.fullmatch(r"\d{8}").all()
    assert read_source(world, "churujing")["CSRQ"].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    stamps = read_source(world, "gongan")["ZHGXSJ"]
    assert stamps.map(lambda v: datetime.strptime(v, "%Y-%m-%d %H:%M:%S").date() < AS_OF).all()


def test_too_small_world_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="persons must be at least 10"):
        generate(tmp_path / "tiny", 3, seed=1, as_of=AS_OF)
