"""Identifier ownership (warehouse/build.py): which master an ID number or USCC — and so a fact —
belongs to, independent of record order and of what a run relinked, kept across runs."""
from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow.parquet as pq
import pytest

from govdata.transforms.privacy import token
from govdata.evaluate import scratch_db
from govdata.warehouse.build import fact_owner_changes, fact_owner_inputs, identifier_holders, identifier_owners, resolve_owners

KEY = bytes.fromhex("22" * 32)
ADULT_ID = "110105199903070013"    # born 1999-03-07, male (digit 17 = 1)
OTHER_ID = "110105198001010026"    # born 1980-01-01, female


def tok(value: str) -> str:
    return token(pd.Series([value], dtype="string"), KEY).iloc[0]


def persons() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The issue's case: a child's health record carries the adult's ID number."""
    std = pd.DataFrame({
        "source_system": ["gongan", "shebao", "weijian", "gongan"],
        "source_record_id": ["1", "2", "3", "4"],
        "id_number": [ADULT_ID, ADULT_ID, ADULT_ID, OTHER_ID],
        "name": ["张伟", "张伟", "张小宝", "李娜"],
        "sex": ["1", "1", "1", "2"],
        "birth_date": [date(1999, 3, 7), date(1999, 3, 7), date(2023, 5, 1), date(1980, 1, 1)],
    })
    xref = pd.DataFrame({"source_system": std["source_system"], "source_record_id": std["source_record_id"],
                         "person_id": ["P_ADULT", "P_ADULT", "P_CHILD", "P_OTHER"]})
    return std, xref


def test_the_holder_agreeing_with_the_id_owns_it_in_any_record_order():
    std, xref = persons()
    holders = identifier_holders(xref, [std], "person", KEY).sort_values(["identifier_token", "master_id"])
    adult = holders[holders["identifier_token"] == tok(ADULT_ID)]
    # birth (4) + sex (2) + the holder's name (1) = 7; the child: sex only = 2
    assert adult[["master_id", "agreement", "records"]].values.tolist() == [["P_ADULT", 7, 2], ["P_CHILD", 2, 1]]
    for seed in range(5):   # any order of records and xref rows: the same owners
        shuffled = std.sample(frac=1, random_state=seed)
        owners, changes = identifier_owners(xref.sample(frac=1, random_state=seed + 9), [shuffled], "person", KEY,
                                            {}, "r1")
        assert dict(zip(owners["identifier_token"], owners["master_id"])) == {
            tok(ADULT_ID): "P_ADULT", tok(OTHER_ID): "P_OTHER"}
        assert sorted(changes["reason"]) == ["new_identifier", "new_identifier"]


def holders(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["identifier_token", "master_id", "agreement", "records"])


def claims(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["identifier_token", "master_id", "assigned_run"])


def test_an_owner_stays_while_it_holds_the_identifier_and_agrees_as_well_as_any():
    h = holders(("t1", "P2", 7, 1), ("t1", "P1", 7, 3),      # tie: previous owner P2 stays
                ("t2", "P3", 7, 1), ("t2", "P4", 3, 5),      # P3 agrees better than the previous P4
                ("t3", "P5", 6, 1),                          # previous P9 gone
                ("t4", "P6", 6, 1),                          # previous P1 lives but no longer holds t4
                ("t5", "P7", 5, 2), ("t5", "P8", 5, 2))      # new: tie on agreement and records → P7
    prev = claims(("t1", "P2", "r0"), ("t2", "P4", "r0"), ("t3", "P9", "r0"), ("t4", "P1", "r0"),
                  ("t6", "P1", "r0"))                        # t6: nobody holds it any more
    live = pd.Series(["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"])
    owners, changes = resolve_owners(h, prev, live, "r1")
    assert owners.sort_values("identifier_token").values.tolist() == [["t1", "P2", 7, "r0"], ["t2", "P3", 7, "r1"], ["t3", "P5", 6, "r1"],
                                      ["t4", "P6", 6, "r1"], ["t5", "P7", 5, "r1"]]
    got = changes.sort_values("identifier_token").astype(object).where(changes.notna(), None).values.tolist()
    assert got == [["t2", "P4", "P3", "better_holder"], ["t3", "P9", "P5", "owner_gone"],
                   ["t4", "P1", "P6", "owner_lost_identifier"], ["t5", None, "P7", "new_identifier"],
                   ["t6", "P1", None, "no_holder"]]
    # the same inputs again (the run's own result as the previous state): nothing moves
    again, moved = resolve_owners(h, owners, live, "r2")
    assert again.values.tolist() == owners.values.tolist() and moved.empty


def test_previous_facts_seed_the_claims_of_a_warehouse_without_identifier_owner():
    std, xref = persons()
    # loaded before identifier_owner existed, with the child as owner (e.g. by record order)
    previous = {"fact_application": pd.DataFrame({
        "source_system": ["hall"], "source_record_id": ["A1"], "applicant_token": [tok(ADULT_ID)],
        "applicant_person_id": ["P_CHILD"], "applicant_enterprise_id": [None]})}
    owners, changes = identifier_owners(xref, [std], "person", KEY, previous, "r2")
    assert owners.set_index("identifier_token").loc[tok(ADULT_ID), "master_id"] == "P_ADULT"
    assert changes[changes["identifier_token"] == tok(ADULT_ID)][["old_owner", "new_owner", "reason"]].values.tolist() \
        == [["P_CHILD", "P_ADULT", "better_holder"]]


@pytest.mark.parametrize("stored_as", ["frames", "parquet"])
def test_identifier_owner_claims_count_before_the_facts_and_facts_claim_only_the_tokens_it_lacks(stored_as, tmp_path):
    std, xref = persons()
    # stored: the adult's ID owned by P_ADULT; the facts (Arrow-backed, as the load reads them)
    # also claim it for the child, and the other ID for a master gone since
    previous = {
        "identifier_owner": pd.DataFrame({"entity": ["person"], "identifier_token": [tok(ADULT_ID)],
                                          "master_id": ["P_ADULT"], "assigned_run": ["r1"]}).astype("string[pyarrow]"),
        "fact_application": pd.DataFrame({
            "source_system": ["hall", "hall"], "source_record_id": ["A1", "A2"],
            "applicant_token": [tok(ADULT_ID), tok(OTHER_ID)], "applicant_person_id": ["P_CHILD", "P_GONE"],
            "applicant_enterprise_id": [None, None]}).astype("string[pyarrow]")}
    if stored_as == "parquet":   # as the load hands them over (previous_owner_state)
        for table, frame in list(previous.items()):
            frame.to_parquet(tmp_path / f"{table}.parquet", index=False)
            previous[table] = str(tmp_path / f"{table}.parquet")
    owners, changes = identifier_owners(xref, [std], "person", KEY, previous, "r2")
    by_token = owners.set_index("identifier_token")
    assert by_token.loc[tok(ADULT_ID), ["master_id", "assigned_run"]].tolist() == ["P_ADULT", "r1"]
    assert by_token.loc[tok(OTHER_ID), "master_id"] == "P_OTHER"
    assert changes[["identifier_token", "old_owner", "new_owner", "reason"]].values.tolist() == \
        [[tok(OTHER_ID), "P_GONE", "P_OTHER", "owner_gone"]]


@pytest.mark.parametrize("stored_as", ["frames", "parquet"])
def test_fact_owner_changes_name_the_reason(stored_as, tmp_path):
    rows = pd.DataFrame({"source_system": "hall", "source_record_id": ["A1", "A2", "A3", "A4"],
                         "applicant_token": ["t1", "t9", "t3", "t4"],
                         "applicant_person_id": ["P2", "P9", "P3", "P4"], "applicant_enterprise_id": None})
    previous = pd.DataFrame({"source_system": "hall", "source_record_id": ["A1", "A2", "A3", "A5"],
                             "applicant_token": ["t1", "t2", "t3", "t5"],
                             "applicant_person_id": ["P1", "P2", "P3", "P5"], "applicant_enterprise_id": None})
    roles = {"person": rows["applicant_token"], "enterprise": pd.Series([None] * 4, dtype="string")}
    masks = {"person": pd.Series(["1101**"] * 4), "enterprise": pd.Series([None] * 4, dtype="string")}
    changes = {"person": pd.DataFrame({"identifier_token": ["t1"], "old_owner": ["P1"], "new_owner": ["P2"],
                                       "reason": ["owner_gone"]})}
    new = fact_owner_inputs("fact_application", rows, roles, masks)
    if stored_as == "parquet":   # as the load writes them: this run's chunks, the previous state
        pq.write_table(new, tmp_path / "new.parquet")
        previous.to_parquet(tmp_path / "previous.parquet", index=False)
        new, previous = str(tmp_path / "new.parquet"), str(tmp_path / "previous.parquet")
    with scratch_db("1GB") as (con, _):
        out = fact_owner_changes(con, "fact_application", new, previous, changes, "r2")
    assert out[["source_record_id", "role", "old_owner", "new_owner", "reason"]].values.tolist() == [
        ["A1", "person", "P1", "P2", "owner_gone"],            # same ID, its owner left
        ["A2", "person", "P2", "P9", "identifier_changed"]]    # the application now carries another ID
    assert set(out["run_id"]) == {"r2"} and set(out["identifier_masked"]) == {"1101**"}


@pytest.mark.parametrize("rows", [100_000])
def test_ownership_is_vectorised(rows):
    import time

    ids = pd.Series([f"1101051990{(i % 12) + 1:02d}{(i % 28) + 1:02d}{i % 1000:03d}{i % 10}" for i in range(rows)])
    std = pd.DataFrame({"source_system": "s", "source_record_id": pd.RangeIndex(rows).astype(str), "id_number": ids,
                        "sex": "1", "birth_date": date(1990, 1, 1), "name": "王"})
    xref = pd.DataFrame({"source_system": "s", "source_record_id": std["source_record_id"],
                         "person_id": "P" + (pd.RangeIndex(rows) // 2).astype(str)})
    start = time.perf_counter()
    owners, _ = identifier_owners(xref, [std], "person", KEY, {}, "r1")
    assert len(owners) == ids.nunique()
    assert time.perf_counter() - start < 20


def test_golden_records_read_in_chunks_build_the_same_dimension_rows(tmp_path):
    """The load reads golden records batch by batch from the lake: the rows equal one whole read."""
    from govdata.lake import write_parquet
    from govdata.stages.load import LinkFrames
    from govdata.warehouse.build import _link_chunks, person_rows

    golden = pd.DataFrame({"person_id": [f"P{i}" for i in range(5)],
                           "id_number": ["110105199001010011", None, "110105199101010022", "110105199001010011", None],
                           "phone": ["13800000001", None, None, "13800000002", None],
                           "name": ["张三", "李四", "王五", "张三", None]})
    link = LinkFrames({"person_golden": write_parquet(golden, str(tmp_path / "person_golden.parquet"))})
    chunks = list(_link_chunks(link, "dim_person", rows=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    parts = [person_rows(c, KEY, "r1") for c in chunks]
    whole = person_rows(golden, KEY, "r1")
    for i in (0, 1):   # the lake's text comes Arrow-backed, the frame's as Python objects
        pd.testing.assert_frame_equal(pd.concat([p[i] for p in parts], ignore_index=True), whole[i], check_dtype=False)
    assert {str(parts[0][0][c].dtype) for c in ("person_id", "name", "person_token", "id_number_masked")} == {"string"}
    assert {parts[0][0][c].dtype.storage for c in ("person_id", "name", "person_token", "id_number_masked")} == {
        "pyarrow"}
    empty = write_parquet(golden.iloc[:0], str(tmp_path / "empty.parquet"))
    assert [len(c.columns) for c in _link_chunks(LinkFrames({"person_golden": empty}), "dim_person")] == [4]


def test_fact_sources_read_in_chunks_hold_the_same_rows(tmp_path):
    """Facts are built a chunk of a source at a time: the chunks together are the source's rows."""
    from govdata.lake import write_parquet
    from govdata.stages.load import SourceFrames
    from govdata.warehouse.facts import _frames_of_kind

    apps = pd.DataFrame({"source_system": ["zhengwu"] * 5, "source_record_id": list("abcde"),
                         "kind": ["application", "application", "person", "application", "application"],
                         "applicant_id_number": ["110105199001010011", None, None, "110105199101010022", None],
                         "accepted_at": pd.to_datetime(["2024-01-02", None, None, "2024-03-04", "2024-05-06"])})
    std = SourceFrames([{"source": "zhengwu", "kind": "application",
                         "current_path": write_parquet(apps, str(tmp_path / "zhengwu.parquet"))}])
    chunks = list(_frames_of_kind(std, "application", one_by_one=True, chunk_rows=2))
    assert [c["source_record_id"].tolist() for c in chunks] == [["a", "b"], ["d"], ["e"]]
    whole = _frames_of_kind(std, "application")[0]
    # the chunks' text is Arrow-backed (no Python str per value), their dates datetime64
    text = ["source_system", "source_record_id", "kind", "applicant_id_number"]
    assert all(str(chunks[0][c].dtype) == "string" and chunks[0][c].dtype.storage == "pyarrow" for c in text)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True),
                                  whole.reset_index(drop=True).astype({c: "string[pyarrow]" for c in text}),
                                  check_dtype=False)


def test_review_pairs_without_a_score_keep_the_score_column_numeric():
    import warnings

    from govdata.warehouse.build import _link_frame

    persons = pd.DataFrame({"pair_id": ["p1"], "score": [0.91]})
    enterprises = pd.DataFrame({"pair_id": ["e1", "e2"], "score": pd.Series([None, None], dtype=object)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # pandas' all-NA concatenation deprecation, once on the run's console
        frame = _link_frame({"person_review": persons, "enterprise_review": enterprises}, "review_queue")
    assert frame["score"].dtype == "float64"
    assert frame["pair_id"].tolist() == ["p1", "e1", "e2"]
    assert frame["score"].iloc[0] == 0.91 and frame["score"].iloc[1:].isna().all()
