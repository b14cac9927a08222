"""Code tables, phone numbers, addresses and address regions (tiny inline tables with the
columns of standards/codes/*.csv)."""
from __future__ import annotations

import pandas as pd
import pytest

from govdata.transforms.codes import (address_region, normalise_address, normalise_code, normalise_ethnicity, normalise_industry,
                              normalise_phone, normalise_sex)

NA = pd.NA
SEX_ALIAS = pd.DataFrame({"alias": ["1", "2", "9", "0", "男", "女", "m", "f", "male", "未知"],
                          "code": ["1", "2", "9", "0", "1", "2", "1", "2", "1", "0"]})
ETHNICITY = pd.DataFrame({"code": ["01", "02", "97"], "name": ["汉族", "蒙古族", "其他"],
                          "letter_code": ["HA", "MG", ""]})
CHANNEL = pd.DataFrame({"code": ["window", "web"], "name": ["窗口", "网上"], "name_en": ["service window", "web portal"],
                        "online": ["false", "true"]})
REGION = pd.DataFrame({
    "code": ["110000", "110105", "110108", "110103", "330000", "330100", "330106", "210000", "211300", "211302"],
    "name": ["北京市", "朝阳区", "海淀区", "崇文区", "浙江省", "杭州市", "西湖区", "辽宁省", "朝阳市", "双塔区"],
    "level": ["province", "county", "county", "county", "province", "prefecture", "county", "province",
              "prefecture", "county"],
    "status": ["current"] * 3 + ["abolished"] + ["current"] * 6,
    "valid_from": ["1981"] * 10, "valid_to": ["", "", "", "2010"] + [""] * 6,
    "successors": ["", "", "", "110101"] + [""] * 6,
    "province": ["北京市"] * 4 + ["浙江省"] * 3 + ["辽宁省"] * 3,
    "prefecture": ["", "", "", "", "", "", "杭州市", "", "", "朝阳市"],
})


def test_sex_aliases():
    out = normalise_sex(pd.Series(["男", " F ", "MALE", "1", "９", "x", "", None]), SEX_ALIAS)
    assert out["value"].tolist() == ["1", "2", "1", "1", "9", NA, NA, NA]
    assert out["status"].tolist() == ["valid"] * 5 + ["invalid", "missing", "missing"]


def test_ethnicity_by_name_code_letter():
    out = normalise_ethnicity(pd.Series(["汉族", "汉", "1", "01", "ha", "蒙古", "MG", "其他", "99"]), ETHNICITY)
    assert out["value"].tolist() == ["01", "01", "01", "01", "01", "02", "02", "97", NA]
    assert out["note"].tolist()[-1] == "unknown_code"


def test_generic_code_by_code_or_name():
    out = normalise_code(pd.Series(["web", "WEB", "窗口", "kiosk"]), CHANNEL)
    assert out["value"].tolist() == ["web", "web", "window", NA]
    assert out["status"].tolist() == ["valid", "valid", "valid", "invalid"]
    with pytest.raises(KeyError, match="no column 'label'"):
        normalise_code(pd.Series(["web"]), CHANNEL, by=("code", "label"))


@pytest.mark.parametrize("raw, value, status, note", [
    ("13812345678", "13812345678", "valid", None),
    ("138-1234-5678", "13812345678", "valid", "separators"),
    ("+86 138 1234 5678", "13812345678", "valid", "separators;country_code"),
    ("008613812345678", "13812345678", "valid", "country_code"),
    ("１３８１２３４５６７８", "13812345678", "valid", "fullwidth"),
    ("010-12345678", "01012345678", "valid", "separators"),
    ("(0571)8765432", "05718765432", "valid", "separators"),
    ("+86 10 1234 5678", "01012345678", "valid", "separators;country_code"),
    ("87654321", None, "invalid", "no_area_code"),
    ("12345678901", None, "invalid", "bad_format"),
    ("", None, "missing", None),
])
def test_phone(raw, value, status, note):
    got = normalise_phone(pd.Series([raw])).iloc[0]
    assert (None if got["value"] is NA else got["value"]) == value
    assert got["status"] == status
    assert (None if got["note"] is NA else got["note"]) == note


def test_address_normalised_and_region_found():
    assert normalise_address(pd.Series(["北京市 海澱區 中关村 Tower  A", " "])).tolist() == ["北京市海淀区中关村Tower A", NA]
    addresses = pd.Series([
        "浙江省杭州市西湖区文三路1号", "浙江杭州西湖区", "杭州市西湖区", "北京市朝阳区", "北京市",
        "朝阳区某路",           # ambiguous without a province? 朝阳区 is unique here -> 110105
        "辽宁省朝阳市双塔区", "北京市崇文区",  # 崇文区 abolished: only the province is current
        "火星基地", None,
    ], index=range(20, 30))
    out = address_region(addresses, REGION)
    assert list(out.index) == list(range(20, 30))
    assert out.tolist() == ["330106", "330106", "330106", "110105", "110000", "110105",
                            "211302", "110000", NA, NA]


def test_industry_codes_roll_up_to_divisions():
    table = pd.DataFrame({"code": ["F", "51", "52", "I", "65"], "name": ["批发和零售业", "批发业", "零售业",
                          "信息传输、软件和信息技术服务业", "软件和信息技术服务业"],
                          "level": ["section", "division", "division", "section", "division"],
                          "section": ["F", "F", "F", "I", "I"]})
    out = normalise_industry(pd.Series(["F51", "f5123", "51", "F", "零售业", "I51", "Z99", ""]), table)
    assert out["value"].tolist() == ["51", "51", "51", "F", "52", NA, NA, NA]
    assert out["status"].tolist() == ["valid"] * 5 + ["invalid", "invalid", "missing"]


def test_mostly_distinct_columns_skip_dedup_and_keep_nulls():
    # 10,000 distinct phone numbers with NaN and None among them: computed without
    # factorising, nulls still come out missing, order and index kept.
    values = pd.Series([f"138{i:08d}" for i in range(10_000)], index=range(5, 10_005), dtype=object)
    values.iloc[3] = float("nan")
    values.iloc[4] = None
    out = normalise_phone(values)
    assert list(out.index[:2]) == [5, 6]
    assert out["status"].iloc[:6].tolist() == ["valid", "valid", "valid", "missing", "missing", "valid"]
    assert out["value"].iloc[5] == "13800000005"
    assert (out["status"] == "valid").sum() == 9_998


def test_id_document_type_by_code_name_and_alias():
    from govdata.standards.registry import load_standards
    from govdata.transforms.codes import normalise_id_document_type

    standards = load_standards()
    values = pd.Series(["111", "居民身份证", "身份证", "护照", "Passport", "414", "回乡证", "台胞证", "绿卡",
                        "外国人永久居留身份证", "港澳通行证", "驾驶证", "其他", " 身 份 证 ", "99", "", None])
    out = normalise_id_document_type(values, standards.code_table("id_document_type"),
                                     standards.code_tables["id_document_type_alias"])
    assert out["value"].tolist() == ["111", "111", "111", "414", "414", "414", "516", "511", "553", "553", "513",
                                     "335", "990", "111", NA, NA, NA]
    assert out["status"].tolist() == ["valid"] * 14 + ["invalid", "missing", "missing"]


def test_sex_labels_from_the_standard_alias_table():
    from govdata.standards.registry import load_standards

    table = load_standards().code_table("sex_alias")
    out = normalise_sex(pd.Series(["男性", "女性", "男", "Female", "未说明"]), table)
    assert out["value"].tolist() == ["1", "2", "1", "2", "9"]


@pytest.mark.parametrize("raw, value, note", [
    ("852-91234567", "+85291234567", "separators;international"),       # Hong Kong mobile, no +
    ("+852 9123 4567", "+85291234567", "separators;international"),
    ("0085291234567", "+85291234567", "international"),
    ("+1 (415) 555-2671", "+14155552671", "separators;international"),
    ("886912345678", "+886912345678", "international"),                  # Taiwan mobile, no +
    ("+8613812345678", "13812345678", "country_code"),                   # +86 stays domestic
    ("13812345678/13912345678", "13812345678", "several_numbers"),
    ("010-62345678,13812345678", "01062345678", "separators;several_numbers"),
])
def test_numbers_abroad_and_several_numbers_in_one_field(raw, value, note):
    out = normalise_phone(pd.Series([raw]))
    assert (out["value"].iloc[0], out["status"].iloc[0], out["note"].iloc[0]) == (value, "valid", note)
