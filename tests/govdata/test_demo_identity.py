"""The demo world's real-department identity data (issue 13): other documents, Latin names,
the service-hall applicant register, the disability register without IDs, legacy damage,
branches and individual businesses — each checked against the truth files."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stdnum.cn import ric, uscc

from govdata import demo_identity as ident
from govdata.demo_data import build_persons, iter_world
from tests.govdata.demo_world import AS_OF, generated_world, read_source, source_doc

PERSONS = 3000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_world(tmp_path_factory, "identity", PERSONS, seed=11)


def read_with_truth(world: Path, source: str) -> pd.DataFrame:
    """A department's table with each record's true person / enterprise and cause."""
    doc = source_doc(world, source)
    frame = read_source(world, source)
    truth = pd.read_parquet(world / "truth" / ("persons.parquet" if doc["kind"] == "person" else "enterprises.parquet"))
    truth = truth[truth["source_system"] == source].set_index("source_record_id")
    keys = frame[doc["primary_key"]].astype(str)
    true_col = "true_person_id" if doc["kind"] == "person" else "true_enterprise_id"
    return frame.assign(_true=truth.loc[keys, true_col].to_numpy(), _cause=truth.loc[keys, "cause"].to_numpy())


def gb11643_ok(number: str) -> bool:
    return len(number) == 18 and ric.calc_check_digit(number) == number[17]


def test_outsiders_share_and_documents() -> None:
    o = ident.build_outsiders(np.random.default_rng(1), 100_001, 100_000, AS_OF)
    kinds = pd.Series(o.kind).value_counts().to_dict()
    assert kinds == {ident.FOREIGNER: 1000, ident.HONG_KONG: 350, ident.TAIWAN: 300, ident.MACAU: 100}
    assert o.true_id[0] == "TP00100001" and len(set(o.true_id)) == len(o)
    foreign = o.kind == ident.FOREIGNER
    assert all(p is not None for p in o.passport[foreign]) and all(p is None for p in o.passport[~foreign])
    keys = pd.Series(o.key_id).dropna()
    assert keys.is_unique and keys.map(gb11643_ok).all()
    # 2023 permanent residence IDs: 9 + issuing province + 3-digit nationality + birth date
    new_cards = keys[foreign[keys.index]]
    numeric = {x[1] for x in ident.NATIONALITIES}
    assert new_cards.str.startswith("9").all() and new_cards.str[3:6].isin(numeric).all()
    births = pd.to_datetime(pd.Series(o.birth[new_cards.index], dtype="int64"), unit="D")
    assert (new_cards.str[6:14].to_numpy() == births.dt.strftime("%Y%m%d").to_numpy()).all()
    assert 0.1 < len(new_cards) / foreign.sum() < 0.25          # 25% resident, 65% of them the new card
    # residence permits: 810000 / 820000 / 830000 + birth date + serial + check digit
    permits = keys[~foreign[keys.index]]
    assert permits.str[:6].isin(["810000", "820000", "830000"]).all()
    expected = {ident.HONG_KONG: "810000", ident.MACAU: "820000", ident.TAIWAN: "830000"}
    assert (permits.str[:6].to_numpy() == [expected[k] for k in o.kind[permits.index]]).all()
    sex_digit = permits.str[16].astype(int) % 2
    assert ((sex_digit == 1) == (o.sex[permits.index] == 1)).all()
    old = pd.Series(o.old_card).dropna()
    assert old.str.fullmatch(r"[A-Z]{3}\d{12}").all() and len(old)
    travel = pd.Series(o.travel_permit).dropna()
    assert travel.str.fullmatch(r"[HM]\d{8}(\d{2})?|\d{8}").all() and len(travel) == (~foreign).sum()


def test_latin_names_vary_in_case_order_and_hyphens() -> None:
    given = np.array(["JEAN-PIERRE"] * 4000, dtype=object)
    surname = np.array(["DUPONT"] * 4000, dtype=object)
    names = set(ident.latin_variants(given, surname, np.random.default_rng(3)))
    for form in ("JEAN-PIERRE DUPONT", "DUPONT JEAN-PIERRE", "DUPONT, JEAN-PIERRE", "Jean Pierre Dupont",
                 "dupont jeanpierre", "Dupont, Jean-Pierre"):
        assert form in names
    keys = {" ".join(sorted(n.upper().replace(",", " ").replace("-", " ").split())) for n in names}
    assert keys <= {"DUPONT JEAN PIERRE", "DUPONT JEANPIERRE"}


def test_foreigners_are_found_in_several_departments_under_different_documents(world: Path) -> None:
    crj = read_with_truth(world, "churujing")
    sb = read_with_truth(world, "shebao")
    sqr = read_with_truth(world, "zhengwu_sqr")
    outsiders = crj[crj["ZJLX"] != "111"]
    assert set(outsiders["ZJLX"]) == {"414", "511", "516"}
    assert (outsiders["_cause"] == "other_document").all()
    assert outsiders["GJ"].isin(["HKG", "MAC", "TWN"]).any() and (~outsiders["GJ"].isin(["HKG", "MAC", "TWN"])).any()
    # the same person: a passport in exit-entry, the permanent residence ID elsewhere
    resident = pd.concat([sb[["id_card", "_true"]].rename(columns={"id_card": "number"}),
                          sqr[["ZJHM", "_true"]].rename(columns={"ZJHM": "number"})])
    resident = resident[resident["number"].fillna("").str.fullmatch(r"9\d{16}[\dX]")]
    both = outsiders.merge(resident, on="_true")
    assert len(both) and (both["SFZH"] != both["number"]).all()
    # a foreigner's Latin name is written differently in different records
    foreign = sb[sb["full_name"].fillna("").str.fullmatch(r"[A-Za-z ,\-]+")]
    pairs = outsiders.merge(foreign, on="_true")
    assert len(pairs) and (pairs["YWXM"] != pairs["full_name"]).any()
    # a renewed document: the same person under two document numbers in exit-entry
    twice = outsiders.groupby("_true")["SFZH"].nunique()
    assert (twice == 2).any() and twice.max() == 2
    # citizens keep their ID card; their type is written as code, label or nothing
    assert {"居民身份证", "身份证", "111"} <= set(sb["cert_type"].dropna()) and sb["cert_type"].isna().any()


def test_document_type_labels_resolve_in_the_code_tables(world: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "standards" / "codes"
    codes = pd.read_csv(root / "id_document_type.csv", dtype=str)
    aliases = pd.read_csv(root / "id_document_type_alias.csv", dtype=str)
    known = set(codes["code"]) | set(codes["name"]) | set(aliases["alias"].str.lower())
    sqr = read_with_truth(world, "zhengwu_sqr")
    labels = set(sqr["ZJLX"].dropna())
    # codes, Chinese labels and aliases side by side, for citizens' and outsiders' documents
    assert {"111", "身份证", "sfz", "414"} <= labels
    assert labels & {"护照", "普通护照", "passport", "因私护照"} and labels & {"511", "516", "553", "台胞证", "回乡证",
                                                                      "永居证", "港澳居民来往内地通行证"}
    # the HK/MO/TW residence permit has no GA/T 2000.156 code: written out or filed as 'other'
    assert {label for label in labels if label not in known and label.lower() not in known} <= {"港澳台居民居住证"}
    # a passport's number is no citizen ID; a driving licence or household register carries it
    passport = sqr[sqr["ZJLX"].isin(["414", "护照", "普通护照", "passport", "因私护照"])]
    assert (~passport["ZJHM"].map(gb11643_ok)).all()
    citizen_passport = passport[passport["ZJHM"].str.fullmatch(r"E\d{8}")]
    assert len(citizen_passport) and (citizen_passport["_cause"] == "other_document").all()
    carried = sqr[sqr["ZJLX"].isin(["335", "驾驶证", "113", "户口簿"])]
    assert len(carried) and carried["ZJHM"].str.fullmatch(r"\d{17}[\dXx]").mean() > 0.9


def test_disability_register_has_no_id_and_its_own_number(world: Path) -> None:
    cl = read_with_truth(world, "canlian")
    doc = source_doc(world, "canlian")
    assert "id_number" not in doc["columns"].values() and "incremental" not in doc
    ga = read_with_truth(world, "gongan")
    ids = set(ga["SFZHM"])
    assert not any(number[i:i + 18] in ids for number in cl["CJRBH"] for i in range(len(number) - 17))
    assert set(cl["XB"]) == {"男性", "女性"}
    assert {"no_identifier", "shared_phone"} <= set(cl["_cause"]) <= {"no_identifier", "shared_phone",
                                                                       "rare_character", "mojibake"}
    # birth dates: dotted, ISO or an Excel serial number — each the register's date
    truth_birth = ga[ga["ZXBZ"] == 0].set_index("_true")["CSRQ"]
    birth = truth_birth.reindex(cl["_true"]).to_numpy()
    dotted = cl["CSRQ"].str.fullmatch(r"\d{4}\.\d{2}\.\d{2}")
    serial = cl["CSRQ"].str.fullmatch(r"\d{5}")
    iso = cl["CSRQ"].str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    assert dotted.any() and serial.any() and iso.any() and (dotted | serial | iso).all()
    known = pd.notna(birth)
    assert (cl.loc[dotted & known, "CSRQ"].str.replace(".", "-") == birth[dotted & known]).all()
    from_serial = [(date(1899, 12, 30) + timedelta(days=int(v))).isoformat() for v in cl.loc[serial & known, "CSRQ"]]
    assert from_serial == list(birth[serial & known])


def test_family_members_share_phones_in_the_disability_register(world: Path) -> None:
    cl = read_with_truth(world, "canlian")
    ga = read_with_truth(world, "gongan")
    phone_of = ga[ga["ZXBZ"] == 0].set_index("_true")["LXDH"]
    shared = cl[cl["_cause"] == "shared_phone"]
    assert len(shared) >= 5
    own = phone_of.reindex(shared["_true"]).to_numpy()
    given = shared["LXDH"].to_numpy()
    present = pd.notna(given) & (given != "") & pd.notna(own) & (own != "")
    assert present.any() and (given[present] != own[present]).all()   # a relative's, not their own


def test_family_phones_are_a_parents_or_a_childs() -> None:
    p = build_persons(np.random.default_rng(4), 5000, AS_OF)
    idx = np.arange(len(p))
    phone, shared = ident.family_phones(p, idx, np.random.default_rng(1), AS_OF)
    age = (ident.day_number(AS_OF) - p.birth) / 365.25
    rows = np.flatnonzero(shared)
    assert (age[rows] < 18).any() and (age[rows] >= 70).any() and not ((age[rows] >= 18) & (age[rows] < 70)).any()
    for i in rows:
        relatives = {p.phone[p.parent[i]]} if age[i] < 18 else {p.phone[c] for c in np.flatnonzero(p.parent == i)}
        assert phone[i] in relatives and phone[i] is not None
    assert (phone[~shared] == p.phone[~shared]).all()


def test_rare_characters_are_real_in_the_register_and_stand_ins_elsewhere(world: Path) -> None:
    ga = read_with_truth(world, "gongan")
    rare = ga[ga["XM"].str.contains("[" + "".join(set(ident.RARE_FOR.values())) + "]")]
    assert len(rare) >= 10
    with pytest.raises(UnicodeEncodeError):
        "".join(rare["XM"]).encode("gb2312")
    true_name = rare.set_index("_true")["XM"]
    written = pd.concat([read_with_truth(world, s)[["_true", "_cause", col]].rename(columns={col: "name"})
                         for s, col in (("shebao", "full_name"), ("minzheng", "XINGMING"), ("weijian", "HZXM"),
                                        ("zhengwu_sqr", "SQRXM"), ("canlian", "XM"))])
    stand_ins = written[written["_cause"] == "rare_character"]
    registered = ga.set_index("_true")["XM"]
    in_register = stand_ins[stand_ins["_true"].isin(registered.index)]
    assert len(in_register) and in_register["_true"].isin(true_name.index).all()
    names = stand_ins["name"]
    assert names.str.contains(r"\*").any() and names.str.contains(r"\?").any()
    assert names.str.contains("[a-z]").any() and names.str.contains("[A-Z]").any()
    # a homophone: all Chinese, as long as the true name, without the rare character
    homophone = [n for n, t in zip(in_register["name"], in_register["_true"])
                 if len(n) == len(true_name[t]) and not any(c in "*?" or c.isascii() for c in n)]
    assert homophone and all(not set(n) & set(ident.RARE_FOR.values()) for n in homophone)


def test_mojibake_decodes_back_to_the_register(world: Path) -> None:
    mz = read_with_truth(world, "minzheng")
    garbled = mz[mz["_cause"] == "mojibake"]
    assert len(garbled) >= 5
    ga = read_with_truth(world, "gongan")
    register = ga[ga["ZXBZ"] == 0].set_index("_true")["XM"]
    fixed = 0
    for name in garbled["XINGMING"]:
        if any("\u4e00" <= c <= "\u9fff" for c in name):
            continue   # this record's address was garbled instead
        raw = bytes(ord(c) if ord(c) < 256 else ord(c.encode("cp1252")) for c in name)
        assert any("\u4e00" <= c <= "\u9fff" for c in raw.decode("gbk"))
        fixed += 1
    assert fixed
    # a Latin-1 reading is undone exactly: the clerk's name (traditional or slipped) of the person
    latin1 = [n for n in garbled["XINGMING"] if all(ord(c) < 256 for c in n) and not n.isascii()]
    assert latin1
    for name in latin1:
        decoded = name.encode("latin-1").decode("gbk")
        true = garbled.set_index("XINGMING").loc[[name], "_true"].iloc[0]
        assert true not in register.index or len(decoded) == len(register[true])


def test_excel_damaged_id_numbers(world: Path) -> None:
    sb = read_with_truth(world, "shebao")
    damaged = sb[sb["_cause"] == "excel_damage"]
    assert len(damaged) >= 5
    ids = damaged["id_card"]
    scientific = ids.str.fullmatch(r"\d(\.\d+)?E\+17")
    truncated = ids.str.fullmatch(r"\d{15}000")
    assert scientific.any() and truncated.any() and (scientific | truncated).all()
    assert not ids[truncated].map(gb11643_ok).all()


def test_branches_and_individual_businesses(world: Path) -> None:
    sc = read_with_truth(world, "shichang")
    branches = sc[sc["_cause"] == "branch"]
    shops = sc[sc["_cause"] == "individual_business"]
    assert len(branches) == round(PERSONS // 10 * ident.BRANCH_SHARE)
    assert len(shops) == round(PERSONS // 10 * ident.INDIVIDUAL_SHARE)
    assert sc["TYSHXYDM"].is_unique and sc["TYSHXYDM"].map(uscc.is_valid).all()
    heads = set(sc.loc[sc["_cause"].isna(), "QYMC"])
    assert all(name.endswith("分公司") and any(name.startswith(h) for h in heads) for name in branches["QYMC"])
    assert branches["TYSHXYDM"].str.startswith("91").all() and shops["TYSHXYDM"].str.startswith("92").all()
    # the operator is the legal representative, with the operator's own citizen ID
    ga = read_with_truth(world, "gongan")
    register = ga[ga["ZXBZ"] == 0].set_index("SFZHM")["XM"]
    clean = shops[shops["FDDBRZJHM"].isin(register.index)]
    assert len(clean) and (register.loc[clean["FDDBRZJHM"]].to_numpy() == clean["FDDBR"].to_numpy()).all()


def test_tax_records_without_any_code(world: Path) -> None:
    sw = read_with_truth(world, "shuiwu")
    no_code = sw[sw["_cause"] == "no_code"]
    assert len(no_code) >= 3
    assert no_code["SHXYDM"].isna().all() and no_code["YNSRSBH"].isna().all()
    assert no_code["NSRMC"].notna().all()


def test_new_phenomena_leave_the_base_departments_rows_alone() -> None:
    """Each phenomenon has its own stream: the authoritative register changes only where a
    person's true name holds a rare character."""
    tables = {t.source: t for t in iter_world(800, 5, AS_OF)}
    p = build_persons(np.random.default_rng([5, 0]), 800, AS_OF)
    ga = tables["gongan"]
    names = ga.columns["XM"]
    index = pd.Series(ga.truth["true_person_id"]).str[2:].astype(int).to_numpy() - 1
    changed = names != p.name[index]
    assert changed.any()
    assert all(any(c in ident.HOMOPHONE_OF for c in n) for n in names[changed])
    assert (ga.columns["SFZHM"] == p.id18[index]).all()
