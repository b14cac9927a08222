"""Enterprise linkage: USCC, the old identifiers it replaced, name + legal representative."""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from stdnum.cn import uscc as uscc_std

from govdata.transforms.linkage import link_enterprises
from govdata.transforms.linkage.common import hash_id

from .people import SURVIVORSHIP, clusters

ORG1, ORG2 = "MA01ABCD1", "MA02EFGH2"
U1 = "91110105" + ORG1 + uscc_std.calc_check_digit("91110105" + ORG1)
U2 = "91110108" + ORG2 + uscc_std.calc_check_digit("91110108" + ORG2)
REG1 = "110105000123456"


def ent(source, rid, uscc=None, org=None, tax=None, reg=None, core=None, rep=None,
        status=None, address=None, updated=None):
    return {"source_system": source, "source_record_id": rid, "uscc": uscc,
            "uscc_status": status or ("valid" if uscc else "missing"), "org_code": org,
            "reg_no": reg, "tax_no": tax, "name": f"北京{core}有限公司" if core else None,
            "name_core": core, "name_region": "北京" if core else None, "legal_rep_name": rep,
            "founded_date": None, "address": address, "industry_code": None,
            "region_code": "110105", "updated_at": pd.Timestamp(updated) if updated else pd.NaT}


def world():
    return [ent("shichang", "s1", U1, ORG1, reg=REG1, core="甲科技", rep="张三", address="旧址",
                updated="2020-01-01") | {"founded_date": dt.date(2003, 4, 5)},
            ent("shuiwu", "t1", tax="110105" + ORG1, core="甲科技", rep="张三", address="新址",
                updated="2024-01-01"),
            ent("zhengwu", "z1", org=ORG1),
            ent("zhengwu", "z2", reg=REG1),
            ent("zhengwu", "z3", core="甲科技", rep="张三"),
            ent("zhengwu", "z4", U1[:-1] + "0", org=ORG1, status="invalid"),
            ent("shichang", "s2", U2, ORG2, core="乙贸易", rep="李四"),
            ent("zhengwu", "z5", core="乙贸易", rep="王五"),
            ent("zhengwu", "z6", tax="320102" + "MA09ZZZZ9"),
            ent("shuiwu", "t6", tax="320102" + "MA09ZZZZ9")]


def run(rows, **kw):
    kw.setdefault("previous_xref", None)
    kw.setdefault("decisions", None)
    return link_enterprises(pd.DataFrame(rows), survivorship=SURVIVORSHIP, run_id="r1", **kw)


def test_every_identifier_rule_and_the_name_rule():
    r = run(world())
    assert clusters(r.xref, "enterprise_id") == {
        frozenset({"shichang:s1", "shuiwu:t1", "zhengwu:z1", "zhengwu:z2", "zhengwu:z3",
                   "zhengwu:z4"}),
        frozenset({"shichang:s2"}), frozenset({"zhengwu:z5"}),
        frozenset({"zhengwu:z6", "shuiwu:t6"})}
    rules = dict(zip(r.xref.source_record_id, r.xref.match_rule))
    assert rules == {"s1": "uscc", "t1": "tax_no", "z1": "org_code", "z2": "reg_no",
                     "z3": "name", "z4": "org_code", "s2": "singleton", "z5": "singleton",
                     "z6": "tax_no", "t6": "tax_no"}
    ids = dict(zip(r.xref.source_record_id, r.xref.enterprise_id))
    assert ids["s1"] == hash_id("E", "shichang\x1fs1")
    g = r.golden.set_index("enterprise_id").loc[ids["s1"]]
    assert (g["uscc"], g["org_code"], g["name_core"], g["address"], g["record_count"]) == \
        (U1, ORG1, "甲科技", "新址", 6)
    assert '"address": "shuiwu"' in g["lineage"]
    assert g["founded_date"] == dt.date(2003, 4, 5)
    # the org code inside the old tax number reaches the golden record
    assert r.golden.set_index("enterprise_id").loc[ids["z6"], "org_code"] == "MA09ZZZZ9"


def test_steward_decisions_force_and_forbid():
    decisions = pd.DataFrame([
        {"left_source_system": "zhengwu", "left_source_record_id": "z5",
         "right_source_system": "shichang", "right_source_record_id": "s2", "decision": "match",
         "decided_by": "s", "decided_at": pd.Timestamp("2026-01-01")},
        {"left_source_system": "zhengwu", "left_source_record_id": "z2",
         "right_source_system": "shichang", "right_source_record_id": "s1",
         "decision": "non_match", "decided_by": "s", "decided_at": pd.Timestamp("2026-01-01")}])
    r = run(world(), decisions=decisions)
    got = clusters(r.xref, "enterprise_id")
    assert frozenset({"shichang:s2", "zhengwu:z5"}) in got
    assert frozenset({"zhengwu:z2"}) in got
    rules = dict(zip(r.xref.source_record_id, r.xref.match_rule))
    assert rules["z5"] == rules["s2"] == "steward"


def test_two_usccs_are_never_merged_by_a_shared_old_identifier():
    rows = [ent("shichang", "a", U1, reg=REG1), ent("shichang", "b", U2, reg=REG1),
            ent("zhengwu", "c", reg=REG1)]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {frozenset({"shichang:a"}),
                                                  frozenset({"shichang:b"}),
                                                  frozenset({"zhengwu:c"})}


def test_enterprise_ids_are_stable_across_runs():
    first = run(world())
    rows = world()[:-1] + [ent("shuiwu", "t9", tax="110108" + ORG2)]
    second = run(rows, previous_xref=first.xref)
    a = dict(zip(first.xref.source_record_id, first.xref.enterprise_id))
    b = dict(zip(second.xref.source_record_id, second.xref.enterprise_id))
    assert b["s1"] == a["s1"] and b["s2"] == b["t9"] == a["s2"] and b["z6"] == a["z6"]


def test_duplicate_enterprise_key_is_named():
    with pytest.raises(ValueError, match=r"enterprise records: duplicate record key \(zhengwu, z1\)"):
        run(world() + [ent("zhengwu", "z1")])


def uscc_of(prefix: str, region: str, org: str) -> str:
    body = prefix + region + org
    return body + uscc_std.calc_check_digit(body)


def shop(source, rid, uscc=None, core=None, rep=None, region="110101", branch_of=None):
    row = ent(source, rid, uscc, core=core, rep=rep)
    return row | {"region_code": region, "name": f"{branch_of or ''}{core}"}


def test_a_branch_with_its_own_uscc_stays_apart_from_its_head_office():
    head = uscc_of("91", "110105", "MA05HEAD5")
    branch = uscc_of("91", "110108", "MA08BRCH8")
    rows = [shop("shichang", "head", head, core="华信科技", rep="张三", region="110105"),
            # name = head office + place + 分公司, its own USCC and person in charge
            shop("shichang", "branch", branch, core="华信科技有限公司海淀分", rep="李四", region="110108"),
            shop("shuiwu", "t-branch", core="华信科技有限公司海淀分", rep="李四", region="110108"),
            shop("shuiwu", "t-head", core="华信科技", rep="张三", region="110105")]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {frozenset({"shichang:head", "shuiwu:t-head"}),
                                                  frozenset({"shichang:branch", "shuiwu:t-branch"})}


def test_an_individual_business_links_by_name_operator_and_county_never_across_counties():
    dongcheng = uscc_of("92", "110101", "424230766")
    lixia = uscc_of("92", "370102", "333602691")
    rows = [shop("shichang", "s1", dongcheng, core="徐记五金店", rep="徐嘉子", region="110101"),
            shop("shichang", "s2", lixia, core="徐记五金店", rep="徐嘉子", region="370102"),
            shop("shuiwu", "t1", core="徐记五金店", rep="徐嘉子", region="110101"),
            shop("shuiwu", "t2", core="徐记五金店", rep="徐嘉子", region="370102"),
            # the same shop name and operator in a third county with no coded record: alone
            shop("shuiwu", "t3", core="徐记五金店", rep="徐嘉子", region="320106"),
            shop("shuiwu", "t4", core="徐记五金店", rep="徐嘉子", region="510104"),
            # no county: the name and operator point at two shops, so it links to neither
            shop("shuiwu", "t5", core="徐记五金店", rep="徐嘉子", region=None)]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {
        frozenset({"shichang:s1", "shuiwu:t1"}), frozenset({"shichang:s2", "shuiwu:t2"}),
        frozenset({"shuiwu:t3"}), frozenset({"shuiwu:t4"}), frozenset({"shuiwu:t5"})}
    assert dict(zip(r.xref.source_record_id, r.xref.match_rule))["t1"] == "name"


def test_a_record_without_county_links_when_exactly_one_enterprise_has_its_name_and_representative():
    rows = [shop("shichang", "s1", uscc_of("92", "110101", "424230766"), core="刘记服装店", rep="刘娜娟"),
            shop("shuiwu", "t1", core="刘记服装店", rep="刘娜娟", region=None),
            # an abolished county (崇文区) resolves to its province only
            shop("shichang", "s2", uscc_of("92", "110103", "545173833"), core="杨记便利店", rep="杨龙",
                 region="110103"),
            shop("shuiwu", "t2", core="杨记便利店", rep="杨龙", region="110000")]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {frozenset({"shichang:s1", "shuiwu:t1"}),
                                                  frozenset({"shichang:s2", "shuiwu:t2"})}


def test_an_individual_business_filed_under_its_operators_name_or_another_prefix_links():
    chen = uscc_of("92", "110101", "934345387")
    yang = uscc_of("92", "110103", "545173833")
    rows = [shop("shichang", "s1", chen, core="陈记便利店", rep="陈俊轩") | {"address": "北京市东城区中山路132号"},
            # the tax office files the shop under its operator's name, at another address
            shop("shuiwu", "t1", core="陈俊轩", rep="陈俊轩") | {"address": "北京市东城区中山路132-1号"},
            # an abolished district kept in one name (崇文区杨记便利店): the same operator at the same address
            shop("shichang", "s2", yang, core="崇文区杨记便利店", rep="杨龙", region="110103")
            | {"address": "北京市崇文区府前街138号"},
            shop("shuiwu", "t2", core="杨记便利店", rep="杨龙", region="110000") | {"address": "北京市崇文区府前街138号"},
            # a person's name with no individual business of theirs in the county: alone
            shop("shuiwu", "t3", core="王芳", rep="王芳")]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {frozenset({"shichang:s1", "shuiwu:t1"}),
                                                  frozenset({"shichang:s2", "shuiwu:t2"}), frozenset({"shuiwu:t3"})}


def test_an_enterprise_without_code_lands_in_the_partition_of_its_coded_namesake():
    import pyarrow as pa

    from govdata.transforms.linkage.partition import partition_numbers

    coded = shop("shichang", "s1", uscc_of("92", "110101", "934345387"), core="陈记便利店", rep="陈俊轩") \
        | {"address": "北京市东城区中山路132号"}
    rows = [coded, shop("shuiwu", "t1", core="陈记便利店", rep="陈俊轩"),
            shop("shuiwu", "t2", core="陈俊轩", rep="陈俊轩") | {"address": "北京市东城区中山路132号"},
            shop("shuiwu", "t3", core="王记小吃", rep="王芳")]
    parts = partition_numbers(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), 64).tolist()
    assert parts[0] == parts[1] == parts[2] != parts[3]


def test_a_name_match_contradicted_by_founded_date_and_address_is_asked_not_linked():
    """Two shops of two operators both called 李伟 in one county: the name alone links them;
    a founded date and an address that both disagree stop it. One disagreement alone (a move,
    a mistyped date) does not."""
    li = uscc_of("92", "110101", "420124536")

    def dated(row, founded, address):
        return row | {"founded_date": founded, "address": address}

    rows = [dated(shop("shuiwu", "s1", li, core="李伟", rep="李伟"), dt.date(2003, 9, 1), "东城区丽泽路315号"),
            dated(shop("shuiwu", "other", core="李伟", rep="李伟"), dt.date(2022, 5, 29), "东城区银河街300号"),
            dated(shop("shuiwu", "moved", core="李伟", rep="李伟"), dt.date(2003, 9, 1), "东城区新街1号"),
            dated(shop("shuiwu", "typo", core="李伟", rep="李伟"), dt.date(2003, 9, 2), "东城区丽泽路315号"),
            dated(shop("shuiwu", "unknown", core="李伟", rep="李伟"), None, "东城区银河街300号")]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {
        frozenset({"shuiwu:s1", "shuiwu:moved", "shuiwu:typo", "shuiwu:unknown"}), frozenset({"shuiwu:other"})}
    asked = r.review[["left_source_record_id", "right_source_record_id", "reason"]].values.tolist()
    assert asked == [["other", "s1", "conflict"]]
    assert json.loads(r.review["evidence"].iloc[0]) == {"name_core": 1, "legal_rep_name": 1, "founded_date": 0,
                                                        "address": 0}


def test_bare_namesakes_contradicting_each_other_stay_apart():
    rows = [shop("shuiwu", "t1", core="王记小吃", rep="王芳") | {"founded_date": dt.date(2010, 1, 1), "address": "甲路1号"},
            shop("zhengwu", "z1", core="王记小吃", rep="王芳") | {"founded_date": dt.date(2010, 1, 1), "address": "乙路2号"},
            shop("zhengwu", "z2", core="王记小吃", rep="王芳") | {"founded_date": dt.date(2019, 6, 1), "address": "丙路3号"}]
    r = run(rows)
    assert clusters(r.xref, "enterprise_id") == {frozenset({"shuiwu:t1", "zhengwu:z1"}), frozenset({"zhengwu:z2"})}
    assert r.review["reason"].tolist() == ["conflict"]


def test_a_record_takes_the_partition_of_its_own_countys_namesake_first():
    import pyarrow as pa

    from govdata.transforms.linkage.partition import partition_numbers

    # the same shop and operator name in two counties, each with its coded shop: the record
    # without code in the second county lands beside that county's shop
    rows = [shop("shichang", "s1", uscc_of("92", "110101", "934345387"), core="张记小吃店", rep="张晨"),
            shop("shichang", "s2", uscc_of("92", "610113", "974533518"), core="张记小吃店", rep="张晨",
                 region="610113"),
            shop("shuiwu", "t2", core="张记小吃店", rep="张晨", region="610113")]
    for n in (7, 16, 64):
        parts = partition_numbers(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), n).tolist()
        assert parts[2] == parts[1]
    assert clusters(run(rows).xref, "enterprise_id") == {frozenset({"shichang:s1"}),
                                                          frozenset({"shichang:s2", "shuiwu:t2"})}
