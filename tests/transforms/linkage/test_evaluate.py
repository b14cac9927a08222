"""govdata.evaluate: pairwise scores from cluster sizes, errors by cause — exact on a toy."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from govdata.evaluate import evaluate, record_causes

from .people import make_id

KEYS = [("s", f"r{i}") for i in range(1, 7)]


def xref(ids):
    return pd.DataFrame({"source_system": [k[0] for k in KEYS[:len(ids)]],
                         "source_record_id": [k[1] for k in KEYS[:len(ids)]], "person_id": ids})


def truth(ids):
    return pd.DataFrame({"source_system": [k[0] for k in KEYS[:len(ids)]],
                         "source_record_id": [k[1] for k in KEYS[:len(ids)]],
                         "true_person_id": ids})


def test_pairwise_scores_from_the_contingency_table():
    # predicted A={1,2,3} B={4,5} C={6}; truth X={1,2} Y={3,4,5,6}
    res = evaluate(xref(list("AAABBC")), truth(list("XXYYYY")))
    assert (res["true_pairs"], res["predicted_pairs"], res["true_positive_pairs"]) == (7, 4, 2)
    assert (res["false_merge_pairs"], res["missed_pairs"]) == (2, 5)
    assert res["precision"] == pytest.approx(0.5)
    assert res["recall"] == pytest.approx(2 / 7)
    assert res["f1"] == pytest.approx(4 / 11)
    assert (res["predicted_entities"], res["true_entities"]) == (3, 2)
    perfect = evaluate(xref(list("AAABBC")), truth(list("XXXYYZ")))
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)


def test_errors_are_counted_by_cause():
    records = pd.DataFrame({
        "source_system": ["s"] * 6, "source_record_id": [k[1] for k in KEYS],
        "id_number": [make_id("1980-01-01", "011")] * 2 + [None, make_id("1990-01-01", "013"),
                                                           make_id("1990-01-01", "013"), None],
        "id_number_status": ["valid", "valid", "missing", "valid", "valid", "missing"],
        "id_number_note": [None] * 6,
        "name": ["甲", "甲", "乙", "乙", "乙", "乙"], "name_pinyin": ["jia"] * 2 + ["yi"] * 4,
        "sex": ["1"] * 6, "birth_date": [dt.date(1980, 1, 1)] * 2 + [dt.date(1990, 1, 1)] * 4})
    res = evaluate(xref(list("AAABBC")), truth(list("XXYYYY")), records=records)
    assert res["false_merges_by_cause"] == {"missing_id": 2}
    assert res["misses_by_cause"] == {"missing_id": 5}


def test_namesake_and_twin_false_merges():
    records = pd.DataFrame({
        "source_system": ["s"] * 4, "source_record_id": [k[1] for k in KEYS[:4]],
        "id_number_status": ["valid"] * 4,
        "id_number": [make_id("1980-01-01", "011"), make_id("1985-01-01", "011"),
                      make_id("1990-01-01", "013"), make_id("1990-01-01", "015")],
        "name": ["张伟", "张伟", "李明", "李亮"], "name_pinyin": [None] * 4, "sex": ["1"] * 4,
        "birth_date": [dt.date(1980, 1, 1), dt.date(1985, 1, 1), dt.date(1990, 1, 1),
                       dt.date(1990, 1, 1)]})
    res = evaluate(xref(list("AABB")), truth(list("WXYZ")), records=records)
    assert res["false_merges_by_cause"] == {"namesake": 1, "twin": 1}
    assert res["misses_by_cause"] == {}


def test_record_causes_from_std_columns():
    g = make_id("1985-07-20", "022")
    records = pd.DataFrame({
        "id_number": [g, "110105198507200221", None, g, None],
        "id_number_status": ["valid", "invalid", "missing", "repaired", "missing"],
        "id_number_note": [None, "bad_check_digit", None, "upgraded_15", None],
        "name": ["李小明", "王芳", "王芳", "王芳", None], "name_pinyin": ["lixiaoming", "wangfang",
                                                                "wangfang", "wangfang", "wangfang"],
        "sex": ["1", "2", "2", "2", "2"],
        "birth_date": [dt.date(2015, 3, 1), None, None, dt.date(1985, 7, 20), None]})
    assert record_causes(records).tolist() == ["guardian_id", "typo_id", "missing_id",
                                               "fifteen_digit", "missing_id"]


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="truth lacks column.*true_person_id"):
        evaluate(xref(list("AB")), pd.DataFrame({"source_system": ["s"],
                                                 "source_record_id": ["r1"]}))


def test_evaluate_run_reads_the_run_and_the_world(tmp_path):
    from govdata.evaluate import evaluate_run

    lake, world = tmp_path / "lake", tmp_path / "world"
    (lake / "r1" / "link").mkdir(parents=True)
    (lake / "r1" / "std").mkdir()
    (world / "truth").mkdir(parents=True)
    xref(list("AAB")).to_parquet(lake / "r1" / "link" / "person_xref.parquet")
    truth(list("XYY")).to_parquet(world / "truth" / "persons.parquet")
    pd.DataFrame({"source_system": ["s"] * 3, "source_record_id": ["r1", "r2", "r3"],
                  "kind": ["person"] * 3, "id_number": [None] * 3,
                  "id_number_status": ["missing"] * 3, "name": ["甲"] * 3}
                 ).to_parquet(lake / "r1" / "std" / "s.parquet")
    res = evaluate_run(world, {"run_id": "r1"}, lake=str(lake))
    assert res["person"]["true_positive_pairs"] == 0
    assert res["person"]["false_merges_by_cause"] == {"missing_id": 1}
    assert res["person"]["misses_by_cause"] == {"missing_id": 1}
    assert "missing" in res["enterprise"]["error"]
