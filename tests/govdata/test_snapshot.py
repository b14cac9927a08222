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


def test_changed_ids_compare_each_value_on_its_own():
    """A timestamp at midnight is the same value whatever the other rows hold (pandas writes
    '2024-01-01' for a column of midnights and '2024-01-01 00:00:00' beside other times, which
    made an unchanged record look changed), and a column whose type changed compares by value."""
    ts = pd.to_datetime(pd.Series(["2024-01-01 00:00:00", "2024-01-02 10:30:00", "2024-01-03 00:00:00"]))
    previous = PREV.assign(updated_at=ts, days=pd.array([5, 6, None], dtype="Int64"))
    extracted = pd.DataFrame({"source_record_id": ["1", "3"], "name": ["a", "c"], "updated_at": ts[[0, 2]].tolist(),
                              "days": ["5", None]})
    assert changed_ids(previous, extracted).tolist() == []
    assert changed_ids(previous, extracted.assign(days=["5", "7"])).tolist() == ["3"]


def test_a_merge_read_one_row_at_a_time_equals_the_merge_of_the_frames():
    import numpy as np
    import pyarrow as pa

    from govdata.snapshot import current_tables, plan_snapshot, table_rows

    previous = pd.DataFrame({"source_record_id": [str(i) for i in range(7)], "name": list("abcdefg")})
    changed = pd.DataFrame({"source_record_id": ["2", "5", "9"], "name": ["C", "f", "j"], "extra": ["x", None, "z"]})
    extracted = pa.table({"_source_record_id": ["2", "5", "9", "4"]})   # 4 extracted but now rejected
    plans, currents = [], []
    for rows in (1, None):
        prev, std = table_rows(previous, rows), table_rows(changed, rows)
        plan = plan_snapshot(prev, std, table_rows(extracted, rows), incremental=True)
        schema, tables = current_tables(plan, prev, std)
        plans.append(plan)
        currents.append(pa.Table.from_batches([b for t in tables for b in t.to_batches()], schema=schema).to_pandas())
    assert np.array_equal(plans[0].kept, plans[1].kept) and plans[0].changed.equals(plans[1].changed)
    pd.testing.assert_frame_equal(currents[0], currents[1])
    assert currents[0]["source_record_id"].tolist() == ["0", "1", "3", "6", "2", "5", "9"]
    assert currents[0]["extra"].tolist() == [None, None, None, None, "x", None, "z"]   # a new column: NULL before
    assert plans[0].changed.to_pylist() == ["2", "9"]                                    # "5" kept its value


def test_every_extracted_row_rejected():
    """Nothing standardised: an incremental run keeps the rest of the state, a full one empties
    it and sees every other record deleted (NULL ids of keyless rows match nothing)."""
    nothing = PREV.iloc[0:0]
    extracted = pd.Series(["2", None], dtype="string")
    current, deleted = merge_snapshot(PREV, nothing, extracted, incremental=True)
    assert current["source_record_id"].tolist() == ["1", "3"] and deleted.empty
    current, deleted = merge_snapshot(PREV, nothing, extracted, incremental=False)
    assert current.empty and list(current.columns) == list(PREV.columns) and deleted.tolist() == ["1", "3"]
    assert changed_ids(PREV, nothing).empty
