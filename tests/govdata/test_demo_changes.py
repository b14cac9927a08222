import sqlite3

import yaml

from govdata.demo_changes import LATER, change_world, main
from govdata.demo_data import generate


def test_a_day_of_changes_touches_the_share_asked_and_stamps_it(tmp_path):
    generate(tmp_path, persons=300, seed=5)
    with sqlite3.connect(tmp_path / "departments" / "gongan.sqlite") as con:
        before = con.execute("select count(*) from T_RK_JBXX").fetchone()[0]
    changes = change_world(tmp_path, share=0.1, seed=1)
    # every incremental person department (canlian is a full snapshot without ID numbers)
    assert set(changes) == {"churujing", "gongan", "minzheng", "shebao", "weijian", "zhengwu_sqr"}
    g = changes["gongan"]
    n = int(before * 0.1)
    assert (g["phone_changed"], g["id_lost"], g["registered_again"]) == (n // 2, n // 4, n - n // 2 - n // 4)
    with sqlite3.connect(tmp_path / "departments" / "gongan.sqlite") as con:
        stamped = con.execute("select count(*) from T_RK_JBXX where ZHGXSJ = ?", (LATER,)).fetchone()[0]
        again = con.execute("select count(*) from T_RK_JBXX where RKBH like 'NEW%' and SFZHM is null").fetchone()[0]
        after = con.execute("select count(*) from T_RK_JBXX").fetchone()[0]
    assert stamped == n and again == g["registered_again"] and after == before + again


def test_a_second_day_of_changes_registers_again_under_keys_not_yet_used(tmp_path):
    # a bench reusing a world a previous bench changed: the new text keys must not collide
    generate(tmp_path, persons=300, seed=5)
    first = change_world(tmp_path, share=0.1, seed=1)["gongan"]["registered_again"]
    changes = change_world(tmp_path, share=0.1, seed=2)
    second = changes["gongan"]["registered_again"]
    with sqlite3.connect(tmp_path / "departments" / "gongan.sqlite") as con:
        new = con.execute("select count(distinct RKBH) from T_RK_JBXX where RKBH like 'NEW%'").fetchone()[0]
        day_two = con.execute("select count(*) from T_RK_JBXX where ZHGXSJ = '2099-01-02 00:00:00'").fetchone()[0]
        newest = con.execute("select max(ZHGXSJ) from T_RK_JBXX").fetchone()[0]
    assert new == first + second > first
    # and a day later than the first, or the watermark the first day left sees none of it
    g = changes["gongan"]
    assert newest == "2099-01-02 00:00:00" and day_two == g["phone_changed"] + g["id_lost"] + g["registered_again"]


def _counts(world, name: str) -> dict[str, int]:
    """What the department's database holds after the changes, counted from the database alone."""
    source = yaml.safe_load((world / "sources" / f"{name}.yaml").read_text(encoding="utf-8"))
    by_element = {element: column for column, element in source["columns"].items()}
    table, stamp, idcol = source["table"], source["incremental"]["column"], by_element["id_number"]
    phone = by_element.get("phone")
    with sqlite3.connect(world / "departments" / f"{name}.sqlite") as con:
        def one(sql: str) -> int:
            return con.execute(sql, (LATER,)).fetchone()[0]

        return {"stamped": one(f'select count(*) from "{table}" where "{stamp}" = ?'),
                "phone_changed": one(f'select count(*) from "{table}" where "{stamp}" = ? and "{phone}" like \'199%\'')
                if phone else 0,
                "without_id": one(f'select count(*) from "{table}" where "{stamp}" = ? and "{idcol}" is null'),
                "rows": con.execute(f'select count(*) from "{table}"').fetchone()[0]}


def test_every_reported_change_is_in_the_database_also_behind_an_integer_key(tmp_path):
    # shebao's SI_PERSON_INFO has an INTEGER primary key: keys bound as numpy int64 (BLOBs)
    # matched no row, and 17 reported changes were never written.
    generate(tmp_path, persons=2000, seed=5)
    before = {name: _counts(tmp_path, name)["rows"]
              for name in ("churujing", "gongan", "minzheng", "shebao", "weijian", "zhengwu_sqr")}
    with sqlite3.connect(tmp_path / "departments" / "shebao.sqlite") as con:
        top = con.execute("select max(person_no) from SI_PERSON_INFO").fetchone()[0]
    changes = change_world(tmp_path, share=0.02, seed=3)
    for name, c in changes.items():
        found = _counts(tmp_path, name)
        assert found == {"stamped": c["phone_changed"] + c["id_lost"] + c["registered_again"],
                         "phone_changed": c["phone_changed"],
                         "without_id": c["id_lost"] + c["registered_again"],
                         "rows": before[name] + c["registered_again"]}, name
    with sqlite3.connect(tmp_path / "departments" / "shebao.sqlite") as con:
        total = con.execute("select count(*) from SI_PERSON_INFO").fetchone()[0]
        new_keys = [r[0] for r in con.execute("select person_no from SI_PERSON_INFO where person_no > ? order by 1", (top,))]
        types = {r[0] for r in con.execute("select typeof(person_no) from SI_PERSON_INFO")}
    s = changes["shebao"]
    n = int(before["shebao"] * 0.02)
    assert (s["phone_changed"], s["id_lost"], s["registered_again"]) == (n // 2, n // 4, n - n // 2 - n // 4)
    assert total == before["shebao"] + s["registered_again"]
    assert new_keys == list(range(top + 1, top + 1 + s["registered_again"])) and types == {"integer"}


def test_the_module_entry_point_prints_the_changes_it_made(tmp_path, capsys):
    import json

    generate(tmp_path, persons=300, seed=5)
    assert main([str(tmp_path), "--share", "0.1", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == sum(sum(c.values()) for c in out["changes"].values())
    assert _counts(tmp_path, "shebao")["stamped"] == sum(out["changes"]["shebao"].values())
