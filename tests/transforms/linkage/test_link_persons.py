"""Every person-linkage rule on a few hand-made records."""
from __future__ import annotations

import numpy as np
import pytest

from govdata.transforms.linkage import LinkConfig, link_persons

from .people import SURVIVORSHIP, clusters, frame, make_id, rec

MOTHER = make_id("1985-07-20", "022")      # even sequence: female
CHILD = make_id("2015-03-01", "031")
TWIN_A = make_id("1990-01-01", "013")
TWIN_B = make_id("1990-01-01", "015")
ZW1 = make_id("1970-02-02", "051")
ZW2 = make_id("1988-09-09", "053")
ZM = make_id("1988-09-09", "064")         # female


def link(rows, **kw):
    kw.setdefault("previous_xref", None)
    kw.setdefault("decisions", None)
    return link_persons(frame(rows), survivorship=SURVIVORSHIP, run_id="r1", **kw)


def rule_of(result, source, rid):
    x = result.xref
    return x.loc[(x.source_system == source) & (x.source_record_id == rid), "match_rule"].item()


def test_same_valid_id_links_deterministically_with_golden_lineage():
    rows = [rec("gongan", "g1", MOTHER, "王芳", "wangfang", "2", "1985-07-20", "13900000001",
                updated="2020-01-01"),
            rec("shebao", "s1", MOTHER, "王芳", "wangfang", "2", "1985-07-20", "13900000002",
                updated="2024-01-01")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g1", "shebao:s1"})}
    assert list(r.xref.match_rule) == ["id", "id"]
    g = r.golden.iloc[0]
    assert (g["id_number"], g["name"], g["phone"], g["record_count"], g["source_count"]) == \
        (MOTHER, "王芳", "13900000002", 2, 2)
    assert '"phone": "shebao"' in g.lineage and '"name": "gongan"' in g.lineage
    assert r.golden.person_id.iloc[0].startswith("P") and len(r.golden.person_id.iloc[0]) == 13


def test_guardian_id_on_childs_record_links_to_the_child_not_the_guardian():
    rows = [rec("gongan", "g-mother", MOTHER, "王芳", "wangfang", "2", "1985-07-20"),
            rec("gongan", "g-child", CHILD, "李小明", "lixiaoming", "1", "2015-03-01"),
            rec("weijian", "w-child", MOTHER, "李小明", "lixiaoming", "1", "2015-03-01")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g-mother"}),
                                frozenset({"gongan:g-child", "weijian:w-child"})}
    assert rule_of(r, "weijian", "w-child") == "probabilistic"
    assert r.stats["conflicts"] == 1
    # the borrowed ID never becomes the child's golden ID
    child = r.golden[r.golden.name == "李小明"].iloc[0]
    assert child.id_number == CHILD


def test_name_pinyin_disagreeing_with_id_holder_goes_probabilistic():
    # same ID and birth date, but another name: a guardian's ID on a record without birth date
    rows = [rec("gongan", "g1", MOTHER, "王芳", "wangfang", "2", "1985-07-20"),
            rec("minzheng", "m1", MOTHER, "李四", "lisi", None, None)]
    r = link(rows)
    assert r.stats["conflicts"] == 1
    assert clusters(r.xref) == {frozenset({"gongan:g1"}), frozenset({"minzheng:m1"})}


def test_twins_sharing_birth_date_and_phone_stay_apart():
    rows = [rec("gongan", "ga", TWIN_A, "李明", "liming", "1", "1990-01-01", "13700000000"),
            rec("gongan", "gb", TWIN_B, "李亮", "liliang", "1", "1990-01-01", "13700000000"),
            rec("minzheng", "ma", None, "李明", "liming", "1", "1990-01-01", "13700000000"),
            rec("weijian", "wb", None, "李亮", "liliang", "1", "1990-01-01", "13700000000")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:ga", "minzheng:ma"}),
                                frozenset({"gongan:gb", "weijian:wb"})}


def test_namesakes_are_told_apart_by_birth_date():
    rows = [rec("gongan", "z1", ZW1, "张伟", "zhangwei", "1", "1970-02-02"),
            rec("gongan", "z2", ZW2, "张伟", "zhangwei", "1", "1988-09-09"),
            rec("shebao", "s2", None, "张伟", "zhangwei", "1", "1988-09-09", region="110105"),
            rec("weijian", "w9", None, "张伟", "zhangwei", "1", "1999-12-12")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:z1"}), frozenset({"gongan:z2", "shebao:s2"}),
                                frozenset({"weijian:w9"})}
    assert rule_of(r, "weijian", "w9") == "singleton"


def test_transposed_digits_link_through_damerau_levenshtein():
    typo = ZW1[:10] + ZW1[11] + ZW1[10] + ZW1[12:]
    assert typo != ZW1
    rows = [rec("gongan", "z1", ZW1, "张伟", "zhangwei", "1", "1970-02-02"),
            rec("shebao", "s1", typo, "张伟", "zhangwei", "1", None, status="invalid",
                note="bad_check_digit")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:z1", "shebao:s1"})}
    ev = r.evidence.iloc[0]
    assert ev.agree_id == 1.0 and ev.w_id > 9
    assert r.golden.id_number.item() == ZW1


def test_pinyin_only_record_links_and_a_weaker_one_goes_to_review():
    rows = [rec("gongan", "g1", MOTHER, "王芳", "wangfang", "2", "1985-07-20", "13900000001"),
            rec("churujing", "c1", None, None, "wangfang", "2", "1985-07-20", "13900000001"),
            rec("gongan", "g2", ZM, "赵敏", "zhaomin", "2", "1988-09-09"),
            # one day off: a slip, but without a phone too little evidence to link alone
            rec("churujing", "c2", None, None, "zhaomin", "2", "1988-09-10")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g1", "churujing:c1"}),
                                frozenset({"gongan:g2"}), frozenset({"churujing:c2"})}
    assert list(zip(r.review.left_source_record_id, r.review.right_source_record_id)) == \
        [("c2", "g2")]
    assert r.review.reason.item() == "uncertain"
    assert r.golden.loc[r.golden.name_pinyin == "wangfang", "name"].item() == "王芳"


def test_fifteen_digit_id_upgraded_by_the_normaliser_links_as_repaired():
    rows = [rec("gongan", "g1", ZW1, "张伟", "zhangwei", "1", "1970-02-02"),
            rec("minzheng", "m1", ZW1, "张伟", "zhangwei", "1", "1970-02-02", status="repaired",
                note="upgraded_15")]
    r = link(rows)
    assert list(r.xref.match_rule) == ["id", "repaired_id"]
    assert len(clusters(r.xref)) == 1


def test_two_valid_ids_never_merge_without_a_steward():
    rows = [rec("gongan", "a", TWIN_A, "李明", "liming", "1", "1990-01-01", "13700000000"),
            rec("gongan", "b", TWIN_B, "李明", "liming", "1", "1990-01-01", "13700000000"),
            rec("weijian", "w", None, "李明", "liming", "1", "1990-01-01", "13700000000")]
    r = link(rows)
    assert len(clusters(r.xref)) == 2
    assert r.stats["links_refused_cannot_link"] == 1
    assert r.review.reason.tolist() == ["conflict"]
    assert rule_of(r, "weijian", "w") == "probabilistic"


def test_bad_input_is_named():
    rows = [rec("gongan", "a", TWIN_A, "李明", "liming", "1", "1990-01-01"),
            rec("gongan", "a", TWIN_B, "李亮", "liliang", "1", "1990-01-01")]
    with pytest.raises(ValueError, match=r"duplicate record key \(gongan, a\)"):
        link(rows)
    bad = frame([rec("gongan", "a", TWIN_A, "李明", "liming", "1", "1990-01-01", status="ok")])
    with pytest.raises(ValueError, match="id_number_status has unknown value 'ok'"):
        link_persons(bad, previous_xref=None, decisions=None, survivorship=SURVIVORSHIP,
                     run_id="r")
    with pytest.raises(ValueError, match="no 'person' section"):
        link_persons(bad, previous_xref=None, decisions=None, survivorship={}, run_id="r")


def test_missing_optional_columns_and_thresholds_from_config():
    rows = frame([rec("gongan", "g1", MOTHER, "王芳", "wangfang", "2", "1985-07-20"),
                  rec("churujing", "c1", None, None, "wangfang", "2", "1985-07-21")])
    rows = rows.drop(columns=["updated_at", "name_latin", "address"])
    strict = link_persons(rows, previous_xref=None, decisions=None, survivorship=SURVIVORSHIP,
                          run_id="r", config=LinkConfig(match_threshold=100))
    loose = link_persons(rows, previous_xref=None, decisions=None, survivorship=SURVIVORSHIP,
                         run_id="r", config=LinkConfig(match_threshold=8))
    assert len(clusters(strict.xref)) == 2 and len(strict.review) == 1
    assert len(clusters(loose.xref)) == 1 and len(loose.review) == 0
    assert np.isclose(loose.xref.match_score.dropna().item(), loose.evidence.score.item())


def test_pinyin_spelling_variant_of_the_holder_stays_deterministic():
    uyghur = make_id("1970-12-28", "049", region="650104")
    rows = [rec("gongan", "g1", uyghur, "古丽娜尔·阿不都", "gulinaerabudou", "1", "1970-12-28",
                region="650104"),
            rec("churujing", "c1", uyghur, None, "gulinaerabudu", "1", "1970-12-28",
                region="650104")]
    r = link(rows)
    assert r.stats["conflicts"] == 0
    assert list(r.xref.match_rule) == ["id", "id"]


def test_a_link_without_id_evidence_never_adds_a_second_record_of_one_source():
    # two babies with the same name and birthday; each health record carries a parent's ID
    baby = make_id("2024-05-28", "071")
    rows = [rec("gongan", "g1", baby, "刘建", "liujian", "1", "2024-05-28"),
            rec("weijian", "w1", make_id("1998-12-28", "084"), "刘建", "liujian", "1",
                "2024-05-28"),
            rec("weijian", "w2", make_id("1997-07-04", "094"), "刘建", "liujian", "1",
                "2024-05-28")]
    r = link(rows)
    assert r.stats["conflicts"] == 2
    got = clusters(r.xref)
    assert len(got) == 2 and frozenset({"gongan:g1", "weijian:w1"}) in got
    assert r.review.reason.tolist() == ["conflict", "conflict"]
    assert r.review[["left_source_record_id", "right_source_record_id"]].values.tolist() == \
        [["w1", "w2"], ["w2", "g1"]]
    off = link(rows, config=LinkConfig(distinct_sources=False))
    assert len(clusters(off.xref)) == 1
