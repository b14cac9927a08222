import sqlite3

from govdata.demo_changes import LATER, change_world
from govdata.demo_data import generate


def test_a_day_of_changes_touches_the_share_asked_and_stamps_it(tmp_path):
    generate(tmp_path, persons=300, seed=5)
    with sqlite3.connect(tmp_path / "departments" / "gongan.sqlite") as con:
        before = con.execute("select count(*) from T_RK_JBXX").fetchone()[0]
    changes = change_world(tmp_path, share=0.1, seed=1)
    assert set(changes) == {"churujing", "gongan", "minzheng", "shebao", "weijian"}
    g = changes["gongan"]
    n = int(before * 0.1)
    assert (g["phone_changed"], g["id_lost"], g["registered_again"]) == (n // 2, n // 4, n - n // 2 - n // 4)
    with sqlite3.connect(tmp_path / "departments" / "gongan.sqlite") as con:
        stamped = con.execute("select count(*) from T_RK_JBXX where ZHGXSJ = ?", (LATER,)).fetchone()[0]
        again = con.execute("select count(*) from T_RK_JBXX where RKBH like 'NEW%' and SFZHM is null").fetchone()[0]
        after = con.execute("select count(*) from T_RK_JBXX").fetchone()[0]
    assert stamped == n and again == g["registered_again"] and after == before + again
