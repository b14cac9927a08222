"""Name comparisons for issue 13: latin names in either order, rare-character stand-ins."""
from __future__ import annotations

import numpy as np
import pandas as pd

from govdata.transforms.linkage.compare import WEAK, name_agree, name_order_agree


def S(*values) -> pd.Series:
    return pd.Series(list(values), dtype="string[pyarrow]")


def test_name_agree_levels_exact_weak_disagree_missing():
    got = name_agree(S("王*", "王鸿", "张伟", "李四", None, "王hong", "王岩", "*晓明"),
                     S("王鸿", "王鸿", "张维", "王五", "王五", "王鸿", "王䶮", "李晓明"))
    np.testing.assert_array_equal(got, [WEAK, 1.0, 0.0, 0.0, np.nan, WEAK, WEAK, WEAK])
    assert WEAK == 0.5


def test_name_order_agree_treats_token_swaps_as_agreement():
    got = name_order_agree(
        S("smithjohn", "sanzhang", "zhangsan", "jeanpierredupont", "zhangsan", None),
        S("johnsmith", "zhangsan", "lisi", "pierrejeandupont", "zhangsan", "x"),
        S("SMITH JOHN", "SAN ZHANG", None, "DUPONT JEAN PIERRE", None, None),
        S("JOHN SMITH", None, None, "DUPONT JEAN PIERRE", None, None),
    )
    # smithjohn / johnsmith: a rotation of a latin name's pinyin (two tokens swapped)
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0, 1.0, 1.0, np.nan])


def test_name_order_agree_with_order_free_keys():
    from govdata.transforms.names import latin_name_keys
    keys_l = latin_name_keys(pd.Series(["SMITH JOHN", "Li Wei-Ming"]))
    keys_r = latin_name_keys(pd.Series(["John Smith", "WEI MING LI"]))
    got = name_order_agree(S("smithjohn", "liweiming"), S("johnsmith", "weimingli"), keys_l, keys_r)
    np.testing.assert_array_equal(got, [1.0, 1.0])


def test_latin_agree_takes_either_key_and_never_disagrees():
    from govdata.transforms.linkage.compare import COMPARATORS, latin_agree

    key_l, key_r = pd.Series(["LEE SEOYEON", "DAVIS EMILY", None]), pd.Series(["LEE SEO YEON", "BROWN ANNA", "X"])
    joined_l, joined_r = pd.Series(["LEE SEOYEON", "DAVIS EMILY", None]), pd.Series(["LEE SEOYEON", "BROWN ANNA", "X"])
    np.testing.assert_array_equal(latin_agree(key_l, key_r, joined_l, joined_r), [1.0, np.nan, np.nan])
    assert COMPARATORS["latin_agree"][1] == 2
