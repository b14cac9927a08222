"""Normalise and snapshot bounded by a chunk (issue 14): the same source normalised and snapshotted
three rows at a time and in one chunk gives the same std, quarantine, current, deleted and changed
files — duplicate keys across chunks, rejected rows and quarantined values included."""
from __future__ import annotations

import pandas as pd
import pytest

from govdata import lake
from govdata.standards.model import SourceConfig
from govdata.standards.registry import load_standards
from govdata.transforms.normalise import normalise_source

STANDARDS = load_standards()
VALID_ID, OTHER_ID = "11010519491231002X", "110105194912310029"
SOURCE = SourceConfig(name="zw", department="政务服务", kind="application", connection="sqlite://", table="T_SQ",
                      primary_key="SQBH", columns={"SQBH": "application_no", "SFZ": "applicant_id_number",
                                                   "MC": "applicant_name", "PJ": "rating", "SX": "legal_limit_days",
                                                   "SJ": "submitted_at"})


@pytest.fixture(autouse=True)
def key_home(tmp_path, monkeypatch):
    for name in ("GOVDATA_TOKEN_KEY", "GOVDATA_TOKEN_KEY_PREVIOUS", "GOVDATA_KEY_FILE", "GOVDATA_LAKE_KMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVDATA_HOME", str(tmp_path / "home"))


def _raw(rows: list[tuple]) -> pd.DataFrame:
    """(key, id number, name, rating, limit days, submitted at, row hash) per row, as extract writes them."""
    frame = pd.DataFrame(rows, columns=["SQBH", "SFZ", "MC", "PJ", "SX", "SJ", "_row_hash"], dtype=object)
    frame.insert(6, "_source_record_id", frame["SQBH"])
    return frame


# 14 rows: with chunks of 3, every fault has a partner in another chunk
RAW = _raw([
    ("A1", VALID_ID, "张三", "5", "10", "2024-03-01 09:00:00", "h00"),
    (None, VALID_ID, "李四", "4", "10", "2024-03-01", "same"),                  # missing key ...
    ("A2", VALID_ID, "王五", "5", "10", "2024-03-02", "h02"),                   # A2: copies disagree
    ("A3", VALID_ID, "赵六", "six", "10", "2024-03-02 10:00:00", "h03"),         # value quarantined
    ("A1", VALID_ID, "张三", "5", "10", "2024-03-01 09:00:00", "h04"),         # identical copy of A1
    ("A4", None, None, "3", "10", "2024-03-03", "h05"),                        # rejected: no applicant
    ("A2", OTHER_ID, "王五", "5", "10", "2024-03-02", "h06"),
    ("NULL", VALID_ID, "钱七", "5", "10", "2024-03-04", "h07"),               # a null token as key
    (None, VALID_ID, "李四", "4", "10", "2024-03-01", "same"),                  # ... again, same row hash
    ("A5\ufffd", VALID_ID, "孙八", "5", "10", "2024-03-04", "h09"),            # undecodable key
    (" A1 ", VALID_ID, "张三", "5", "10", "2024-03-01 09:00:00", "h10"),       # a padded third copy of A1
    ("A6", VALID_ID, "周九", "-1", "abc", "bad date", "h11"),                  # three values quarantined
    ("A7", VALID_ID, "吴十", "5", "10", "2024-03-05", "h12"),
    ("A2", VALID_ID, "王五", "5", "10", "2024-03-02", "h13"),                   # A2 third copy
])


def _normalise(tmp_path, raw: pd.DataFrame, chunk_rows: int, label: str, workers: int = 1) -> dict:
    from govdata.stages.normalise import normalise_file, rejected_rows

    raw_path = lake.write_parquet(raw, str(tmp_path / label / "raw.parquet"))
    std, q = str(tmp_path / label / "std.parquet"), str(tmp_path / label / "quarantine.parquet")
    counts = normalise_file(raw_path, SOURCE, STANDARDS, std, q, chunk_rows, workers)
    return {"raw": raw_path, "std": std, "quarantine": q, "counts": counts, "rejected": rejected_rows(q)}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), na_position="first").reset_index(drop=True)


def test_a_source_normalised_in_chunks_of_three_equals_it_normalised_whole(tmp_path):
    chunked = _normalise(tmp_path, RAW, 3, "chunked")
    whole = _normalise(tmp_path, RAW, 1000, "whole")
    assert chunked["counts"]["chunks"] == 5 and whole["counts"]["chunks"] == 1
    in_memory = normalise_source(RAW, SOURCE, STANDARDS)   # the frame whole, no file at all
    # std: the same rows in the same order, same types
    std = lake.read_parquet(chunked["std"])
    pd.testing.assert_frame_equal(std, lake.read_parquet(whole["std"]))
    as_written = lake.read_parquet(lake.write_parquet(in_memory.standardised, str(tmp_path / "in_memory.parquet")))
    pd.testing.assert_frame_equal(std, as_written)
    assert std["source_record_id"].tolist() == ["A1", "A3", "A6", "A7"]
    # quarantine: the same entries (grouped per chunk, so compared as sets of rows)
    q = lake.read_parquet(chunked["quarantine"])
    pd.testing.assert_frame_equal(_sorted(q), _sorted(lake.read_parquet(whole["quarantine"])))
    q_written = lake.read_parquet(lake.write_parquet(in_memory.quarantine, str(tmp_path / "in_memory_q.parquet")))
    pd.testing.assert_frame_equal(_sorted(q), _sorted(q_written))   # as the source normalised whole wrote it
    rejected = q.loc[q["row_rejected"]].set_index("source_record_id")["reason_code"].to_dict()
    assert rejected == {"A1#2": "duplicate_key", "A1#3": "duplicate_key",        # identical copies: first kept
                        "A2#1": "duplicate_key", "A2#2": "duplicate_key", "A2#3": "duplicate_key",
                        "(missing key)#same": "missing_key", "(missing key)#same#2": "missing_key",
                        "(missing key)#h07": "missing_key", "(undecodable key)#h09": "undecodable",
                        "A4": "missing_required"}
    values = q.loc[~q["row_rejected"]].groupby("source_record_id")["reason_code"].apply(sorted).to_dict()
    assert values == {"A3": ["not_integer"], "A6": ["not_integer", "out_of_range", "unparseable"]}
    for result in (chunked, whole):
        counts = result["counts"]
        assert counts["rows_in"] == 14 == counts["rows_standardised"] + result["rejected"]
    assert chunked["counts"]["reasons"] == whole["counts"]["reasons"] == \
        {k: int(v) for k, v in sorted(in_memory.counts["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))}
    assert chunked["counts"]["values_quarantined"] == whole["counts"]["values_quarantined"] == \
        in_memory.counts["values_quarantined"]


def test_chunks_normalised_in_two_forked_workers_are_written_as_one_process_writes_them(tmp_path):
    one = _normalise(tmp_path, RAW, 3, "one")
    two = _normalise(tmp_path, RAW, 3, "two", workers=2)
    for name in ("std", "quarantine"):   # the same rows in the same order: chunks written in order
        pd.testing.assert_frame_equal(lake.read_parquet(two[name]), lake.read_parquet(one[name]))
    keep = ("rows_in", "rows_standardised", "values_quarantined", "reasons", "chunks")
    assert {k: two["counts"][k] for k in keep} == {k: one["counts"][k] for k in keep}
    assert two["counts"]["chunks"] == 5 and two["counts"]["peak_rss_mb"] > 0


def test_the_stage_reads_its_chunk_size_from_the_environment(tmp_path, monkeypatch):
    from govdata.stages import normalise

    raw = lake.write_parquet(RAW, str(tmp_path / "raw.parquet"))
    yaml = tmp_path / "zw.yaml"
    yaml.write_text("name: zw\ndepartment: 政务服务\nkind: application\nconnection: sqlite://\ntable: T_SQ\n"
                    "primary_key: SQBH\ncolumns:\n" + "".join(f"  {c}: {e}\n" for c, e in SOURCE.columns.items()),
                    encoding="utf-8")
    run = {"lake": str(tmp_path / "lake"), "run_id": "r1"}
    results = {}
    for rows in ("2", "250000"):
        monkeypatch.setenv("GOVDATA_NORMALISE_CHUNK_ROWS", rows)
        results[rows] = normalise({"path": str(yaml), "raw_path": raw, "watermark": None}, {**run, "run_id": f"r{rows}"})
        assert (results[rows]["rows_in"], results[rows]["rows_standardised"], results[rows]["rows_rejected"]) == \
            (14, 4, 10)
    keep = ("rows_in", "rows_standardised", "rows_rejected", "values_quarantined", "quarantine_reasons")
    assert {k: results["2"][k] for k in keep} == {k: results["250000"][k] for k in keep}


def test_the_snapshot_of_chunks_equals_the_snapshot_of_the_whole(tmp_path):
    """Previous state -> this run's, incremental and full, three rows at a time and whole."""
    from govdata.snapshot import advance_snapshot

    first = _normalise(tmp_path, RAW, 3, "first")
    # the next run extracts A3 (its rating now valid), A7 (unchanged), a new A8, A2 (its copies
    # resolved) and A9 (rejected); A1 and A6 are not extracted again
    next_raw = _raw([
        ("A3", VALID_ID, "赵六", "4", "10", "2024-03-02 10:00:00", "n0"),
        ("A7", VALID_ID, "吴十", "5", "10", "2024-03-05", "n1"),
        ("A8", VALID_ID, "郑一", "5", "10", "2024-03-06 00:00:00", "n2"),
        ("A2", VALID_ID, "王五", "5", "10", "2024-03-02", "n3"),
        ("A9", None, None, "5", "10", "2024-03-06", "n4"),                       # rejected
    ])
    out = {}
    for mode, incremental in (("incremental", True), ("full", False)):
        for rows in (3, 1000):
            label = f"{mode}{rows}"
            normalised = _normalise(tmp_path, next_raw, rows, label)
            paths = {k: str(tmp_path / label / f"{k}.parquet") for k in ("current", "deleted", "changed")}
            counts = advance_snapshot(first["std"], normalised["std"], normalised["raw"], incremental,
                                      paths["current"], paths["deleted"], paths["changed"], rows)
            out[label] = (counts, {k: lake.read_parquet(p) for k, p in paths.items()})
    for mode in ("incremental", "full"):
        (c3, f3), (c1, f1) = out[f"{mode}3"], out[f"{mode}1000"]
        assert c3 == c1
        for name in ("current", "deleted", "changed"):
            pd.testing.assert_frame_equal(f3[name], f1[name], obj=f"{mode} {name}")
    counts, files = out["incremental3"]
    # A1, A3, A6, A7 were the state: A1 and A6 stay, A3 changed, A7 did not, A8 and A2 are new
    assert files["current"]["source_record_id"].tolist() == ["A1", "A6", "A3", "A7", "A8", "A2"]
    assert files["changed"]["source_record_id"].tolist() == ["A3", "A8", "A2"]
    assert counts == {"rows": 6, "deleted": 0, "changed": 3}
    counts, files = out["full3"]   # a full snapshot: A1 and A6 were deleted at the source
    assert files["current"]["source_record_id"].tolist() == ["A3", "A7", "A8", "A2"]
    assert files["deleted"]["source_record_id"].tolist() == ["A1", "A6"]
    assert counts == {"rows": 4, "deleted": 2, "changed": 3}
    # the current state keeps std's columns and types
    assert files["current"].dtypes.to_dict() == lake.read_parquet(first["std"]).dtypes.to_dict()
