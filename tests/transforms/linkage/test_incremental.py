"""The relink scope of an incremental run: seeds, their blocking neighbours, whole clusters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from govdata.transforms.linkage import LinkConfig
from govdata.transforms.linkage.incremental import id_holders, reached, relink_scope, whole_clusters
from govdata.transforms.linkage.records import TableRecords
from govdata.transforms.linkage.shared_values import with_shared_counts

from .people import SURVIVORSHIP, make_id, rec
from .test_link_enterprises import ORG1, U1, U2, ent

ORDER = SURVIVORSHIP["person"]["trust_order"]
A = make_id("1980-01-02", "123")
B = make_id("1991-07-08", "456")


def persons() -> pa.Table:
    return table([
        rec("gongan", "g1", A, "张伟", "zhang wei", "1", "1980-01-02", phone="13800000001"),   # 0 P1
        rec("shebao", "s1", A, "张伟", "zhang wei", "1", "1980-01-02"),                        # 1 P1
        rec("weijian", "w1", None, "张伟", "zhang wei", "1", "1980-01-02"),                    # 2 new
        rec("gongan", "g2", B, "李娜", "li na", "2", "1991-07-08", phone="13900000002"),       # 3 P2
        rec("minzheng", "m2", B, "李娜", "li na", "2", "1991-07-08"),                          # 4 P2
        rec("shebao", "s3", None, "王芳", "wang fang", "2", "1975-03-04", phone="13900000002"),  # 5 P3
        rec("gongan", "g4", make_id("1960-05-06", "789"), "赵强", "zhao qiang", "1", "1960-05-06"),  # 6 P4
    ])


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def counted(records: pa.Table) -> TableRecords:
    """Person records as link_plan hands them to the scope: counted over every record."""
    return TableRecords(with_shared_counts(records))


CLUSTER = np.array([0, 0, -1, 1, 1, 2, 3])


def test_whole_clusters_takes_every_member_of_a_touched_cluster():
    mask = np.array([False, True, False, False, False, False, False])
    assert whole_clusters(mask, CLUSTER).tolist() == [True, True, False, False, False, False, False]


def test_a_new_record_pulls_in_the_cluster_it_shares_a_block_with():
    seeds = np.array([False, False, True, False, False, False, False])
    scope = relink_scope(counted(persons()), "person", seeds, CLUSTER, LinkConfig(), ORDER)
    assert np.flatnonzero(scope).tolist() == [0, 1, 2]


def test_a_block_mate_joins_only_when_the_pair_could_link_or_be_reviewed():
    # s3 (王芳) shares 李娜's phone: the pair scores below the review threshold, so a relink
    # of s3 cannot change 李娜's cluster
    seeds = np.array([False, False, False, False, False, True, False])
    scope = relink_scope(counted(persons()), "person", seeds, CLUSTER, LinkConfig(), ORDER)
    assert np.flatnonzero(scope).tolist() == [5]
    # the same phone on a record of 李娜 herself (no ID): it could link, her cluster comes whole
    rows = persons().to_pylist()
    rows[5] = rec("shebao", "s3", None, "李娜", "li na", "2", "1991-07-08", phone="13900000002")
    scope = relink_scope(counted(table(rows)), "person", seeds, CLUSTER, LinkConfig(), ORDER)
    assert np.flatnonzero(scope).tolist() == [3, 4, 5]


def test_no_seed_no_scope():
    scope = relink_scope(counted(persons()), "person", np.zeros(7, dtype=bool), CLUSTER, LinkConfig(), ORDER)
    assert not scope.any()


def test_enterprise_scope_follows_old_identifiers_to_a_fixpoint():
    records = table([
        ent("shichang", "s1", U1, ORG1),                   # 0 E1
        ent("shuiwu", "t1", tax="110105" + ORG1),           # 1 E1 (tax number holds ORG1)
        ent("zhengwu", "z1", org=ORG1, core="甲科技", rep="张三"),  # 2 E1
        ent("zhengwu", "z9", core="甲科技", rep="张三"),       # 3 new: name + legal rep of z1
        ent("shichang", "s2", U2),                          # 4 E2
    ])
    cluster = np.array([0, 0, 0, -1, 1])
    seeds = np.array([False, False, False, True, False])
    scope = relink_scope(TableRecords(records), "enterprise", seeds, cluster, LinkConfig(), [])
    assert np.flatnonzero(scope).tolist() == [0, 1, 2, 3]


def test_misaligned_inputs_are_refused():
    with pytest.raises(ValueError, match="align"):
        relink_scope(counted(persons()), "person", np.zeros(3, dtype=bool), CLUSTER, LinkConfig(), ORDER)


def test_candidates_are_a_cheap_superset_and_the_neighbours_exact():
    mask = np.array([True, True, True, False, False, False, False])
    # the ID window (two distinct IDs each side) spans this tiny world's three IDs;
    # s3 shares neither a birth date, a pinyin + year, a phone nor an ID with the mask
    candidates = id_holders(persons(), reached(persons(), [mask], LinkConfig())[0])
    assert np.flatnonzero(candidates).tolist() == [0, 1, 2, 3, 4, 6]
    # but two records held by their own valid IDs are never compared: nothing joins the scope
    scope = relink_scope(counted(persons()), "person", mask, CLUSTER, LinkConfig(), ORDER)
    assert np.flatnonzero(scope).tolist() == [0, 1, 2]


def test_birth_dates_become_the_id_numbers_yyyymmdd_form():
    import pyarrow as pa

    from govdata.transforms.linkage.incremental import _yyyymmdd

    import datetime as dt

    days = pa.chunked_array([pa.array([dt.date(1980, 5, 12), None], pa.date32())])
    assert _yyyymmdd(days).to_pylist() == ["19800512", None]
    stamps = pa.chunked_array([pa.array([dt.datetime(1980, 5, 12, 23, 59)], pa.timestamp("s"))])
    assert _yyyymmdd(stamps).to_pylist() == ["19800512"]


def _crowd(seed: int) -> pa.Table:
    """Persons sharing few birth dates, names and phones (crowded blocks), each with records in
    several sources: some without an ID, some filed under another person's ID."""
    rng = np.random.default_rng(seed)
    births = ["1980-01-02", "1980-01-03", "1991-07-08"]
    names = [("张伟", "zhang wei"), ("张薇", "zhang wei"), ("李娜", "li na"), ("王芳", "wang fang")]
    people = [(names[rng.integers(len(names))], births[rng.integers(len(births))], f"{100 + i:03d}",
               f"139{rng.integers(10):08d}") for i in range(40)]
    rows = []
    for i, ((name, pinyin), birth, seq, phone) in enumerate(people):
        for j, source in enumerate(ORDER[:rng.integers(1, 5)]):
            own = make_id(birth, seq)
            if rng.random() < 0.25:
                own = None                                   # the ID is lost
            elif rng.random() < 0.1:
                own = make_id(people[(i + 1) % len(people)][1], people[(i + 1) % len(people)][2])   # a borrowed ID
            rows.append(rec(source, f"{source}{i}_{j}", own, name, pinyin, "1" if int(seq) % 2 else "2", birth,
                            phone=phone if rng.random() < 0.5 else None))
    return table(rows)


def _scope_over_all_records(records: pa.Table, scope: np.ndarray, cfg: LinkConfig) -> np.ndarray:
    """The relink scope's neighbours as first built: held flags and the comparison view over
    every record, then the queued records' scored partners and ID sharers."""
    from govdata.transforms.linkage.common import prepare_records
    from govdata.transforms.linkage.incremental import partners_scoring, scope_pairs
    from govdata.transforms.linkage.person_blocking import comparison_view
    from govdata.transforms.linkage.person_facts import holder_conflicts, id_facts
    from govdata.transforms.linkage.persons import PERSON_COLS
    from govdata.transforms.linkage.survivorship import trust_rank

    df = prepare_records(records.to_pandas(), PERSON_COLS, "person records")
    facts = id_facts(df)
    conflict = holder_conflicts(df, facts, trust_rank(df["source_system"], ORDER))
    view = comparison_view(df, facts, conflict, cfg)
    out = scope.copy()
    pairs = scope_pairs(view, np.flatnonzero(scope), facts["usable"].to_numpy() & ~conflict, cfg)
    out[partners_scoring(view, pairs, conflict, cfg)] = True
    return out | df["id_number"].isin(df["id_number"][scope].dropna()).to_numpy()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_person_scope_is_the_scope_over_every_record(seed):
    from govdata.transforms.linkage.incremental import person_scope

    records = _crowd(seed)
    rng = np.random.default_rng(seed)
    grew = 0
    for _ in range(8):
        seeds = rng.random(records.num_rows) < 0.05
        expected = _scope_over_all_records(records, seeds, LinkConfig())
        assert person_scope(counted(records), seeds, LinkConfig(), ORDER).tolist() == expected.tolist()
        grew += int(expected.sum() > seeds.sum())
    assert grew >= 4   # the scopes reach past their seeds


def test_blocks_pairs_come_in_batches_with_the_same_result(monkeypatch):
    import govdata.transforms.linkage.person_blocking as blocking

    records, seeds = _crowd(1), np.random.default_rng(1).random(_crowd(1).num_rows) < 0.2
    code = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    queue = np.array([0, 3, 5, 8])
    whole = [np.concatenate(side) for side in zip(*blocking._pairs_sharing(code, code >= 0, queue))]
    monkeypatch.setattr(blocking, "PAIR_BATCH", 3)
    batches = list(blocking._pairs_sharing(code, code >= 0, queue))
    assert [len(left) for left, _ in batches] == [3, 2, 4, 4]   # a queued record's pairs stay together
    assert [np.concatenate(side).tolist() for side in zip(*batches)] == [w.tolist() for w in whole]
    from govdata.transforms.linkage.incremental import person_scope

    assert person_scope(counted(records), seeds, LinkConfig(), ORDER).tolist() == \
        _scope_over_all_records(records, seeds, LinkConfig()).tolist()


def test_pairs_merged_as_they_come_are_each_pair_once_in_order(monkeypatch):
    import govdata.transforms.linkage.incremental as incremental
    import govdata.transforms.linkage.person_blocking as blocking

    parts = [np.array([5, 1, 5]), np.array([9, 1]), np.zeros(0, dtype=np.int64)]
    assert blocking._merge_unique(parts).tolist() == [1, 5, 9]
    assert parts == []   # let go before the sort
    assert blocking._merge_unique([np.zeros(0, dtype=np.int64)]).tolist() == []
    records = _crowd(4)
    rows = np.ones(records.num_rows, dtype=bool)
    usable, conflict = incremental.id_holding(incremental._frame(records, rows, incremental.HOLDING_COLUMNS), ORDER)
    view = incremental._comparison_view(counted(records), rows, usable, conflict, LinkConfig())
    queue, held = np.flatnonzero(np.random.default_rng(4).random(len(view)) < 0.3), usable & ~conflict
    whole = incremental.scope_pairs(view, queue, held, LinkConfig())
    monkeypatch.setattr(blocking, "PAIR_BATCH", 2)   # merged after nearly every batch
    assert len(whole) > 20
    assert incremental.scope_pairs(view, queue, held, LinkConfig()).tolist() == whole.tolist()


def test_repeated_text_is_held_as_codes_and_compared_as_codes():
    import pyarrow as pa

    from govdata.transforms.linkage.compare import region_agree
    from govdata.transforms.linkage.incremental import compact_text
    from govdata.transforms.linkage.persons import _rows

    regions = compact_text(pa.array(["110105", None, "110105", "310101"] * 50, pa.large_string()))
    assert isinstance(regions, pd.Categorical)
    assert list(regions.categories) == ["110105", "310101"]
    assert regions[:4].astype(object).tolist() == ["110105", pd.NA, "110105", "310101"]
    ids = compact_text(pa.array(["110105194912310021", "310101198001010011", None], pa.large_string()))
    assert isinstance(ids, pd.arrays.ArrowStringArray)   # distinct: codes would not save anything
    view = pd.DataFrame({"region": regions})
    left = _rows(view, np.array([3, 1, 0, 2]), ["region"])["region"]
    right = _rows(view, np.array([3, 0, 2, 3]), ["region"])["region"]
    assert left.dtype == regions.dtype and left.astype(object).tolist() == ["310101", pd.NA, "110105", "110105"]
    assert region_agree(left, right).tolist()[::2] == [1.0, 1.0] and np.isnan(region_agree(left, right)[1])
    assert region_agree(left, right)[3] == 0.0


def test_the_view_built_a_chunk_at_a_time_is_the_whole_view(monkeypatch):
    import govdata.transforms.linkage.incremental as incremental

    records = _crowd(2)
    rows = np.random.default_rng(2).random(records.num_rows) < 0.7
    usable, conflict = incremental.id_holding(incremental._frame(records, rows, incremental.HOLDING_COLUMNS), ORDER)
    source = counted(records)
    whole = incremental._comparison_view(source, rows, usable, conflict, LinkConfig())
    monkeypatch.setattr(incremental, "VIEW_CHUNK", 7)
    chunked = incremental._comparison_view(source, rows, usable, conflict, LinkConfig())
    assert len(whole) == int(rows.sum()) > 7 * 3
    pd.testing.assert_frame_equal(chunked, whole)
    # and the scope, its pairs scored a few at a time and its ID holders judged a few groups of
    # ID numbers at a time, is the scope over every record
    monkeypatch.setattr(incremental, "SCOPE_BATCH_PAIRS", 5)
    monkeypatch.setattr(incremental, "HOLDING_SHARE", 6)
    seeds = np.random.default_rng(3).random(records.num_rows) < 0.1
    assert incremental.person_scope(counted(records), seeds, LinkConfig(), ORDER).tolist() == \
        _scope_over_all_records(records, seeds, LinkConfig()).tolist()


def test_an_ids_holders_are_judged_together_whatever_the_share(monkeypatch):
    import govdata.transforms.linkage.incremental as incremental

    # 王芳's record filed under 张伟's ID A contradicts its holder only beside 张伟's records;
    # the number ending 000 is a truncated twin only beside the number it was cut from
    twin = make_id("1975-03-04", "12")[:15]
    cut = twin + "000"
    records = table([
        rec("gongan", "g1", A, "张伟", "zhang wei", "1", "1980-01-02"),
        rec("weijian", "w1", A, "王芳", "wang fang", "1", "1980-01-02"),
        rec("shebao", "s1", A, "张伟", "zhang wei", "1", "1980-01-02"),
        rec("gongan", "g2", B, "李娜", "li na", "2", "1991-07-08"),
        rec("minzheng", "m1", cut, "赵强", "zhao qiang", None, "1975-03-04", status="valid"),
        rec("gongan", "g3", make_id("1975-03-04", "123"), "赵强", "zhao qiang", "1", "1975-03-04"),
    ])
    everyone = np.ones(records.num_rows, dtype=bool)
    whole = incremental._held(records, everyone, ORDER)
    assert whole[3].tolist() == [False, True, False, False, False, False]   # conflict
    assert whole[2].tolist() == [True, True, True, True, False, True]       # usable
    monkeypatch.setattr(incremental, "HOLDING_SHARE", 2)
    assert len(incremental._id_prefix_shares(records, whole[1], 2)) == 3
    shared = incremental._held(records, everyone, ORDER)
    assert [a.tolist() for a in shared] == [a.tolist() for a in whole]
