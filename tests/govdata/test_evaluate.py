"""govdata.evaluate: scores per source, the generator's cause labels and the issue-13 causes
read from standardised records — exact values on toys."""
from __future__ import annotations

import pandas as pd
import pytest
from stdnum.cn import ric

from govdata.evaluate import evaluate, record_causes

RIDS = [f"r{i}" for i in range(1, 7)]
SOURCES = ["a", "a", "a", "b", "b", "b"]


def frame(column: str, values: list, **extra: list) -> pd.DataFrame:
    return pd.DataFrame({"source_system": SOURCES[:len(values)], "source_record_id": RIDS[:len(values)],
                         column: values, **extra})


def gb11643(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17)


def test_scores_per_source_count_the_pairs_touching_the_source():
    # predicted A={1,2,3} B={4,5} C={6}; truth X={1,2} Y={3,4,5,6}; a = r1-r3, b = r4-r6
    res = evaluate(frame("person_id", list("AAABBC")), frame("true_person_id", list("XXYYYY")))
    a, b = res["by_source"]["a"], res["by_source"]["b"]
    # all pairs minus those among the other source's records: b alone has tp 1, predicted 1, true 3
    assert (a["records"], b["records"]) == (3, 3)
    assert (a["predicted_pairs"], a["true_pairs"], a["false_merge_pairs"], a["missed_pairs"]) == (3, 4, 2, 3)
    assert a["precision"] == pytest.approx(1 / 3) and a["recall"] == pytest.approx(1 / 4)
    assert a["f1"] == pytest.approx(2 / 7)
    assert (b["predicted_pairs"], b["true_pairs"], b["false_merge_pairs"], b["missed_pairs"]) == (1, 6, 0, 5)
    assert b["precision"] == 1.0 and b["recall"] == pytest.approx(1 / 6)
    assert "false_merges_by_cause" not in res   # neither records nor truth causes given


def test_the_generators_cause_labels_are_used_and_scored():
    truth = frame("true_person_id", list("XXYYYY"), cause=[None, None, "mojibake", None, None, None])
    res = evaluate(frame("person_id", list("AAABBC")), truth)
    assert res["false_merges_by_cause"] == {"mojibake": 2}
    assert res["misses_by_cause"] == {"mojibake": 5}
    m = res["by_cause"]["mojibake"]
    assert (m["records"], m["predicted_pairs"], m["true_pairs"], m["false_merge_pairs"]) == (1, 2, 3, 2)
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)


def test_truth_labels_win_over_causes_read_from_records():
    truth = frame("true_person_id", list("XXYYYY"), cause=[None, None, "shared_phone", None, None, None])
    records = frame("id_number", [None] * 6, id_number_status=["missing"] * 6, name=["甲"] * 6)
    res = evaluate(frame("person_id", list("AAABBC")), truth, records=records)
    assert res["false_merges_by_cause"] == {"shared_phone": 2}
    # Y's records outside its biggest cell are r3 (shared_phone) and r6 (missing_id): a tie,
    # broken alphabetically
    assert res["misses_by_cause"] == {"missing_id": 5}
    assert set(res["by_cause"]) == {"missing_id", "shared_phone"}
    assert res["by_cause"]["missing_id"]["records"] == 5


def test_issue_13_person_causes_from_std_columns():
    citizen = gb11643("11010519800101001")
    resident = gb11643("91184019800101001")   # foreigner's permanent residence ID (2023)
    records = pd.DataFrame({
        "kind": ["person"] * 6,
        "id_number": [None, None, None, citizen, resident, citizen],
        "id_number_status": ["invalid", "other_document", None, "valid", "valid", "valid"],
        "id_number_note": ["excel_scientific", None, None, None, None, None],
        "doc_number": [None, "E12345678", None, None, None, None],
        "id_type": [None, "414", None, None, "553", None],
        "name": ["张三", None, "李四", "王*", None, None],
        "name_latin": [None, "SMITH JOHN", None, None, "SMITH JOHN", "ZHANG SAN"],
        "name_pinyin": ["zhangsan", "smithjohn", "lisi", None, "smithjohn", "zhangsan"],
        "sex": ["1"] * 6, "birth_date": [None] * 6})
    assert record_causes(records).tolist() == ["excel_damage", "other_document", "no_identifier",
                                               "rare_character", "latin_name", "pinyin_only"]


def test_enterprise_causes_from_std_columns():
    records = pd.DataFrame({
        "kind": ["enterprise"] * 5,
        "uscc": [None, None, "92110105MA01ABCD1X", "91110105MA01ABCD2Y", "91110105MA01ABCD3Z"],
        "uscc_status": [None, None, "valid", "valid", "invalid"],
        "org_code": [None] * 5, "reg_no": [None] * 5,
        "tax_no": [None, "110105123456789", None, None, None],
        "name": ["老王便利店", "华信科技有限公司", "老王便利店", "华信科技有限公司上海分公司", "华信科技有限公司"]})
    assert record_causes(records).tolist() == ["no_code", "old_code_only", "individual_business", "branch",
                                               "typo_uscc"]
