import pandas as pd

from govdata.snapshot import changed_ids, deleted_xref_rows, merge_snapshot

PREV = pd.DataFrame({"source_record_id": ["1", "2", "3"], "name": ["a", "b", "c"]})


def test_incremental_replaces_changed_and_keeps_the_rest():
    changed = pd.DataFrame({"source_record_id": ["2", "4"], "name": ["B", "d"]})
    current, deleted = merge_snapshot(PREV, changed, pd.Series(["2", "4", "3"]), incremental=True)
    # "3" was extracted but rejected: it leaves the state
    assert current.to_dict("list") == {"source_record_id": ["1", "2", "4"], "name": ["a", "B", "d"]}
    assert deleted.empty


def test_full_snapshot_detects_deletions():
    changed = pd.DataFrame({"source_record_id": ["1", "3"], "name": ["a", "c"]})
    current, deleted = merge_snapshot(PREV, changed, pd.Series(["1", "3"]), incremental=False)
    assert current["source_record_id"].tolist() == ["1", "3"]
    assert deleted.tolist() == ["2"]


def test_first_run_has_no_previous_state():
    current, deleted = merge_snapshot(None, PREV, PREV["source_record_id"], incremental=True)
    assert current.equals(PREV) and deleted.empty


def test_deleted_rows_are_marked_with_their_master_id():
    xref = pd.DataFrame({"source_system": ["gongan", "gongan", "shebao"], "source_record_id": ["1", "2", "2"],
                         "person_id": ["P1", "P2", "P2"], "run_id": "r1"})
    marked = deleted_xref_rows(xref, "gongan", pd.Series(["2"], dtype="string"), "r2")
    assert marked[["source_record_id", "person_id", "is_deleted", "run_id"]].values.tolist() == [["2", "P2", True, "r2"]]


def test_changed_ids_are_new_rows_and_rows_whose_values_differ():
    extracted = pd.DataFrame({"source_record_id": ["1", "2", "4"], "name": ["a", "B", "d"]})
    assert changed_ids(PREV, extracted).tolist() == ["2", "4"]


def test_changed_ids_treat_a_new_column_value_and_a_null_as_a_change():
    extracted = pd.DataFrame({"source_record_id": ["1", "3"], "name": [None, "c"]})
    assert changed_ids(PREV, extracted).tolist() == ["1"]


def test_every_row_is_changed_on_the_first_run():
    assert changed_ids(None, PREV).tolist() == ["1", "2", "3"]
