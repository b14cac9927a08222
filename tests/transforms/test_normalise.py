"""normalise_source against the real standards/ folder on tiny inline raw frames."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from govdata.standards.model import SourceConfig
from govdata.standards.registry import load_standards
from govdata.transforms.bench import bench_normalise
from govdata.transforms.normalise import QUARANTINE_COLUMNS, NormaliseConfigError, normalise_source

NA = pd.NA
STANDARDS = load_standards()
VALID_ID = "11010519491231002X"


def raw_frame(columns: dict[str, list]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})
    frame["_source_record_id"] = [f"r{i}" for i in range(n)]
    frame["_row_hash"] = "h"
    return frame


def source(kind: str, columns: dict[str, str], **kw) -> SourceConfig:
    return SourceConfig(name="dept", department="某局", kind=kind, connection="sqlite://", table="T_SRC",
                        primary_key="ID", columns=columns, **kw)


PERSON = source("person", {"SFZH": "id_number", "XM": "name", "XB": "sex", "CSRQ": "birth_date",
                           "MZ": "ethnicity", "DH": "phone", "DZ": "address", "GXSJ": "updated_at"})


def person_raw() -> pd.DataFrame:
    return raw_frame({
        "SFZH": [VALID_ID, "110105491231002", "11010519491213002X", None, "11010519491231002x"],
        "XM": ["張 三", "阿依古丽•买买提", "王五", "ZHANG SAN", None],
        "XB": ["男", "F", "x", "1", "女"],
        "CSRQ": ["1949-12-31", "19491231", "1990-02-30", "1990年1月2日", ""],
        "MZ": ["汉族", "01", "HA", "99", None],
        "DH": ["138-1234-5678", "123", None, "+86 139 1234 5678", ""],
        "DZ": ["浙江省杭州市西湖区文三路1号", "北京市海淀区", None, "浙江省杭州市西湖区", ""],
        "GXSJ": ["2024-01-01 10:00:00"] * 5,
    })


def test_person_standardised_columns_and_values():
    result = normalise_source(person_raw(), PERSON, STANDARDS)
    std = result.standardised
    assert list(std.columns[:3]) == ["source_system", "source_record_id", "kind"]
    for element in STANDARDS.elements["person"]:
        assert element in std.columns
    assert {"id_number_status", "id_number_note"} <= set(std.columns)
    # row r4 has no name at all (required_one_of name | name_pinyin): rejected
    assert std["source_record_id"].tolist() == ["r0", "r1", "r2", "r3"]
    assert std["id_number"].tolist() == [VALID_ID, VALID_ID, NA, NA]
    assert std["id_number_status"].tolist() == ["valid", "repaired", "invalid", "missing"]
    assert std["id_number_note"].tolist() == [NA, "upgraded_15", "bad_check_digit", NA]
    assert std["name"].tolist() == ["张三", "阿依古丽·买买提", "王五", NA]
    assert std["name_latin"].tolist() == [NA, NA, NA, "ZHANG SAN"]
    assert std["name_pinyin"].tolist() == ["zhangsan", "ayigulimaimaiti", "wangwu", "zhangsan"]
    assert std["sex"].tolist() == ["1", "2", NA, "1"]
    assert [None if pd.isna(d) else d for d in std["birth_date"]] == \
        [dt.date(1949, 12, 31), dt.date(1949, 12, 31), None, dt.date(1990, 1, 2)]
    assert std["ethnicity"].tolist() == ["01", "01", "01", NA]
    assert std["phone"].tolist() == ["13812345678", NA, NA, "13912345678"]
    # region: from the ID number, else from the address
    assert std["region_code"].tolist() == ["110105", "110105", NA, "330106"]
    assert std["updated_at"].tolist()[0] == pd.Timestamp("2024-01-01 10:00:00")
    assert str(std["updated_at"].dtype) == "datetime64[us]"
    assert str(std["birth_date"].dtype) == "date32[day][pyarrow]"


def test_person_quarantine_and_invariant():
    raw = person_raw()
    result = normalise_source(raw, PERSON, STANDARDS)
    q = result.quarantine
    assert list(q.columns) == QUARANTINE_COLUMNS
    rejected = q[q["row_rejected"]]
    assert len(raw) == len(result.standardised) + rejected["source_record_id"].nunique()
    assert rejected[["source_record_id", "element", "reason_code"]].values.tolist() == \
        [["r4", "name|name_pinyin", "missing_required"]]
    values = q[~q["row_rejected"]].sort_values(["source_record_id", "element"])
    assert values[["source_record_id", "element", "reason_code"]].values.tolist() == [
        ["r1", "phone", "invalid_phone"],
        ["r2", "birth_date", "impossible_date"],
        ["r2", "id_number", "invalid_id_number"],
        ["r2", "sex", "unknown_code"],
        ["r3", "ethnicity", "unknown_code"],
    ]
    masked = values.loc[values["element"] == "id_number", "masked_value"].iloc[0]
    assert masked == "110105********002X"
    # no raw identifier or phone number anywhere in the messages
    for message in q["message"]:
        assert "11010519491213002X" not in message and "123" not in message
    assert "source 'dept' (table 'T_SRC', column 'SFZH')" in values.loc[values["element"] == "id_number", "message"].iloc[0]
    assert result.counts["rows_in"] == 5 and result.counts["rows_rejected"] == 1
    assert result.counts["values_quarantined"] == 5
    assert result.counts["identifier_status"]["id_number"] == {"valid": 1, "repaired": 2, "invalid": 1, "missing": 1}


def test_overrides_dayfirst_format_and_codes():
    src = source("person", {"XM": "name", "CSRQ": "birth_date", "XB": "sex"},
                 overrides={"birth_date": {"format": "%d/%m/%Y", "dayfirst": True}, "sex": {"codes": {"A": "1", "B": "2"}}})
    raw = raw_frame({"XM": ["张三", "李四"], "CSRQ": ["31/12/1949", "02/01/1990"], "XB": ["A", "B"]})
    std = normalise_source(raw, src, STANDARDS).standardised
    assert std["birth_date"].tolist() == [dt.date(1949, 12, 31), dt.date(1990, 1, 2)]
    assert std["sex"].tolist() == ["1", "2"]


def test_timestamp_timezone_override_converts_to_beijing_time():
    src = source("person", {"XM": "name", "GXSJ": "updated_at"}, overrides={"updated_at": {"timezone": "UTC"}})
    raw = raw_frame({"XM": ["张三", "李四"], "GXSJ": ["2024-01-01 20:00:00", "2024-01-01"]})
    std = normalise_source(raw, src, STANDARDS).standardised
    assert std["updated_at"].tolist() == [pd.Timestamp("2024-01-02 04:00:00"), pd.Timestamp("2024-01-01 08:00:00")]


def test_enterprise_derivations_and_required_name():
    src = source("enterprise", {"MC": "name", "XYDM": "uscc", "SH": "tax_no", "CLRQ": "founded_date"})
    raw = raw_frame({
        "MC": ["北京市海淀区某某科技有限责任公司", None, "某某科技(北京)有限公司"],
        "XYDM": ["91110000802100433B", "91110000802100433C", ""],
        "SH": ["", "", "110000802100433"],
        "CLRQ": ["2001-01-01", "x", ""],
    })
    result = normalise_source(raw, src, STANDARDS)
    std = result.standardised
    assert std["source_record_id"].tolist() == ["r0", "r2"]
    assert std["name"].tolist() == ["北京市海淀区某某科技有限公司", "某某科技（北京）有限公司"]
    assert std["name_core"].tolist() == ["某某科技", "某某科技"]
    assert std["name_region"].tolist() == ["北京市海淀区", "北京"]
    assert std["org_code"].tolist() == ["802100433", "802100433"]     # from uscc, then tax_no
    assert std["region_code"].tolist() == ["110000", "110000"]
    assert std["uscc_status"].tolist() == ["valid", "missing"]
    q = result.quarantine
    # the rejected row carries one entry; its other bad values are not listed separately
    assert q[["source_record_id", "element", "reason_code", "row_rejected"]].values.tolist() == \
        [["r1", "name", "missing_required", True]]


def test_application_codes_integers_and_pattern():
    src = source("application", {"BH": "application_no", "SFZH": "applicant_id_number", "QD": "channel",
                                 "SX": "service_item_code", "PJ": "rating", "SQSJ": "submitted_at"})
    raw = raw_frame({"BH": ["A1", "A2", "", "A4"], "SFZH": [VALID_ID, VALID_ID, VALID_ID, ""],
                     "QD": ["网上", "WINDOW", "fax", "web"], "SX": ["S0001", "S9999", "S0002", "S0001"],
                     "PJ": ["5", "five", "3.0", "4"],
                     "SQSJ": ["2024-03-01 09:00:00", "2024-03-01", "bad", "2024-03-02 10:00:00"]})
    result = normalise_source(raw, src, STANDARDS)
    std = result.standardised
    assert std["application_no"].tolist() == ["A1", "A2"]
    assert std["channel"].tolist() == ["web", "window"]
    assert std["service_item_code"].tolist() == ["S0001", NA]
    assert std["rating"].tolist() == [5, NA]
    assert std["submitted_at"].tolist() == [pd.Timestamp("2024-03-01 09:00:00"), pd.Timestamp("2024-03-01")]
    q = result.quarantine.sort_values(["source_record_id", "element"])
    assert q[["source_record_id", "element", "reason_code", "row_rejected"]].values.tolist() == [
        ["r1", "rating", "not_integer", False],
        ["r1", "service_item_code", "unknown_code", False],
        ["r2", "application_no", "missing_required", True],
        ["r3", "applicant_id_number|applicant_uscc|applicant_name", "missing_required", True],
    ]
    assert len(raw) == len(std) + q.loc[q["row_rejected"], "source_record_id"].nunique()


@pytest.mark.parametrize("columns, raw_columns, message", [
    ({"SFZH": "id_number", "XM": "name"}, {"XM": ["张三"]}, "source 'dept' (table 'T_SRC', column 'SFZH'): mapped column missing"),
    ({"XM": "name", "FOO": "shoe_size"}, {"XM": ["张三"], "FOO": ["42"]},
     "column 'FOO'): element 'shoe_size' is not a person element"),
    ({"XM": "name", "XM2": "name"}, {"XM": ["张三"], "XM2": ["李四"]}, "element 'name' is already mapped from column 'XM'"),
    ({"SFZH": "id_number"}, {"SFZH": [VALID_ID]}, "none of the elements ['name', 'name_pinyin']"),
])
def test_config_errors_name_source_table_column(columns, raw_columns, message):
    with pytest.raises(NormaliseConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        normalise_source(raw_frame(raw_columns), source("person", columns), STANDARDS)


def test_config_error_for_required_element_not_mapped():
    with pytest.raises(NormaliseConfigError, match="required element 'name' is not mapped"):
        normalise_source(raw_frame({"XYDM": ["91110000802100433B"]}), source("enterprise", {"XYDM": "uscc"}), STANDARDS)


def test_bench_normalise_runs_and_reports():
    report = bench_normalise(300, STANDARDS, repeats=2)
    assert report["rows"] == 300 and report["rows_standardised"] == 300
    assert report["steady_rows_per_second"] > 0


# ---------------------------------------------------------------- row-level fault isolation
APPLICATION = SourceConfig(name="zw", department="政务服务", kind="application", connection="sqlite://",
                           table="T_SQ", primary_key="SQBH",
                           columns={"SQBH": "application_no", "SFZ": "applicant_id_number", "MC": "applicant_name",
                                    "PJ": "rating", "SX": "legal_limit_days"})


def _application_raw(keys, **columns) -> pd.DataFrame:
    n = len(keys)
    frame = pd.DataFrame({"SQBH": pd.Series(keys, dtype=object),
                          "SFZ": columns.get("SFZ", [VALID_ID] * n), "MC": columns.get("MC", ["张三"] * n),
                          "PJ": columns.get("PJ", ["5"] * n), "SX": columns.get("SX", ["10"] * n)})
    frame["_source_record_id"] = frame["SQBH"]
    frame["_row_hash"] = [f"{i:016x}" for i in range(n)]
    return frame


def _entries(result) -> list[tuple]:
    q = result.quarantine
    return sorted(zip(q.source_record_id, q.element, q.reason_code, q.row_rejected, q.masked_value.fillna("")))


def test_bad_keys_reject_their_rows_and_the_run_goes_on():
    raw = _application_raw([" A1 ", "A1", "A2", "A2", None, "", "   ", "NULL", "A3\ufffd", "Ａ4"],
                           MC=["张三", "张三", "李四", "王五", "赵六", "赵六", "赵六", "赵六", "钱七", "孙八"])
    result = normalise_source(raw, APPLICATION, STANDARDS)
    assert result.standardised["source_record_id"].tolist() == ["A1", "A4"]
    assert result.standardised["application_no"].tolist() == ["A1", "A4"]
    hashes = raw["_row_hash"]
    assert _entries(result) == sorted([
        ("A1#2", "source_record_id", "duplicate_key", True, "A*"),            # identical copy: first kept
        ("A2#1", "source_record_id", "duplicate_key", True, "A*"),            # copies disagree: both out
        ("A2#2", "source_record_id", "duplicate_key", True, "A*"),
        (f"(missing key)#{hashes[4]}", "source_record_id", "missing_key", True, ""),
        (f"(missing key)#{hashes[5]}", "source_record_id", "missing_key", True, ""),
        (f"(missing key)#{hashes[6]}", "source_record_id", "missing_key", True, " **"),
        (f"(missing key)#{hashes[7]}", "source_record_id", "missing_key", True, "N***"),
        (f"(undecodable key)#{hashes[8]}", "source_record_id", "undecodable", True, "A**"),
    ])
    assert result.counts["rows_in"] == 10 == result.counts["rows_standardised"] + result.counts["rows_rejected"]
    messages = set(result.quarantine.message)
    assert "source 'zw' (table 'T_SQ', column 'SQBH') -> source_record_id: duplicate_key " \
           "(copies disagree: every copy rejected)" in messages
    assert "source 'zw' (table 'T_SQ', column 'SQBH') -> source_record_id: duplicate_key " \
           "(identical copy: the first one kept)" in messages


def test_missing_keys_that_repeat_get_distinct_quarantine_ids():
    raw = _application_raw([None, None])
    raw["_row_hash"] = "same"
    result = normalise_source(raw, APPLICATION, STANDARDS)
    assert sorted(result.quarantine.source_record_id) == ["(missing key)#same", "(missing key)#same#2"]


def test_values_outside_the_standard_are_quarantined_not_loaded():
    raw = _application_raw(["A1", "A2", "A3", "A4", "A5"], PJ=["-5", "4.0", "4.5", "6", None],
                           SX=["99999", "10", "-1", "0", "3650"],
                           MC=["\x1b[31m张三\x1b[0m", "李\x00四", "x" * 201, "王\u200b五", "NULL"])
    result = normalise_source(raw, APPLICATION, STANDARDS)
    std = result.standardised.set_index("source_record_id")
    assert std["rating"].tolist() == [NA, 4, NA, NA, NA]
    assert std["legal_limit_days"].tolist() == [NA, 10, NA, 0, 3650]
    assert std["applicant_name"].tolist() == ["张三", "李四", NA, "王五", NA]
    assert _entries(result) == sorted([
        ("A1", "rating", "out_of_range", False, "-*"),
        ("A1", "legal_limit_days", "out_of_range", False, "9****"),
        ("A1", "applicant_name", "control_characters", False, "张*"),
        ("A2", "applicant_name", "control_characters", False, "李*"),
        ("A3", "rating", "not_integer", False, "4**"),
        ("A3", "legal_limit_days", "out_of_range", False, "-*"),
        ("A3", "applicant_name", "too_long", False, "xxxxxx" + "*" * 58 + "…(201 chars)"),
        ("A4", "rating", "out_of_range", False, "*"),
        ("A4", "applicant_name", "control_characters", False, "王*"),
    ])
    assert "stripped; value kept" in result.quarantine.set_index("reason_code").loc["control_characters", "message"].iloc[0]


def test_names_holding_identifiers_or_emoji_are_quarantined():
    src = source("person", {"XM": "name", "SFZH": "id_number"})
    # "Τƽ" is GBK 韦平 read as UTF-8: repaired before the rule (kept, noted); "Αθηνά1" is not mojibake
    raw = raw_frame({"XM": ["张三", "13812345678", "李四😀", "Τƽ", "阿依古丽·买买提", "Αθηνά1"],
                     "SFZH": [None] * 6})
    result = normalise_source(raw, src, STANDARDS)
    assert result.standardised["name"].tolist() == ["张三", "韦平", "阿依古丽·买买提"]
    assert _entries(result) == [("r1", "name|name_pinyin", "invalid_name", True, "138****5678"),
                                ("r2", "name|name_pinyin", "invalid_name", True, "李**"),
                                ("r3", "name", "repaired_mojibake", False, "韦*"),
                                ("r5", "name|name_pinyin", "invalid_name", True, "Α*****")]


def test_every_warehouse_check_constraint_has_its_standard_bound():
    """The database's CHECK constraints are the last line of defence: each bound on a column fed
    from a standard element is enforced by normalise first (elements.yaml minimum/maximum)."""
    import re

    from sqlalchemy import CheckConstraint

    from govdata.warehouse.schema import metadata

    kinds = {"fact_application": "application", "fact_certificate": "certificate"}
    checked = []
    for table in metadata.sorted_tables:
        for constraint in table.constraints:
            if not isinstance(constraint, CheckConstraint) or table.name not in kinds:
                continue
            m = re.fullmatch(r"(\w+) BETWEEN (-?\d+) AND (-?\d+)", str(constraint.sqltext))
            assert m, f"{table.name}: {constraint.sqltext} has no standard-level twin; add one"
            element = STANDARDS.element(kinds[table.name], m.group(1))
            assert (element.minimum, element.maximum) == (int(m.group(2)), int(m.group(3)))
            checked.append(m.group(1))
    assert checked == ["rating"]


def test_reconciliation_gate_is_a_clear_error():
    from govdata.transforms.normalise import ReconciliationError, check_reconciliation

    with pytest.raises(ReconciliationError, match=r"^source zw: reconciliation failed: 10 rows in, but 8 "
                                                  r"standardised \+ 1 rejected = 9; nothing of this run is loaded$"):
        check_reconciliation("zw", {"rows_in": 10, "rows_standardised": 8, "rows_rejected": 1})


def test_document_type_and_number_pairs():
    """A service-hall table with 证件类型 + 证件号码: only GB 11643 numbers are keys, other
    documents keep their number in doc_number and are never quarantined as invalid IDs."""
    src = source("person", {"XM": "name", "ZJLX": "id_type", "ZJHM": "id_number", "CSRQ": "birth_date"})
    raw = raw_frame({
        "XM": ["张三", "JOHN SMITH", "陈大文", "李四", "王五", "赵六", "孙七"],
        "ZJLX": ["身份证", "护照", "516", "111", "居民身份证", "未知证件", None],
        "ZJHM": [VALID_ID, "e12345678", "H12345678", "1.10105199001011E+17", "110105199001011000", "AB12345",
                 "810000199001010019"],
        "CSRQ": ["1949.12.31", "32874", None, None, None, None, None],
    })
    result = normalise_source(raw, src, STANDARDS)
    std = result.standardised
    assert std["id_type"].tolist() == ["111", "414", "516", "111", "111", NA, NA]
    assert std["id_number"].tolist() == [VALID_ID, NA, NA, NA, NA, NA, "810000199001010019"]
    assert std["id_number_status"].tolist() == ["valid", "other_document", "other_document", "invalid", "invalid",
                                                "other_document", "valid"]
    assert std["doc_number"].tolist() == [NA, "E12345678", "H12345678", NA, NA, "AB12345", NA]
    assert std["region_code"].tolist() == ["110105", NA, NA, NA, NA, NA, "810000"]
    assert [str(d) if d is not NA else None for d in std["birth_date"]] == ["1949-12-31", "1990-01-01"] + [None] * 5
    q = result.quarantine.sort_values(["source_record_id", "element"])
    assert q[["source_record_id", "element", "reason_code"]].values.tolist() == [
        ["r3", "id_number", "excel_damaged"], ["r4", "id_number", "excel_damaged"], ["r5", "id_type", "unknown_code"]]


def test_one_document_type_for_a_whole_column():
    src = source("person", {"XM": "name", "HZHM": "id_number"}, overrides={"id_number": {"id_type": "普通护照"}})
    raw = raw_frame({"XM": ["JOHN SMITH", "张三"], "HZHM": ["E12345678", VALID_ID]})
    std = normalise_source(raw, src, STANDARDS).standardised
    assert std["id_number_status"].tolist() == ["other_document", "valid"]
    assert std["doc_number"].tolist() == ["E12345678", NA]
    assert std["id_number_note"].tolist() == [NA, "number_is_id"]
