"""The numpy/Arrow fast paths give the same answers as the straightforward ones: candidate
pairs as recordlinkage's Index, survivorship ties settled by value then record key."""
from __future__ import annotations

import numpy as np
import pandas as pd
import recordlinkage

from govdata.transforms.linkage.config import LinkConfig
from govdata.transforms.linkage.persons import candidate_pairs
from govdata.transforms.linkage.survivorship import golden_records

BLOCKS = [rule.name for rule in LinkConfig().blocking]


def _view(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    def ints(k, p_na):
        v = pd.array(rng.integers(0, k, n), dtype="Int64")
        v[rng.random(n) < p_na] = pd.NA
        return v
    ids = pd.Series([f"1101{x:06d}" for x in rng.integers(0, n // 2, n)], dtype="string")
    ids[rng.random(n) < 0.3] = pd.NA
    sizes = {"b_birth": (n // 4, 0.1), "b_pinyin_year": (n // 3, 0.2), "b_phone": (n // 2, 0.5)}
    return pd.DataFrame({**{b: ints(*sizes.get(b, (n // 5, 0.8))) for b in BLOCKS}, "id_number": ids})


def test_candidate_pairs_match_recordlinkage_index():
    cfg = LinkConfig()
    for seed in range(3):
        view = _view(400, seed)
        queue = np.sort(np.random.default_rng(seed).choice(400, 120, replace=False))
        group = np.arange(400) % 150
        got = candidate_pairs(view, queue, group, cfg)
        indexer = recordlinkage.Index()
        for col in BLOCKS:
            indexer.block(col)
        indexer.sortedneighbourhood("id_number", window=cfg.sorted_window)
        pairs = indexer.index(view.iloc[queue], view)
        l, r = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
        in_queue = np.isin(np.arange(400), queue)
        keep = (l != r) & (group[l] != group[r]) & ~(in_queue[r] & (r < l))
        assert list(zip(got.get_level_values(0), got.get_level_values(1))) == \
            list(zip(l[keep], r[keep]))


def test_survivorship_full_tie_goes_to_smallest_value_then_smallest_record_key():
    spec = {"trust_order": ["a"], "default": "trust_order", "tiebreak": "most_frequent"}
    df = pd.DataFrame({
        "source_system": ["x", "y", "y", "x", "z"],      # unlisted sources: equal trust
        "source_record_id": ["2", "1", "3", "9", "1"],
        "pid": ["P1", "P1", "P1", "P2", "P2"],
        "name": ["乙", "甲", "乙", "丙", "丙"],
    }).astype("string[pyarrow]")
    g = golden_records(df, "pid", ["name"], spec).set_index("pid")
    # P1: 乙 twice beats 甲 once (most_frequent); of the two 乙 rows x/2 is the smaller key
    assert g.loc["P1", "name"] == "乙" and g.loc["P1", "lineage"] == '{"name": "x"}'
    # P2: same value from x/9 and z/1: the smaller record key (x…) supplies it
    assert g.loc["P2", "name"] == "丙" and g.loc["P2", "lineage"] == '{"name": "x"}'


def test_recode_equals_factorizing_the_masked_values():
    from govdata.transforms.linkage.common import factorize, recode

    rng = np.random.default_rng(0)
    values = pd.Series(rng.choice(["a", "b", "c", "d", None], 300), dtype="string[pyarrow]")
    mask = rng.random(300) < 0.6
    codes, uniques = factorize(values)
    got, old = recode(codes, mask)
    want, want_uniques = pd.factorize(values.where(pd.Series(mask)))
    assert (got == want).all()
    assert list(np.asarray(uniques, dtype=object)[old]) == list(want_uniques)


def test_dense_rank_orders_ids_as_arrows_rank():
    import pyarrow as pa
    import pyarrow.compute as pc

    from govdata.transforms.linkage.person_blocking import _dense_rank

    rng = np.random.default_rng(1)
    ids = pd.Series(rng.choice(["11", "2", "110", "Z", "é", "", None], 200), dtype="string")
    rank, present = _dense_rank(ids)
    want = pc.rank(pa.array(ids.astype(object).where(ids.notna(), None), pa.string()),
                   sort_keys="ascending", tiebreaker="dense").to_numpy() - 1
    assert (present == ids.notna().to_numpy()).all()
    assert (rank[present] == want[present]).all()


def test_birth_close_matches_pandas_date_fields():
    from govdata.transforms.linkage.compare import birth_close

    rng = np.random.default_rng(2)
    n = 5000
    base = rng.integers(-30000, 30000, n)
    left = pd.Series(pd.to_datetime(base, unit="D"))
    right = pd.Series(pd.to_datetime(base + rng.choice([0, 1, -1, 2, 31, 400], n), unit="D"))
    swapped = pd.to_datetime(pd.DataFrame({"year": left.dt.year, "month": left.dt.day.clip(upper=12),
                                           "day": left.dt.month}))
    right = right.where(rng.random(n) > 0.2, swapped)
    left[rng.random(n) < 0.1] = pd.NaT
    right[rng.random(n) < 0.1] = pd.NaT
    diff = (left - right).abs().dt.days
    same = (left.dt.year == right.dt.year) & (left.dt.month == right.dt.day) & \
        (left.dt.day == right.dt.month)
    exact = (diff == 0).fillna(False).to_numpy(dtype=bool)
    near = ((diff == 1) | same).fillna(False).to_numpy(dtype=bool) & ~exact
    present = (left.notna() & right.notna()).to_numpy()
    want = np.where(near, np.nan, np.where(present, exact.astype(float), np.nan))
    assert np.array_equal(birth_close(left, right), want, equal_nan=True)


def test_value_counts_within_masters_by_neighbours_equal_hashed_counts():
    from govdata.transforms.linkage.survivorship import _counts_within

    rng = np.random.default_rng(3)
    gid = np.sort(rng.integers(0, 400, 1000))   # masters of up to a handful of rows
    val = rng.integers(0, 4, 1000)
    by_neighbours = _counts_within(gid, val, 4, 400, grouped=True)
    hashed = _counts_within(gid, val, 4, 400, grouped=False)
    want = pd.Series(gid * 4 + val).map(pd.Series(gid * 4 + val).value_counts()).to_numpy()
    assert (by_neighbours == want).all() and (hashed == want).all()


def test_ecm_fit_is_the_same_on_int8_patterns():
    from govdata.transforms.linkage.config import LinkConfig
    from govdata.transforms.linkage.fellegi_sunter import _small_ints, estimate_mu

    rng = np.random.default_rng(4)
    n = 3000
    match = rng.random(n) < 0.3
    feats = pd.DataFrame({c: np.where(rng.random(n) < np.where(match, 0.9, 0.2), 1.0, 0.0)
                          for c in ["id", "name", "pinyin", "birth"]})
    assert _small_ints(feats.astype(int)).dtypes.eq(np.int8).all()
    m, u, source = estimate_mu(feats, LinkConfig().m_prior, LinkConfig().u_prior, True, 100)
    ecm = recordlinkage.ECMClassifier(init="jaro", max_iter=100)
    ecm.fit(feats.astype(int))
    assert source == "ecm"
    assert all(m[c] == float(np.clip(ecm.m_probs[c][1], 1e-4, 0.99)) for c in feats.columns)


def test_equal_record_keys_get_ids_in_cluster_order():
    from govdata.transforms.linkage.common import assign_stable_ids, hash_id

    # ("a\x1fb", "c") and ("a", "b\x1fc") join to one key text: the smaller cluster label
    # takes the plain hash, the other the next salt
    keys = pd.Series(["a\x1fb\x1fc", "a\x1fb\x1fc", "a\x1fa"], dtype="string[pyarrow]")
    ids, history = assign_stable_ids(keys, np.array([5, 2, 9]), None, None, "person_id", "P",
                                     "person", "r1")
    assert list(ids) == [hash_id("P", "a\x1fb\x1fc\x1f1"), hash_id("P", "a\x1fb\x1fc"),
                         hash_id("P", "a\x1fa")]
    assert history.empty


def test_a_cluster_tied_between_previous_ids_keeps_the_smallest_text():
    from govdata.transforms.linkage.common import assign_stable_ids

    # the ids first appear as P9, PB, P10 (hash codes follow that order, not the text order)
    keys = pd.Series([f"s\x1f{i}" for i in range(7)], dtype="string[pyarrow]")
    prev = pd.DataFrame({"source_system": ["s"] * 7, "source_record_id": [str(i) for i in range(7)],
                         "person_id": ["P9", "PB", "P10", "P9", "PB", "P10", "PB"]})
    cluster = np.array([0, 0, 0, 0, 1, 1, 2])   # 0: P9 x2, PB, P10 tie-free; 1: PB, P10 tied
    ids, history = assign_stable_ids(keys, cluster, None, prev, "person_id", "P", "person", "r2")
    assert list(ids[:4]) == ["P9"] * 4
    assert list(ids[4:6]) == ["P10", "P10"]          # tied 1:1, "P10" < "PB" as text
    assert ids[6] == "PB"
    assert set(zip(history["old_id"], history["new_id"])) == {("P10", "P9"), ("PB", "P9"),
                                                              ("PB", "P10")}


def test_every_comparator_gives_the_same_on_coded_and_text_sides():
    """persons.compare_pairs takes the pairs' rows as codes (coded_text): each text comparator
    must answer exactly as on the strings, missing values, stand-ins and coarse codes included."""
    import pyarrow as pa

    from govdata.transforms.linkage import compare
    from govdata.transforms.linkage.incremental import categorical_text

    def sides(values_l, values_r):
        text = pa.array(values_l + values_r, pa.large_string())
        coded = pd.Series(categorical_text(text))
        plain = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([text])))
        n = len(values_l)
        return (plain[:n].reset_index(drop=True), plain[n:].reset_index(drop=True)), \
               (coded[:n].reset_index(drop=True), coded[n:].reset_index(drop=True))

    names = sides(["王明", "王*", "李四", None, "张三", "SMITH", "王明"], ["王明", "王明", "李五", "李四", None, "SMITH", "汪明"])
    pinyin = sides(["wangming", "sanzhang", "lisi", None, "zhangsan", "smith", "x"],
                   ["wangming", "zhangsan", "liwu", "lisi", None, "smithj", "y"])
    latin = sides([None, "SAN ZHANG", None, None, None, "JOHN SMITH", None],
                  [None, None, None, None, None, "JOHN SMITH", "A B"])
    ids = sides(["110105194912310021", "110105194912310012", None, "1", "310101198001010011", "x", "y"],
                ["110105194912310021", "110105194912310021", "2", None, "310101198001010099", "x", "z"])
    regions = sides(["110105", "110100", None, "310101", "310101", "110000", "3"],
                    ["110105", "110105", "1", "310102", "310101", "110000", "3"])
    sexes = sides(["1", "2", "0", "9", None, "1", "2"], ["1", "1", "1", "9", "2", "1", "2"])
    cfg = LinkConfig()
    for (name, args) in [
        ("exact", [ids]), ("agreement_only", [regions]), ("id_within_edits", [ids]), ("name_agree", [names]),
        ("name_order_agree", [pinyin, latin]), ("pinyin_or_latin_agree", [pinyin, latin, latin]),
        ("latin_agree", [latin, latin]), ("sex_agree", [sexes]), ("region_agree", [regions]),
    ]:
        fn = compare.COMPARATORS[name][0]
        on_text = fn([a[0] for a in args], cfg)
        on_codes = fn([a[1] for a in args], cfg)
        np.testing.assert_array_equal(on_codes, on_text, err_msg=name)
    assert compare.name_agree(*names[1]).tolist()[:3] == [1.0, 0.5, 0.0]
    assert compare.id_within_edits(*ids[1], 2).tolist()[:2] == [1.0, 1.0]
    assert compare.sex_agree(*sexes[1])[:2].tolist() == [1.0, 0.0] and np.isnan(compare.sex_agree(*sexes[1])[2])


def test_reissued_pairs_share_a_document_type():
    from govdata.transforms.linkage.persons import reissued

    view = pd.DataFrame({"document_type": pd.array(["414", None, "414", "511", None], dtype="string[pyarrow]")})
    l, r = np.array([0, 0, 1, 3, 2]), np.array([2, 1, 4, 0, 0])
    assert reissued(view, l, r).tolist() == [True, False, False, False, True]
    coded = pd.DataFrame({"document_type": pd.Categorical(["414", None, "414", "511", None])})
    assert reissued(coded, l, r).tolist() == [True, False, False, False, True]


def test_sorted_unique_is_np_unique():
    from govdata.transforms.linkage.common import distinct_of_sorted, sorted_unique

    values = np.array([5, -1, 5, 3, -1, 9, 0], dtype=np.int64)
    assert sorted_unique(values).tolist() == [-1, 0, 3, 5, 9] and values[0] == 5   # the input is left as it was
    assert sorted_unique(np.zeros(0, dtype=np.int64)).tolist() == []
    assert sorted_unique(np.array([True, False, True])).tolist() == [False, True]
    assert np.isnan(sorted_unique(np.array([1.0, np.nan, np.nan]))).sum() == 1   # non-integers: np.unique
    assert distinct_of_sorted(np.array([1, 1, 2, 7, 7])).tolist() == [1, 2, 7]
