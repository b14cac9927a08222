"""Who holds an ID number: the same judgement whatever order the records come in."""
from __future__ import annotations

import pandas as pd

from govdata.transforms.linkage.common import prepare_records
from govdata.transforms.linkage.person_facts import holder_conflicts, id_facts
from govdata.transforms.linkage.survivorship import trust_rank

from .people import SURVIVORSHIP, make_id, rec

A = make_id("1980-01-02", "123")
B = make_id("1991-07-08", "457")


def conflicts(rows: list[dict]) -> dict[str, bool]:
    df = prepare_records(pd.DataFrame(rows), [], "person records")
    found = holder_conflicts(df, id_facts(df), trust_rank(df["source_system"], SURVIVORSHIP["person"]["trust_order"]))
    return dict(zip(df["source_record_id"], found.tolist()))


def test_a_tie_between_an_ids_holders_is_broken_on_the_pinyin_not_the_row_order():
    # one source files ID A under two unrelated names, once each: equal trust, equal count;
    # the holder is the pinyin first in text order, wherever another ID's record puts "zhang wei"
    other = rec("shebao", "b1", B, "张伟", "zhang wei", "1", "1991-07-08")
    a_wang = rec("shebao", "a1", A, "王芳", "wang fang", "1", "1980-01-02")
    a_zhang = rec("shebao", "a2", A, "张伟", "zhang wei", "1", "1980-01-02")
    expected = {"b1": False, "a1": False, "a2": True}
    assert conflicts([other, a_wang, a_zhang]) == expected
    assert conflicts([a_zhang, a_wang, other]) == expected
