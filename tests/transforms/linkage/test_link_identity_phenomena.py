"""Person linkage on real departments' identity data: other documents, latin names, rare
characters, Excel-damaged ID numbers, family phones (issue 13)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from govdata.transforms.linkage import link_persons
from govdata.transforms.linkage.persons import shared_value_weights
from govdata.transforms.linkage.shared_values import persons_per_value

from .people import SURVIVORSHIP, clusters, frame, make_id, rec

W = {f: np.log2(m / u) for f, m, u in [("name", 0.90, 0.01), ("pinyin", 0.95, 0.02), ("birth", 0.97, 0.001),
                                       ("sex", 0.98, 0.50), ("phone", 0.60, 0.01), ("region", 0.80, 0.20),
                                       ("document", 0.95, 0.000001)]}


def link(rows):
    return link_persons(frame(rows), survivorship=SURVIVORSHIP, run_id="r1")


def pair_evidence(result, left, right):
    ev = result.evidence
    keys = set(zip(ev.left_source_record_id, ev.right_source_record_id))
    assert (left, right) in keys or (right, left) in keys, keys
    hit = ((ev.left_source_record_id == left) & (ev.right_source_record_id == right)) | \
          ((ev.left_source_record_id == right) & (ev.right_source_record_id == left))
    return ev[hit].iloc[0]


def foreigner(source, rid, latin, birth, doc=None, id_type="414", sex="1"):
    pinyin = "".join(ch for ch in latin.lower() if ch.isalpha())
    return rec(source, rid, None, None, pinyin, sex, birth, latin=latin, id_type=id_type if doc else None,
               doc=doc, region=None)


def test_same_document_type_and_number_links_a_reissued_passport_meets_by_latin_name():
    rows = [foreigner("churujing", "c1", "SMITH JOHN", "1980-01-01", doc="E12345678"),
            # same passport, the name mistyped: only the document brings them together
            foreigner("zhengwu", "z1", "JON SMITH", "1980-01-01", doc="E12345678"),
            # the same department filed the passport twice: the document lets the copy join
            foreigner("zhengwu", "z3", "SMITH JOHN", "1980-01-01", doc="E12345678"),
            # a new passport number: no evidence against, the latin name + birth date link
            foreigner("shebao", "s2", "John Smith", "1980-01-01", doc="G99999999"),
            # the same number on another document type is another document
            foreigner("gongan", "g9", "LI SI", "1990-02-02", doc="E12345678", id_type="516")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"churujing:c1", "zhengwu:z1", "zhengwu:z3", "shebao:s2"}),
                                frozenset({"gongan:g9"})}
    ev = pair_evidence(r, "c1", "z1")
    assert ev.agree_document == 1.0 and ev.w_document == pytest.approx(round(W["document"], 4))
    assert ev.score == pytest.approx(round(W["document"] + np.log2(0.05 / 0.98) + W["birth"] + W["sex"], 4),
                                     abs=1e-3)
    reissued = pair_evidence(r, "c1", "s2")
    assert np.isnan(reissued.agree_document) and reissued.w_document == 0.0
    assert reissued.agree_pinyin == 1.0


def test_latin_names_in_any_order_case_or_hyphenation_share_a_block():
    rows = [foreigner("churujing", "c1", "DUPONT, JEAN-PIERRE", "1975-05-05"),
            foreigner("shebao", "s1", "jean-pierre dupont", "1975-05-05"),
            foreigner("minzheng", "m1", "Jean Pierre DUPONT", "1975-05-05"),
            foreigner("weijian", "w1", "Jean Dupont", "1975-05-05")]   # another man
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"churujing:c1", "shebao:s1", "minzheng:m1"}),
                                frozenset({"weijian:w1"})}
    assert set(r.xref.match_rule) == {"probabilistic", "singleton"}


def test_rare_character_stand_ins_agree_weakly_and_still_meet_the_full_name():
    yan = make_id("1992-03-04", "017")
    ming = make_id("1975-06-07", "033")
    rows = [rec("gongan", "g1", yan, "王䶮", "wangyan", "1", "1992-03-04"),
            rec("minzheng", "m1", None, "王*", None, "1", "1992-03-04"),      # no reading: no pinyin
            rec("gongan", "g2", ming, "䶮明", "yanming", "1", "1975-06-07"),
            rec("shebao", "s1", None, "*明", None, "1", "1975-06-07"),        # the surname itself
            rec("weijian", "w1", None, "王*", None, "1", "1992-03-05")]       # another day: another man
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g1", "minzheng:m1"}), frozenset({"gongan:g2", "shebao:s1"}),
                                frozenset({"weijian:w1"})}
    for left, right in [("g1", "m1"), ("g2", "s1")]:
        ev = pair_evidence(r, left, right)
        assert ev.agree_name == 0.5 and ev.w_name == pytest.approx(round(0.5 * W["name"], 4))
        assert np.isnan(ev.agree_pinyin)
        assert ev.score == pytest.approx(0.5 * W["name"] + W["birth"] + W["sex"] + W["region"], abs=1e-3)


def test_excel_damaged_id_is_never_compared_the_record_links_by_its_other_elements():
    zw = make_id("1990-01-01", "011")
    near = make_id("1990-01-01", "001")   # within two edits of the damaged number
    damaged = zw[:15] + "000"
    rows = [rec("gongan", "g1", zw, "张伟", "zhangwei", "1", "1990-01-01"),
            rec("gongan", "g2", near, "李强", "liqiang", "1", "1990-01-01"),
            rec("weijian", "w1", damaged, "张伟", "zhangwei", "1", "1990-01-01", status="invalid",
                note="excel_truncated")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g1", "weijian:w1"}), frozenset({"gongan:g2"})}
    ev = pair_evidence(r, "g1", "w1")
    assert np.isnan(ev.agree_id) and ev.w_id == 0.0
    assert r.golden.loc[r.golden.name == "张伟", "id_number"].item() == zw
    assert r.stats["pairs_compared"] == 1   # the damaged number put w1 beside nobody


def test_phone_persons_counts_distinct_birth_date_and_sex_per_phone():
    table = pa.table({
        "phone": ["139", "139", "139", "139", "139", "138", None],
        "birth_date": pa.array([pd.Timestamp("1940-01-01").date(), pd.Timestamp("1965-02-02").date(),
                                pd.Timestamp("1990-03-03").date(), pd.Timestamp("1990-03-03").date(), None,
                                None, None], pa.date32()),
        "sex": ["2", "1", "1", "1", "1", None, None],
        "id_number": [None, None, None, None, None, make_id("1980-01-01", "015"), None],
        "id_number_status": ["missing"] * 5 + ["valid", "missing"]})
    # the 1990 man twice is one person; the undated record counts nobody; the 138 holder's
    # birth date comes from his ID number
    assert persons_per_value(table, "phone").tolist() == [3, 3, 3, 3, 3, 1, 1]


def test_shared_phone_weight_is_scaled_by_persons_and_never_turns_against():
    w = np.array([5.9, 5.9, -1.3, 5.9, 0.0])
    agree = np.array([1.0, 1.0, 0.0, 1.0, np.nan])
    persons = np.array([1.0, 4.0, 4.0, 1000.0, 2.0])
    assert shared_value_weights(w, agree, persons).tolist() == pytest.approx([5.9, 3.9, -1.3, 0.0, 0.0])


def test_a_family_phone_is_weak_evidence():
    family = [rec("gongan", "g1", make_id("1940-01-01", "024"), "王芳", "wangfang", "2", "1940-01-01",
                  phone="13900000009"),
              rec("gongan", "g2", make_id("1965-02-02", "013"), "李强", "liqiang", "1", "1965-02-02",
                  phone="13900000009"),
              rec("gongan", "g3", make_id("1990-03-03", "015"), "李明", "liming", "1", "1990-03-03",
                  phone="13900000009")]
    # a department with no ID column, no birth date: only pinyin, sex, region and the phone
    canlian = rec("canlian", "c1", None, None, "liming", "1", None, phone="13900000009")
    shared = link(family + [canlian])
    assert frozenset({"canlian:c1"}) in clusters(shared.xref)
    asked = shared.review[shared.review.right_source_record_id.isin(["c1", "g3"])
                          & shared.review.left_source_record_id.isin(["c1", "g3"])]
    assert asked.score.item() == pytest.approx(round(W["pinyin"] + W["phone"] - np.log2(3) + W["sex"]
                                                     + W["region"], 4))
    own = link(family[2:] + [canlian])   # the phone is his alone: the same evidence links
    assert clusters(own.xref) == {frozenset({"gongan:g3", "canlian:c1"})}
    assert own.xref.match_score.dropna().item() == pytest.approx(
        round(W["pinyin"] + W["phone"] + W["sex"] + W["region"], 4))


def test_a_truncated_id_whose_check_digit_happens_to_fit_is_no_key():
    real = make_id("1990-01-02", "813")
    truncated = real[:15] + "000"   # the check digit of ...800 is 0: it passes as valid
    assert truncated == make_id("1990-01-02", "800")
    rows = [rec("gongan", "g1", real, "张伟", "zhangwei", "1", "1990-01-02"),
            rec("weijian", "w1", real, "张伟", "zhangwei", "1", "1990-01-02"),
            rec("shebao", "s1", truncated, "张伟", "zhangwei", "1", "1990-01-02")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g1", "weijian:w1", "shebao:s1"})}
    assert dict(zip(r.xref.source_record_id, r.xref.match_rule)) == {"g1": "id", "w1": "id", "s1": "probabilistic"}
    # a number ending in 000 that two departments hold is the person's own
    own = link(rows[:1] + [rec("gongan", "g2", truncated, "李娜", "lina", "2", "1990-01-02"),
                           rec("shebao", "s2", truncated, "李娜", "lina", "2", "1990-01-02")])
    assert own.xref.match_rule.tolist() == ["singleton", "id", "id"] and len(clusters(own.xref)) == 2


def test_an_applicant_without_birth_date_or_phone_links_by_name_and_household_address():
    home = "浙江省杭州市上城区科技园路395号"
    held = make_id("1969-02-11", "041")
    rows = [rec("gongan", "g1", held, "林颖静", "linyingjing", "2", "1969-02-11", address=home),
            rec("gongan", "g2", make_id("1995-05-05", "013"), "王强", "wangqiang", "1", "1995-05-05",
                address=home),
            rec("zhengwu_sqr", "q1", None, "林颖静", "linyingjing", "2", None, address=home, id_type="414",
                doc="E85645071"),
            # a namesake elsewhere: name and sex alone never link
            rec("zhengwu_sqr", "q2", None, "林颖静", "linyingjing", "2", None, address="天津市和平区长江路323号")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"gongan:g1", "zhengwu_sqr:q1"}), frozenset({"gongan:g2"}),
                                frozenset({"zhengwu_sqr:q2"})}
    ev = pair_evidence(r, "g1", "q1")
    # two persons live there: u scaled by 2
    assert ev.w_address == pytest.approx(round(np.log2(0.6 / 0.001) - 1, 4))


def test_one_permit_links_a_latin_and_a_chinese_spelling_and_hyphens_may_be_joined():
    rows = [foreigner("churujing", "c1", "FEI PING CHEUNG", "1999-09-15", doc="M87284566", id_type="516", sex="2"),
            # the service hall typed the Chinese name and no birth date
            rec("zhengwu_sqr", "q1", None, "张飞萍", "zhangfeiping", "2", None, id_type="516", doc="M87284566"),
            foreigner("shebao", "s1", "LEE SEOYEON", "2006-10-03", sex="2"),
            foreigner("zhengwu_sqr", "q2", "SEO-YEON LEE", "2006-10-03", sex="2")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"churujing:c1", "zhengwu_sqr:q1"}),
                                frozenset({"shebao:s1", "zhengwu_sqr:q2"})}
    permit = pair_evidence(r, "c1", "q1")
    # CHEUNG is Cantonese for 张: a different romanisation is no evidence against
    assert np.isnan(permit.agree_pinyin) and permit.score == pytest.approx(W["document"] + W["sex"], abs=1e-3)
    assert pair_evidence(r, "s1", "q2").agree_pinyin == 1.0


def test_a_renewed_permit_keeps_its_holder_part_and_links():
    rows = [rec("churujing", "c1", None, "张飞萍", "zhangfeiping", "2", "1999-09-15", id_type="516", doc="H1234567801"),
            rec("zhengwu_sqr", "q1", None, "张飞萍", "zhangfeiping", "2", None, id_type="516", doc="H1234567802")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"churujing:c1", "zhengwu_sqr:q1"})}
    assert pair_evidence(r, "c1", "q1").agree_document == 1.0


def test_the_issuing_office_keeps_a_record_per_passport_and_both_join():
    rows = [foreigner("shebao", "s1", "MILLER, JOHN", "1963-05-30", doc="X1015992"),
            foreigner("churujing", "c1", "MILLER JOHN", "1963-05-30", doc="X1015992"),
            foreigner("churujing", "c2", "MILLER JOHN", "1963-05-30", doc="K0840012"),   # the renewed passport
            # two records of one office without documents stay a same-source question
            rec("weijian", "w1", None, "王芳", "wangfang", "2", "1985-07-20"),
            rec("weijian", "w2", None, "王芳", "wangfang", "2", "1985-07-20")]
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"shebao:s1", "churujing:c1", "churujing:c2"}),
                                frozenset({"weijian:w1"}), frozenset({"weijian:w2"})}


def test_a_record_without_birth_date_joins_the_partition_of_its_documents_holder():
    import datetime as dt

    from govdata.transforms.linkage.partition import partition_numbers

    table = pa.table({"id_number": [None, make_id("1990-01-01", "013"), None, None, None],
                      "birth_date": pa.array([dt.date(1983, 1, 1), None, None, None, None], pa.date32()),
                      "id_type": ["414", None, "414", None, None], "doc_number": ["E1", None, "E1", None, None],
                      "phone": [None, "139", None, "139", "138"], "address": [None] * 5})
    # the applicant with passport E1 goes where its 1983 holder goes, the phone's user to 1990;
    # nothing to share: partition 0
    assert partition_numbers(table, 16).tolist() == [1983 % 16, 1990 % 16, 1983 % 16, 1990 % 16, 0]


def test_a_latin_name_with_a_personal_phone_links_a_latin_name_alone_does_not():
    rows = [foreigner("shebao", "s1", "ANNA SMITH", "1992-09-08") | {"phone": "17209969846"},
            # the service hall: old permanent residence card, no birth date, the same phone
            foreigner("zhengwu_sqr", "q1", "SMITH, ANNA", None, sex="1") | {"phone": "17209969846"},
            foreigner("shebao", "s2", "EMILY DAVIS", "1967-03-08", sex="2"),
            foreigner("churujing", "c2", "DAVIS EMILY", "1993-05-10", sex="2"),
            foreigner("zhengwu_sqr", "q2", "EMILY DAVIS", None, sex="2")]   # which Emily Davis?
    r = link(rows)
    assert clusters(r.xref) == {frozenset({"shebao:s1", "zhengwu_sqr:q1"}), frozenset({"shebao:s2"}),
                                frozenset({"churujing:c2"}), frozenset({"zhengwu_sqr:q2"})}
    ev = pair_evidence(r, "s1", "q1")
    assert (ev.agree_latin, ev.agree_pinyin, ev.agree_phone) == (1.0, 1.0, 1.0)
