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


# --- a hand-computed example: the DuckDB counting against the numbers worked out on paper -------
# predicted A={r1,r2,r5,r6} B={r3,r7} C={r8} D={r4} E={r9,r10}, F={r11} (not in the truth);
# truth W={r1,r5} X={r2,r6} Y={r3,r7,r8} Z={r4} U={r9} V={r10}, T={r12} (not in the xref).
# Source a: r1-r4, r9, r11; b: r5-r8, r10, r12. Causes: r3 shared_phone (the truth's label),
# r8 missing_id (read from its record); r2 shares 张伟 with r1/r5; r9 and r10 share a birth date.
TOY = pd.DataFrame([
    # rid, source, predicted, true, truth cause, name, birth date
    ("r1", "a", "A", "W", None, "张伟", "19800101"), ("r2", "a", "A", "X", None, "张伟", "19850101"),
    ("r3", "a", "B", "Y", "shared_phone", "王芳", "19900101"), ("r4", "a", "D", "Z", None, "赵六", "19700101"),
    ("r5", "b", "A", "W", None, "张伟", "19800101"), ("r6", "b", "A", "X", None, "李明", "19850101"),
    ("r7", "b", "B", "Y", None, "王芳", "19900101"), ("r8", "b", "C", "Y", None, "王芳", None),
    ("r9", "a", "E", "U", None, "陈一", "20000505"), ("r10", "b", "E", "V", None, "陈二", "20000505"),
    ("r11", "a", "F", None, None, "孙七", "19600101"), ("r12", "b", None, "T", None, "周八", "19600101")],
    columns=["source_record_id", "source_system", "person_id", "true_person_id", "cause", "name", "birth"])


def toy_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    key = ["source_system", "source_record_id"]
    xref = TOY.loc[TOY["person_id"].notna(), key + ["person_id"]]
    truth = TOY.loc[TOY["true_person_id"].notna(), key + ["true_person_id", "cause"]]
    born = TOY["birth"].notna()
    records = TOY[key + ["name"]].assign(
        kind="person", sex="1",
        birth_date=pd.to_datetime(TOY["birth"], format="%Y%m%d").dt.date.where(born, None),
        id_number=[gb11643(f"110105{b}001") if b else None for b in TOY["birth"]],
        id_number_status=["valid" if b else "missing" for b in TOY["birth"]])
    return xref.reset_index(drop=True), truth.reset_index(drop=True), records


def scores(records: int, true: int, predicted: int, tp: int, precision: float, recall: float, f1: float) -> dict:
    return {"records": records, "true_pairs": true, "predicted_pairs": predicted,
            "false_merge_pairs": predicted - tp, "missed_pairs": true - tp,
            "precision": precision, "recall": recall, "f1": f1}


# Pairs touching a value v, per cluster of n records k of them v: C(n,2) - C(n-k,2). Source a:
# predicted A 6-1, B 1, E 1 = 7; true W 1, X 1, Y 3-1 = 4; cells A·W, A·X, B·Y 1 each = 3.
# b: predicted 7 alike; true W 1, X 1, Y 3-0 = 5; cells 3. missing_id (r8): predicted C 0, true
# Y 3-1 = 2, cells 0. shared_phone (r3): predicted B 1, true Y 2, cells B·Y 1.
TOY_EXPECTED = {
    "records": 10, "records_unmatched_in_truth": 1, "true_pairs": 5, "predicted_pairs": 8,
    "true_positive_pairs": 3, "false_merge_pairs": 5, "missed_pairs": 2,
    "precision": 3 / 8, "recall": 3 / 5, "f1": 2 * (3 / 8) * (3 / 5) / (3 / 8 + 3 / 5),
    "predicted_entities": 5, "true_entities": 6,
    "by_source": {"a": scores(5, 4, 7, 3, 3 / 7, 3 / 4, 2 * (3 / 7) * (3 / 4) / (3 / 7 + 3 / 4)),
                  "b": scores(5, 5, 7, 3, 3 / 7, 3 / 5, 2 * (3 / 7) * (3 / 5) / (3 / 7 + 3 / 5))},
    # A (W 2, X 2: a tie, W the biggest) loses C(4,2) - 1 - 1 = 4 pairs to X's r2/r6, no cause,
    # r2's name in W: namesake. E loses 1 to r10, another name, r9's birth date: twin.
    "false_merges_by_cause": {"namesake": 4, "twin": 1},
    # Y (B 2, C 1) loses C(3,2) - 1 = 2 pairs to r8: missing_id.
    "misses_by_cause": {"missing_id": 2},
    "by_cause": {"missing_id": scores(1, 2, 0, 0, 1.0, 0.0, 0.0),
                 "shared_phone": scores(1, 2, 1, 1, 1.0, 0.5, 2 * 0.5 / 1.5)}}


def test_hand_computed_example_by_source_and_cause():
    xref, truth, records = toy_frames()
    assert evaluate(xref, truth, records=records) == TOY_EXPECTED


@pytest.fixture
def key_home(tmp_path, monkeypatch):
    """A key file of the test's own, for the lake's encrypted columns."""
    for name in ("GOVDATA_TOKEN_KEY", "GOVDATA_TOKEN_KEY_PREVIOUS", "GOVDATA_KEY_FILE", "GOVDATA_LAKE_KMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVDATA_HOME", str(tmp_path / "home"))


def write_toy_run(tmp_path, std_files: dict[str, pd.DataFrame]) -> tuple:
    from govdata.lake import write_parquet

    xref, truth, _ = toy_frames()
    lake, world = tmp_path / "lake", tmp_path / "world"
    write_parquet(xref, str(lake / "r1" / "link" / "person_xref.parquet"))
    (world / "truth").mkdir(parents=True)
    truth.to_parquet(world / "truth" / "persons.parquet")
    for name, frame in std_files.items():
        write_parquet(frame, str(lake / "r1" / "std" / f"{name}.parquet"))
    return world, str(lake)


def test_a_run_in_the_lake_scores_like_the_hand_computed_example(tmp_path, key_home, monkeypatch):
    import govdata.evaluate as ev
    from govdata.lake import is_encrypted

    monkeypatch.setattr(ev, "BATCH_ROWS", 2)   # the cause rules run batch by batch: several per file
    _, _, records = toy_frames()
    applications = pd.DataFrame({"source_system": ["c"], "source_record_id": ["r1"], "kind": ["application"]})
    world, lake = write_toy_run(tmp_path, {"a": records[records["source_system"] == "a"],
                                           "b": records[records["source_system"] == "b"],
                                           "c": applications})
    assert is_encrypted(f"{lake}/r1/std/a.parquet")   # id_number: the causes are read with the lake's keys
    lines = []
    res = ev.evaluate_run(world, {"run_id": "r1"}, lake=lake, progress=lines.append)
    assert res["person"] == TOY_EXPECTED
    assert "missing" in res["enterprise"]["error"]
    assert lines[0] == "reading the standardised records of 3 sources"
    assert lines[1:4] == ["persons: record causes read from a (6 records so far)",
                          "persons: record causes read from b (12 records so far)",
                          "scoring persons: 12 records against the truth"]


def test_cause_rules_see_every_column_of_the_kind(tmp_path, key_home):
    """Source b maps no ID column: with source a's status column beside it, its records read
    no_identifier (a missing status, not 'missing') — as when all records are scored at once."""
    from govdata.evaluate import evaluate_run

    _, _, records = toy_frames()
    a = records[records["source_system"] == "a"]
    b = records.loc[records["source_system"] == "b", ["source_system", "source_record_id", "kind", "name"]]
    world, lake = write_toy_run(tmp_path, {"a": a, "b": b})
    res = evaluate_run(world, {"run_id": "r1"}, lake=lake)["person"]
    assert {c: v["records"] for c, v in res["by_cause"].items()} == {"no_identifier": 5, "shared_phone": 1}
    assert res["misses_by_cause"] == {"no_identifier": 2}
    assert res["false_merges_by_cause"] == {"no_identifier": 5}
    assert evaluate(*toy_frames()[:2], records=pd.concat([a, b]))["by_cause"] == res["by_cause"]
