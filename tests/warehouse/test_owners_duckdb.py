"""Identifier holders computed in DuckDB (warehouse/owners.py): the agreement rules on small
records with exact values, and lake files scanned by DuckDB (facts.LakePart) giving what the
same records give as frames."""
from __future__ import annotations

from datetime import date

import pandas as pd
from govdata.transforms.privacy import token
from govdata.warehouse.facts import LakePart, lean_parts_of_kind
from govdata.warehouse.owners import (
    HOLDER_COLUMNS,
    identifier_holders,
    identifier_owners,
    resolve_owners,
)

KEY = bytes.fromhex("33" * 32)
ID = "110105199903070013"        # born 1999-03-07, digit 17 = 1: sex 1
ODD = "110105ABCD030700X3"       # birth digits not a number, digit 17 not a digit: agrees on nothing encoded
USCC = "91110105MA01ABCDE1"      # region 110105, organisation code MA01ABCDE


def tok(value: str) -> str:
    return token(pd.Series([value], dtype="string"), KEY).iloc[0]


def person_records() -> tuple[pd.DataFrame, pd.DataFrame]:
    std = pd.DataFrame({
        "source_system": ["a", "a", "b", "b", "c"],
        "source_record_id": ["1", "2", "3", "4", "5"],
        "kind": "person",
        "id_number": [ID, ID, ID, ID, ODD],
        "name": ["王五", "李四", None, "张三", "赵六"],
        "name_pinyin": ["wang wu", "li si", "li si", "zhang san", None],
        "sex": ["1", "1", "2", "1", "1"],
        "birth_date": [date(1999, 3, 7), date(1999, 3, 7), date(1999, 3, 7), date(2000, 1, 1), date(1999, 3, 7)],
    })
    xref = pd.DataFrame({"source_system": std["source_system"], "source_record_id": std["source_record_id"],
                         "person_id": ["P1", "P2", "P3", "P3", "P4"]})
    return std, xref


def rows(holders: pd.DataFrame) -> list[list]:
    out = holders.sort_values(["identifier_token", "master_id"])
    return [[t, m, int(a), int(r)] for t, m, a, r in out[["identifier_token", "master_id", "agreement", "records"]]
            .itertuples(index=False)]


def test_the_holder_name_is_the_smallest_of_the_most_frequent_best_encoded_names():
    std, xref = person_records()
    # birth+sex agree for P1, P2 (3) and the holder's name is 李四 (a tie with 王五: the smaller);
    # P3: birth only (4, pinyin "li si" is not the name 李四) and birth-less 张三 (sex: 2); P4 nothing
    assert rows(identifier_holders(xref, [std], "person", KEY)) == sorted([
        [tok(ID), "P1", 6, 1], [tok(ID), "P2", 7, 1], [tok(ID), "P3", 4, 2], [tok(ODD), "P4", 1, 1]])


def test_records_without_a_master_or_an_identifier_hold_nothing():
    std, xref = person_records()
    std.loc[1, "id_number"] = None                       # P2's record: no ID number
    holders = identifier_holders(xref[xref["person_id"] != "P4"], [std], "person", KEY)
    # 王五 is now the only best-encoded name; ODD's record has no master
    assert rows(holders) == sorted([[tok(ID), "P1", 7, 1], [tok(ID), "P3", 4, 2]])


def test_enterprises_agree_on_region_and_organisation_code():
    std = pd.DataFrame({"source_system": ["s", "t", "t"], "source_record_id": ["1", "2", "3"], "kind": "enterprise",
                        "uscc": [USCC, USCC, USCC], "name": ["甲公司", "甲公司", "乙公司"],
                        "region_code": ["110105", "110106", "110105"], "org_code": ["MA01ABCDE", "MA01ABCDE", None]})
    xref = pd.DataFrame({"source_system": std["source_system"], "source_record_id": std["source_record_id"],
                         "enterprise_id": ["E1", "E2", "E3"]})
    assert rows(identifier_holders(xref, [std], "enterprise", KEY)) == sorted([
        [tok(USCC), "E1", 7, 1], [tok(USCC), "E2", 3, 1], [tok(USCC), "E3", 4, 1]])


def test_lake_files_scanned_by_duckdb_hold_what_their_frames_hold(tmp_path):
    from govdata.lake import write_parquet
    from govdata.stages.load import SourceFrames

    std, xref = person_records()
    other = std.assign(source_system="d", kind=["person", "application", "person", "person", "person"])
    text_dates = std.assign(source_system="e", birth_date=std["birth_date"].astype(str))   # not a date column
    sources = SourceFrames([{"source": n, "kind": "person", "current_path": write_parquet(f, str(tmp_path / f"{n}.parquet"))}
                            for n, f in (("a", std), ("d", other), ("e", text_dates))])
    xref = pd.concat([xref, xref.assign(source_system="d"), xref.assign(source_system="e")], ignore_index=True)
    parts = list(lean_parts_of_kind(sources, "person", HOLDER_COLUMNS))
    assert [type(p).__name__ for p in parts] == ["LakePart", "LakePart", "DataFrame"]
    assert parts[0] == LakePart(sources.paths["a"], "person", tuple(c for c in HOLDER_COLUMNS if c in std))
    from_lake = identifier_holders(xref, lean_parts_of_kind(sources, "person", HOLDER_COLUMNS), "person", KEY)
    frames = [std, other[other["kind"] == "person"], text_dates]
    assert rows(from_lake) == rows(identifier_holders(xref, frames, "person", KEY))
    # d's second record is an application: 王五 (3 best-encoded records) outnumbers 李四 (2)
    assert rows(from_lake) == sorted([[tok(ID), "P1", 7, 3], [tok(ID), "P2", 6, 2], [tok(ID), "P3", 4, 6],
                                      [tok(ODD), "P4", 1, 3]])
    owners, changes = identifier_owners(xref, lean_parts_of_kind(sources, "person", HOLDER_COLUMNS), "person", KEY,
                                        {}, "r1")
    assert owners[["identifier_token", "master_id", "agreement", "assigned_run", "entity"]].values.tolist() == sorted([
        [tok(ID), "P1", 7, "r1", "person"], [tok(ODD), "P4", 1, "r1", "person"]])
    assert changes["reason"].tolist() == ["new_identifier", "new_identifier"]


def test_the_first_claim_of_a_token_counts_and_a_claim_without_a_run_gets_this_one():
    holders = pd.DataFrame({"identifier_token": ["t1", "t1", "t2"], "master_id": ["P1", "P2", "P3"],
                            "agreement": [7, 7, 5], "records": [1, 2, 1]})
    previous = pd.DataFrame({"identifier_token": ["t1", "t1", "t2", None], "master_id": ["P1", "P2", "P3", "P9"],
                             "assigned_run": ["r0", "r0", None, "r0"]})
    owners, changes = resolve_owners(holders, previous, pd.Series(["P1", "P2", "P3"]), "r1")
    # t1: P1 claimed first and agrees as well as P2 (who has more records): P1 stays
    assert owners.values.tolist() == [["t1", "P1", 7, "r0"], ["t2", "P3", 5, "r1"]]
    assert changes.empty


def test_the_xref_read_from_its_lake_file_gives_the_owners_its_frame_gives(tmp_path):
    from govdata.lake import write_parquet

    std, xref = person_records()
    path = write_parquet(xref.assign(match_score=1.0), str(tmp_path / "person_xref.parquet"))
    from_file, changes = identifier_owners([path], [std], "person", KEY, {}, "r1")
    from_frame, _ = identifier_owners(xref, [std], "person", KEY, {}, "r1")
    # a tie of best-encoded names: 李四 (P2) is the smaller
    assert from_file.values.tolist() == from_frame.values.tolist() == sorted([
        [tok(ID), "P2", 7, "r1", "person"], [tok(ODD), "P4", 1, "r1", "person"]])
    assert changes["reason"].tolist() == ["new_identifier", "new_identifier"]


def test_owner_lookup_gives_each_identifier_its_token_and_owner_in_order_and_null_for_the_others():
    from govdata.evaluate import scratch_db
    from govdata.transforms.privacy import token
    from govdata.warehouse.owners import owner_lookup

    key = bytes(range(32))
    t1, t2, t3 = (token(pd.Series([i], dtype="string"), key).iloc[0] for i in ("ID1", "ID2", "ID3"))
    owners = pd.DataFrame({"identifier_token": [t1, t2, t3], "master_id": ["P1", "P2", None]},
                          dtype="string[pyarrow]")
    with scratch_db() as (con, _):
        lookup = owner_lookup(con, owners, "_owners", key)
        tokens, got = lookup(pd.Series(["ID2", None, "ID9", "ID1", "ID2", "ID3"], index=[5, 4, 3, 2, 1, 0],
                                       dtype="string"))
        assert (got.dtype, tokens.dtype) == ("string", "string")
        assert (got.dtype.storage, tokens.dtype.storage) == ("pyarrow", "pyarrow")   # no Python str per value
        assert got.index.tolist() == tokens.index.tolist() == [5, 4, 3, 2, 1, 0]
        assert got.tolist() == ["P2", pd.NA, pd.NA, "P1", "P2", pd.NA]
        assert tokens.tolist() == [t2, pd.NA, token(pd.Series(["ID9"], dtype="string"), key).iloc[0], t1, t2, t3]
        assert [s.tolist() for s in lookup(pd.Series([], dtype="string"))] == [[], []]
        # many rows, in an order DuckDB's threads would not keep by themselves
        many = pd.Series([f"ID{(i * 7919) % 300_000}" for i in range(300_000)], dtype="string")
        many_tokens, many_owners = lookup(many)
        assert many_tokens.tolist() == token(many, key).tolist()
        assert many_owners.tolist() == ["P1" if v == "ID1" else "P2" if v == "ID2" else pd.NA for v in many]
