"""Shipped standards: code tables, elements, survivorship, loader behaviour."""
from __future__ import annotations


import pandas as pd
import pytest

from govdata.standards.build_region_table import DEFAULT_SOURCE, build_region_table
from govdata.standards.registry import (STANDARDS_ROOT, StandardsError, load_code_catalogue, load_row_rules,
                                read_code_table,
                                load_standards, load_survivorship, read_standards, survivorship_rule)


@pytest.fixture(scope="module")
def standards():
    return load_standards()


def test_region_table_counts_and_abolished_code(standards):
    region = standards.regions
    assert list(region.columns) == ["code", "name", "level", "status", "valid_from", "valid_to",
                                    "successors", "province", "prefecture", "successor_years"]
    assert len(region) == 6823
    current = region[region["status"] == "current"]
    assert len(current) == 3213
    assert (current["level"] == "county").sum() == 2846
    assert region["status"].value_counts().to_dict() == {"current": 3213, "abolished": 3237, "changed": 373}
    chongwen = region[region["code"] == "110103"].iloc[0].to_dict()
    assert chongwen == {"code": "110103", "name": "崇文区", "level": "county", "status": "abolished",
                        "valid_from": "1981", "valid_to": "2010", "successors": "110101",
                        "province": "北京市", "prefecture": "", "successor_years": "2010"}
    assert not current["code"].duplicated().any()


def test_region_csv_is_reproducible_from_the_history_in_the_repository(standards):
    rebuilt = build_region_table(DEFAULT_SOURCE)
    pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), standards.regions.reset_index(drop=True))


def test_build_region_table_translates_tiny_history(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text(
        "\ufeff代码,一级行政区,二级行政区,名称,级别,状态,启用时间,变更/弃用时间,新代码\n"
        "130124,河北省,石家庄市,栾城县,县级,弃用,1986,2014,130108[2001];130111\n"
        "120110,天津市,直辖,东郊区,县级,变更,1981,1992,120110\n", encoding="utf-8")
    table = build_region_table(history)
    assert table.to_dict("records") == [
        {"code": "130124", "name": "栾城县", "level": "county", "status": "abolished", "valid_from": "1986",
         "valid_to": "2014", "successors": "130108;130111", "province": "河北省", "prefecture": "石家庄市",
         "successor_years": "2001;2014"},
        {"code": "120110", "name": "东郊区", "level": "county", "status": "changed", "valid_from": "1981",
         "valid_to": "1992", "successors": "120110", "province": "天津市", "prefecture": "",
         "successor_years": "1992"}]


def test_build_region_table_rejects_malformed_successors(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("代码,一级行政区,二级行政区,名称,级别,状态,启用时间,变更/弃用时间,新代码\n"
                       "110103,北京市,直辖,崇文区,县级,弃用,1981,2010,110101(2010)\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"column 新代码: unexpected successor entries \['110101\(2010\)'\]"):
        build_region_table(history)


def test_build_region_table_names_unexpected_values(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("代码,一级行政区,二级行政区,名称,级别,状态,启用时间,变更/弃用时间,新代码\n"
                       "110000,北京市,,北京市,省级,停用,1981,,\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"column 状态: unexpected values \['停用'\]"):
        build_region_table(history)


def test_ethnicity_has_56_groups_with_letter_codes(standards):
    ethnicity = standards.code_table("ethnicity")
    groups = ethnicity[ethnicity["code"].str.fullmatch(r"0[1-9]|[1-4][0-9]|5[0-6]")]
    assert list(groups["code"]) == [f"{i:02d}" for i in range(1, 57)]
    assert groups["letter_code"].str.fullmatch(r"[A-Z]{2}").all()
    assert not groups["letter_code"].duplicated().any()
    by_code = ethnicity.set_index("code")
    assert by_code.loc["01"].tolist() == ["汉族", "HA"]
    assert by_code.loc["04"].tolist() == ["藏族", "ZA"]
    assert by_code.loc["15"].tolist() == ["土家族", "TJ"]
    assert by_code.loc["29"].tolist() == ["柯尔克孜族", "KG"]
    assert by_code.loc["56"].tolist() == ["基诺族", "JN"]
    assert by_code.loc["98"].tolist() == ["外国血统中国籍人士", ""]


def test_sex_codes_and_aliases(standards):
    sex = standards.code_table("sex")
    assert sex.to_dict("records") == [{"code": "0", "name": "未知的性别"}, {"code": "1", "name": "男"},
                                      {"code": "2", "name": "女"}, {"code": "9", "name": "未说明的性别"}]
    aliases = standards.code_table("sex_alias").set_index("alias")["code"]
    assert [aliases[a] for a in ["男", "女", "m", "f", "male", "female", "unknown", "未知", "1", "2"]] == \
        ["1", "2", "1", "2", "1", "2", "0", "0", "1", "2"]
    assert set(aliases) <= set(sex["code"])


def test_ethnicity_aliases(standards):
    aliases = standards.code_table("ethnicity_alias").set_index("alias")["code"]
    assert [aliases[a] for a in ["1", "01", "汉", "汉族", "ha", "han", "维族", "zang", "za", "土", "土家", "tj"]] == \
        ["01", "01", "01", "01", "01", "01", "05", "04", "04", "30", "15", "15"]
    assert set(aliases) <= set(standards.code_table("ethnicity")["code"])


def test_channel_codes_and_online_flag(standards):
    channel = standards.code_table("channel")
    assert list(channel["code"]) == ["window", "web", "mobile", "kiosk", "hotline"]
    assert list(channel["name"]) == ["窗口", "网上", "移动端", "自助终端", "热线"]
    assert set(channel.loc[channel["online"] == "true", "code"]) == {"web", "mobile", "kiosk"}


def test_industry_sections_and_divisions(standards):
    industry = standards.code_table("industry")
    assert list(industry.columns) == ["code", "name", "level", "section"]
    sections = industry[industry["level"] == "section"]
    divisions = industry[industry["level"] == "division"]
    assert list(sections["code"]) == list("ABCDEFGHIJKLMNOPQRST")
    assert list(divisions["code"]) == [f"{i:02d}" for i in range(1, 98)]
    by_code = industry.set_index("code")
    assert by_code.loc["C", "name"] == "制造业"
    assert by_code.loc["13", ["name", "section"]].tolist() == ["农副食品加工业", "C"]
    assert by_code.loc["65", ["name", "section"]].tolist() == ["软件和信息技术服务业", "I"]
    assert by_code.loc["97", "section"] == "T"
    aliases = standards.code_table("industry_alias").set_index("alias")["code"]
    assert (len(aliases), aliases["c13"], aliases["t97"]) == (97, "13", "97")


def test_small_catalogues(standards):
    items = standards.code_table("service_item")
    assert list(items["code"]) == [f"S{i:04d}" for i in range(1, 21)]
    assert items["legal_limit_days"].str.fullmatch(r"\d+").all()
    assert items.iloc[7].tolist() == ["S0008", "婚姻登记", "0", "民政局"]
    ids = standards.code_table("id_document_type").set_index("code")["name"]
    assert (ids["111"], ids["414"]) == ("居民身份证", "普通护照")
    certs = standards.code_table("certificate_type").set_index("name")
    assert certs.loc["营业执照", "holder_kind"] == "enterprise"
    assert {"居民身份证", "营业执照", "结婚证", "机动车驾驶证", "社会保障卡", "出生医学证明",
            "不动产权证书", "食品经营许可证", "道路运输经营许可证"} <= set(certs.index)


def test_code_tables_are_strings_and_catalogued(standards):
    catalogue = load_code_catalogue()
    assert sorted(standards.code_tables) == sorted(catalogue)
    for name, frame in standards.code_tables.items():
        assert all(frame[c].map(type).eq(str).all() for c in frame.columns), name
    assert "areacodes by yescallop, result.csv at commit eed219a, CC0 1.0" in catalogue["region"]["source"]


def test_elements_per_kind(standards):
    person, enterprise = standards.elements["person"], standards.elements["enterprise"]
    assert {"id_number", "name", "sex", "birth_date", "ethnicity", "phone", "address"} <= set(person)
    assert {"uscc", "org_code", "reg_no", "tax_no", "name", "legal_rep_name", "legal_rep_id_number",
            "founded_date", "address", "industry_code"} <= set(enterprise)
    assert {"application_no", "applicant_id_number", "applicant_uscc", "service_item_code", "channel",
            "region_code", "submitted_at", "accepted_at", "completed_at", "legal_limit_days", "rating",
            "certificate_no"} <= set(standards.elements["application"])
    assert {"certificate_no", "certificate_type", "holder_id_number", "holder_uscc", "issuer",
            "issue_date", "expiry_date", "status"} <= set(standards.elements["certificate"])
    for kind, elements in standards.elements.items():
        assert elements["updated_at"].type == "timestamp" and not elements["updated_at"].required, kind
    assert person["id_number"].required is False and person["id_number"].pii == "identifier"
    assert person["sex"].code_table == "sex" and person["phone"].pii == "contact"
    assert standards.element("application", "application_no").required is True
    assert standards.element("certificate", "certificate_no").required is True
    assert load_row_rules()["person"] == [["name", "name_pinyin"]]


def test_survivorship_shape():
    rules = load_survivorship()
    assert rules["person"]["trust_order"] == ["gongan", "shebao", "minzheng", "weijian", "churujing"]
    assert rules["enterprise"]["trust_order"] == ["shichang", "shuiwu"]
    assert (rules["person"]["default"], rules["person"]["tiebreak"]) == ("trust_order", "most_frequent")
    assert [survivorship_rule(rules, "person", e) for e in ["name", "phone", "address", "updated_at"]] == \
        ["trust_order", "most_recent", "most_recent", "trust_order"]


def test_load_standards_is_cached_per_resolved_folder():
    assert load_standards() is load_standards(STANDARDS_ROOT)
    assert load_standards(STANDARDS_ROOT / ".." / "standards") is load_standards()


def test_malformed_elements_name_file_and_key(tmp_path):
    (tmp_path / "codes").mkdir()
    (tmp_path / "elements.yaml").write_text(
        "person:\n  name: {zh: 姓名, en: name, standard: x, rule: y}\n", encoding="utf-8")
    with pytest.raises(StandardsError) as caught:
        read_standards(tmp_path)
    assert (caught.value.file, caught.value.key, caught.value.expected) == \
        (str(tmp_path / "elements.yaml"), "person.name.type", "a non-empty string")


def test_code_table_with_bom_keeps_its_header_and_leading_zeros(tmp_path):
    path = tmp_path / "ethnicity.csv"
    path.write_bytes("\ufeffcode,name,letter_code\n01,汉族,HA\n97,其他,\n".encode("utf-8"))
    table = read_code_table(path)
    assert table.to_dict("records") == [{"code": "01", "name": "汉族", "letter_code": "HA"},
                                        {"code": "97", "name": "其他", "letter_code": ""}]
