"""The numpy/Arrow fast paths give the same answers as the straightforward ones: candidate
pairs as recordlinkage's Index, survivorship ties settled by value then record key."""
from __future__ import annotations

import numpy as np
import pandas as pd
import recordlinkage

from transforms.linkage.config import LinkConfig
from transforms.linkage.persons import candidate_pairs
from transforms.linkage.survivorship import golden_records


def _view(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    def ints(k, p_na):
        v = pd.array(rng.integers(0, k, n), dtype="Int64")
        v[rng.random(n) < p_na] = pd.NA
        return v
    ids = pd.Series([f"1101{x:06d}" for x in rng.integers(0, n // 2, n)], dtype="string")
    ids[rng.random(n) < 0.3] = pd.NA
    return pd.DataFrame({"b_birth": ints(n // 4, 0.1), "b_pinyin_year": ints(n // 3, 0.2),
                         "b_phone": ints(n // 2, 0.5), "id_number": ids})


def test_candidate_pairs_match_recordlinkage_index():
    cfg = LinkConfig()
    for seed in range(3):
        view = _view(400, seed)
        queue = np.sort(np.random.default_rng(seed).choice(400, 120, replace=False))
        group = np.arange(400) % 150
        got = candidate_pairs(view, queue, group, cfg)
        indexer = recordlinkage.Index()
        for col in ["b_birth", "b_pinyin_year", "b_phone"]:
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
