import pandas as pd

from govdata.stages import stale_reviews


def queue(*rows):
    cols = ["pair_id", "entity", "left_source_system", "left_source_record_id", "right_source_system",
            "right_source_record_id", "status", "run_id"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows]).astype("string")


PREVIOUS = queue(("p1", "person", "gongan", "1", "weijian", "9", "open", "r1"),
                 ("p2", "person", "shebao", "2", "weijian", "8", "open", "r1"),
                 ("p3", "person", "shebao", "3", "weijian", "7", "decided", "r1"),
                 ("p4", "person", "minzheng", "4", "weijian", "6", None, "r1"))


def test_a_full_run_closes_every_open_question_it_did_not_ask_again():
    closed = stale_reviews(PREVIOUS, pd.Series(["p2"]), {"p1"}, None, "r2")
    assert closed[["pair_id", "status", "run_id"]].values.tolist() == [["p1", "decided", "r2"],
                                                                        ["p4", "superseded", "r2"]]


def test_an_incremental_run_closes_only_questions_about_records_it_relinked():
    relinked = pd.Series(["weijian\x1f6", "gongan\x1f5"])
    closed = stale_reviews(PREVIOUS, pd.Series([], dtype="string"), set(), relinked, "r2")
    assert closed[["pair_id", "status"]].values.tolist() == [["p4", "superseded"]]
