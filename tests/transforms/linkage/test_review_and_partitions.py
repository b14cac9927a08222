"""Review CSV round trip (masked identifiers) and blocking partitions."""
from __future__ import annotations

import pandas as pd
import pytest

from govdata.transforms.linkage import decisions_from_csv, link_persons, partition_keys, review_to_csv

from .people import SURVIVORSHIP, clusters, frame, make_id, rec

G = make_id("1985-07-20", "022")


def test_review_csv_masks_identifiers_and_reads_decisions_back(tmp_path):
    rows = frame([rec("gongan", "g1", G, "王芳", "wangfang", "2", "1985-07-20", "13912345678"),
                  rec("churujing", "c1", None, None, "wangfang", "2", "1985-07-21")])
    r = link_persons(rows, previous_xref=None, decisions=None, survivorship=SURVIVORSHIP,
                     run_id="r1")
    assert len(r.review) == 1
    path = review_to_csv(r.review, rows, tmp_path / "review.csv")
    text = path.read_text(encoding="utf-8")
    assert G not in text and "13912345678" not in text
    sheet = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = sheet.iloc[0]
    sides = {row.left_source_record_id: "left", row.right_source_record_id: "right"}
    g = sides["g1"]
    assert row[f"{g}_id_number"] == G[:6] + "********" + G[-4:]
    assert row[f"{g}_phone"] == "139****5678"
    assert float(row.weight_pinyin) > 5 and row.decision == ""
    # the steward decides and the decision links the pair on the next run
    sheet.loc[0, ["decision", "decided_by", "decided_at"]] = ["match", "li.steward", "2026-03-01"]
    sheet.to_csv(path, index=False)
    decisions = decisions_from_csv(path)
    assert decisions.columns.tolist() == ["left_source_system", "left_source_record_id",
                                          "right_source_system", "right_source_record_id",
                                          "decision", "decided_by", "decided_at"]
    assert decisions.decision.tolist() == ["match"]
    again = link_persons(rows, previous_xref=r.xref, decisions=decisions,
                         survivorship=SURVIVORSHIP, run_id="r2")
    assert clusters(again.xref) == {frozenset({"gongan:g1", "churujing:c1"})}
    assert again.xref.match_rule.tolist() == ["steward", "steward"] and again.review.empty


def test_decisions_csv_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame([{"left_source_system": "a", "left_source_record_id": "1",
                   "right_source_system": "b", "right_source_record_id": "2",
                   "decision": "", "decided_by": "", "decided_at": ""},
                  {"left_source_system": "a", "left_source_record_id": "1",
                   "right_source_system": "b", "right_source_record_id": "2",
                   "decision": "yes", "decided_by": "x", "decided_at": ""}]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"d.csv, line 3: column decision is 'yes'"):
        decisions_from_csv(path)
    pd.DataFrame([{"left_source_system": "a"}]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="missing column.*left_source_record_id"):
        decisions_from_csv(path)


def test_partition_keys_keep_linkable_records_together_and_one_partition_links_alone():
    a, b = make_id("1980-05-12", "011"), make_id("1981-03-03", "021")
    rows = frame([rec("gongan", "a1", a, "张三", "zhangsan", "1", "1980-05-12", "13800000001"),
                  rec("shebao", "a2", a, "张三", "zhangsan", "1", None),
                  rec("weijian", "a3", None, "张三", "zhangsan", "1", "1980-05-12", "13800000001"),
                  rec("gongan", "b1", b, "李四", "lisi", "1", "1981-03-03"),
                  rec("shebao", "b2", b[:-1] + "0", "李四", "lisi", "1", None, status="invalid"),
                  rec("minzheng", "x", None, "无名", "wuming", None, None)])
    part = partition_keys(rows, n_partitions=4)
    assert part.tolist() == [1980 % 4, 1980 % 4, 1980 % 4, 1981 % 4, 1981 % 4, 0]
    full = link_persons(rows, previous_xref=None, decisions=None, survivorship=SURVIVORSHIP,
                        run_id="r").xref
    for p in part.unique():
        one = link_persons(rows[part == p], previous_xref=None, decisions=None,
                           survivorship=SURVIVORSHIP, run_id="r").xref
        assert one.reset_index(drop=True).equals(
            full[(part == p).to_numpy()].reset_index(drop=True))
    with pytest.raises(ValueError, match="n_partitions must be >= 1"):
        partition_keys(rows, n_partitions=0)


def test_partition_keys_for_enterprises_use_the_org_code():
    rows = pd.DataFrame({"source_system": ["shichang", "shuiwu", "x"],
                         "source_record_id": ["1", "2", "3"],
                         "uscc": ["91110105MA01ABCD1X", None, None],
                         "org_code": [None, None, None],
                         "tax_no": [None, "110105MA01ABCD1", None],
                         "name_core": ["甲", "甲", None]})
    part = partition_keys(rows, n_partitions=8)
    assert part.iloc[0] == part.iloc[1] and part.iloc[2] == 0


def test_partition_numbers_read_arrow_dates_text_dates_and_id_years():
    import pyarrow as pa

    from govdata.transforms.linkage.partition import partition_numbers

    ids = ["110105198005120011", "11010519811303002X", None, "1101051X"]
    dated = pa.table({"id_number": ids,
                      "birth_date": pa.array([None, None, 365 * 10, None], pa.date32())})   # 1979-12-29
    assert partition_numbers(dated, 4).tolist() == [1980 % 4, 1981 % 4, 1979 % 4, 0]
    text = pa.table({"id_number": ids, "birth_date": [None, "1990-02-01", None, "not a date"]})
    assert partition_numbers(text, 4).tolist() == [1980 % 4, 1990 % 4, 0, 0]


def test_review_csv_masks_document_numbers(tmp_path):
    review = pd.DataFrame({"pair_id": ["p1"], "left_source_system": ["churujing"], "left_source_record_id": ["c1"],
                           "right_source_system": ["zhengwu_sqr"], "right_source_record_id": ["z1"],
                           "score": [12.5], "evidence": ['{"document": 19.9}']})
    rows = pd.DataFrame({"source_system": ["churujing", "zhengwu_sqr"], "source_record_id": ["c1", "z1"],
                         "id_type": ["414", "414"], "doc_number": ["E12345678", "E12345678"],
                         "name_latin": ["SMITH, JOHN", "JOHN SMITH"]})
    text = review_to_csv(review, rows, tmp_path / "review.csv").read_text(encoding="utf-8")
    assert "E12345678" not in text
    sheet = pd.read_csv(tmp_path / "review.csv", dtype=str)
    assert sheet.loc[0, ["left_doc_number", "right_name_latin", "weight_document"]].tolist() == \
        ["E1*****78", "JOHN SMITH", "19.9"]
