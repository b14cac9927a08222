"""Person and enterprise name normalisation."""
from __future__ import annotations

import pandas as pd
import pytest

from govdata.transforms.enterprise_names import normalise_enterprise_names
from govdata.transforms.names import normalise_person_names, to_simplified

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


# ---------------------------------------------------------------- issue 13: latin names, rare characters, mojibake
from govdata.transforms.mojibake import repair_mojibake, unmojibake  # noqa: E402
from govdata.transforms.names import latin_name_keys, name_agreement  # noqa: E402


def test_latin_names_of_foreigners_get_one_order_free_key():
    raw = pd.Series(["Jean-Pierre DUPONT", "dupont  jean pierre", "DUPONT, Jean-Pierre", "José  Müller",
                     "MÜLLER JOSÉ", None], index=[3, 4, 5, 6, 7, 8])
    people = normalise_person_names(raw)
    assert people["name_latin"].tolist() == ["JEAN-PIERRE DUPONT", "DUPONT JEAN PIERRE", "DUPONT, JEAN-PIERRE",
                                             "JOSÉ MÜLLER", "MÜLLER JOSÉ", NA]
    keys = latin_name_keys(people["name_latin"])
    assert keys.index.tolist() == [3, 4, 5, 6, 7, 8]
    assert keys.tolist() == ["DUPONT JEAN PIERRE"] * 3 + ["JOSE MULLER"] * 2 + [NA]


@pytest.mark.parametrize("raw, expected", [
    ("王hong", ("王hong", None, "wanghong")),
    ("王HONG", ("王hong", None, "wanghong")),
    ("王Hong", ("王hong", None, "wanghong")),
    ("王*", ("王*", None, None)),
    ("王?", ("王*", None, None)),
    ("王？", ("王*", None, None)),
    ("王＊", ("王*", None, None)),
    ("王□", ("王*", None, None)),
    ("*晓明", ("*晓明", None, None)),
])
def test_rare_character_stand_ins_are_kept_in_one_spelling(raw, expected):
    assert person(raw) == expected


@pytest.mark.parametrize("a, b, level", [
    ("王鸿", "王鸿", 1.0),
    ("王*", "王鸿", 0.5),
    ("王*", "王䶮", 0.5),
    ("*晓明", "李晓明", 0.5),
    ("王hong", "王鸿", 0.5),
    ("王yan", "王䶮", 0.5),
    ("王岩", "王䶮", 0.5),      # a common homophone for a character outside GB 2312
    ("张伟", "张维", 0.0),      # homophones of common characters are different names
    ("王hong", "王红", 0.5),
    ("王hong", "王明", 0.0),
    ("王*", "王小明", 0.0),     # a placeholder stands for one character
    ("王*", "李鸿", 0.0),
])
def test_name_agreement_levels(a, b, level):
    assert name_agreement(a, b) == level
    assert name_agreement(b, a) == level


@pytest.mark.parametrize("broken, fixed, address", [
    ("ÕÅÈý", "张三", False),                                          # GBK read as Latin-1
    ("劉三".encode("gbk").decode("cp1252"), "劉三", False),           # as Windows-1252 („¢Èý)
    ("鸿".encode("gbk").decode("latin-1").join(["Íõ", ""]), "王鸿", False),   # C1 control inside
    ("王䶮".encode("gb18030").decode("latin-1"), "王䶮", False),     # GB18030 four-byte character
    ("Τƽ", "韦平", False),                                            # GBK read as UTF-8
    ("北京市朝阳区建国路1号".encode("gbk").decode("latin-1"), "北京市朝阳区建国路1号", True),
])
def test_mojibake_is_repaired(broken, fixed, address):
    assert unmojibake(broken, address) == fixed


@pytest.mark.parametrize("text, address", [
    ("José", False), ("Renée", False), ("Müller", False), ("ZHANG SAN", False), ("张三", False),
    ("Rue de l'Église 5", True), ("محمد", False), ("\ufffd\ufffd", False), ("Αθηνά1", False),
])
def test_text_that_is_not_mojibake_is_left_alone(text, address):
    assert unmojibake(text, address) is None


def test_repair_mojibake_per_value_keeps_index_and_flags():
    values = pd.Series(["ÕÅÈý", "张三", None, "ÕÅÈý", "Smith", "José"], index=[9, 8, 7, 6, 5, 4])
    fixed, repaired = repair_mojibake(values)
    assert fixed.tolist() == ["张三", "张三", None, "张三", "Smith", "José"]
    assert fixed.index.tolist() == [9, 8, 7, 6, 5, 4]
    assert repaired.tolist() == [True, False, False, True, False, False]
