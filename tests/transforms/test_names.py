"""Person and enterprise name normalisation."""
from __future__ import annotations

import pandas as pd
import pytest

from transforms.names import normalise_enterprise_names, normalise_person_names, to_simplified

NA = pd.NA


def person(raw) -> tuple:
    row = normalise_person_names(pd.Series([raw], dtype=object)).iloc[0]
    return tuple(None if v is NA else v for v in row)


@pytest.mark.parametrize("raw, expected", [
    ("张三", ("张三", None, "zhangsan")),
    ("张 三", ("张三", None, "zhangsan")),
    ("张\u3000三 ", ("张三", None, "zhangsan")),
    ("張三", ("张三", None, "zhangsan")),                       # traditional -> simplified
    ("歐陽修", ("欧阳修", None, "ouyangxiu")),
    ("ＺＨＡＮＧ　ＳＡＮ", (None, "ZHANG SAN", "zhangsan")),     # full-width latin
    ("ZHANG SAN", (None, "ZHANG SAN", "zhangsan")),
    ("Zhang  san", (None, "ZHANG SAN", "zhangsan")),
    ("Zhāng Sān", (None, "ZHĀNG SĀN", "zhangsan")),
    ("", (None, None, None)),
    (None, (None, None, None)),
])
def test_person_names(raw, expected):
    assert person(raw) == expected


@pytest.mark.parametrize("dot", ["·", "•", "．", ".", "・", "‧", "∙", "\u30fb", "\uff65"])
def test_every_middle_dot_variant_becomes_u00b7(dot):
    assert person(f"阿依古丽{dot}买买提") == ("阿依古丽\u00b7买买提", None, "ayigulimaimaiti")


def test_surname_readings_and_repeats_align():
    values = pd.Series(["曾国藩", "张三", "曾国藩", None], index=[5, 6, 7, 8])
    out = normalise_person_names(values, surname_readings={"曾": "zeng"})
    assert list(out.index) == [5, 6, 7, 8]
    assert out["name_pinyin"].tolist() == ["zengguofan", "zhangsan", "zengguofan", NA]


def test_to_simplified_only_changes_traditional_text():
    assert to_simplified("臺北市") == "台北市"
    assert to_simplified("沈从文") == "沈从文"


REGIONS = ["北京市", "海淀区", "浙江省", "杭州市", "西湖区", "上海市", "东区"]


def enterprise(raw) -> tuple:
    row = normalise_enterprise_names(pd.Series([raw], dtype=object), REGIONS).iloc[0]
    return tuple(None if v is NA else v for v in row)


@pytest.mark.parametrize("raw, expected", [
    ("北京市海淀区某某科技有限责任公司", ("北京市海淀区某某科技有限公司", "某某科技", "北京市海淀区")),
    ("北京某某科技有限公司", ("北京某某科技有限公司", "某某科技", "北京")),
    ("某某科技(北京)有限公司", ("某某科技（北京）有限公司", "某某科技", "北京")),
    ("浙江省杭州市西湖区龙井茶业股份有限公司", ("浙江省杭州市西湖区龙井茶业股份有限公司", "龙井茶业", "浙江省杭州市西湖区")),
    ("上海 某某 贸易 有限公司", ("上海某某贸易有限公司", "某某贸易", "上海")),
    ("東區貿易有限公司", ("东区贸易有限公司", "贸易", "东区")),
    ("北京市有限公司", ("北京市有限公司", "北京市", None)),
    ("", (None, None, None)),
])
def test_enterprise_names(raw, expected):
    assert enterprise(raw) == expected


def test_enterprise_spellings_compare_equal():
    out = normalise_enterprise_names(pd.Series([
        "杭州某某网络科技有限责任公司", "杭州某某网络科技有限公司",
        "某某网络科技（杭州）有限公司", "某某网络科技(杭州)有限公司",
    ]), REGIONS)
    assert out["name"].tolist()[0] == out["name"].tolist()[1] == "杭州某某网络科技有限公司"
    assert out["name"].tolist()[2] == out["name"].tolist()[3] == "某某网络科技（杭州）有限公司"
    assert out["name_core"].nunique() == 1


def test_plain_and_other_names_mixed_in_one_batch():
    values = pd.Series(["单田芳", "ZHANG SAN", "單田芳", "阿依古丽·买买提", "单", "李 四"])
    out = normalise_person_names(values, surname_readings={"单": "shan"})
    assert out["name"].tolist() == ["单田芳", NA, "单田芳", "阿依古丽·买买提", "单", "李四"]
    assert out["name_latin"].tolist() == [NA, "ZHANG SAN", NA, NA, NA, NA]
    assert out["name_pinyin"].tolist() == ["shantianfang", "zhangsan", "shantianfang", "ayigulimaimaiti", "shan", "lisi"]
