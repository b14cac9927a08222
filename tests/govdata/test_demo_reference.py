"""The demo generator's data files: the reference tables in demo_reference/ and the department
templates' table columns in demo_departments/, read as the generator uses them."""
from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from govdata import demo_data, demo_identity
from govdata.demo_data import (
    DEPARTMENTS_DIR,
    REFERENCE_DIR,
    department_table,
    department_template,
    reference_rows,
)
from tests.govdata.demo_world import generated_world, source_doc

SOURCES = sorted(p.stem for p in DEPARTMENTS_DIR.glob("*.yaml"))


def test_reference_tables_keep_their_values_types_and_order() -> None:
    assert len(demo_data.CURRENT_COUNTIES) == 38
    assert demo_data.CURRENT_COUNTIES[0] == ("110101", "北京市", "", "东城区", 3.0)
    assert [c[0] for c in demo_data.ABOLISHED_COUNTIES] == ["110103", "110104", "310103"]
    assert len(demo_data.STREETS) == 30 and demo_data.STREETS[-1] == "丽泽路"
    assert len(demo_data.SURNAMES) == 55
    assert demo_data.SURNAMES[0] == ("王", "wang", 7.1) and demo_data.SURNAMES[-1] == ("诸葛", "zhuge", 0.01)
    assert demo_identity.CANTONESE["欧阳"] == "AU-YEUNG" and demo_identity.WADE_GILES["张"] == "CHANG"
    assert demo_data.GIVEN_CHARS[0] == ("伟", "wei", "m")
    assert [sum(g[2] == sex for g in demo_data.GIVEN_CHARS) for sex in "mfn"] == [34, 31, 12]
    assert demo_data.MINORITY_GIVEN[1] == ("阿依古丽", "AYIGULI") and demo_data.MINORITY_FATHER[-1] == ("伊力", "YILI")
    assert demo_data.ETHNICITIES["05"] == "维吾尔族" and len(demo_data.ETHNICITIES) == 10
    assert demo_data.INDUSTRIES[-1] == ("O80", "家政服务") and len(demo_data.NAME_CORES) == 40
    assert demo_identity.SHOP_TRADES[-1] == ("F52", "烟酒商行")
    # whole numbers stay int (written to service_items.csv as they are), weights float
    assert demo_data.SERVICE_ITEMS[7] == ("S0008", "婚姻登记", 0, "民政局", "person")
    assert demo_data.CERTIFICATE_TYPES[0] == ("居民身份证", "person", "公安局", 20, 0.28)
    assert demo_data.CERT_PREFIX["道路运输经营许可证"] == "DLYS"
    assert list(demo_data.CERT_PREFIX) == [c[0] for c in demo_data.CERTIFICATE_TYPES]


def test_text_codes_keep_their_leading_zeros() -> None:
    assert demo_identity.NATIONALITIES[5] == ("AUS", "036", "LDDDDDDD", "en", 0.04)
    assert demo_identity.TYPE_LABELS["111"][:2] == ("111", "居民身份证")
    assert demo_identity.TYPE_LABELS["permit"] == ("港澳台居民居住证", "990", "其他证件")


def test_name_pools_pair_given_names_and_surnames_per_pool() -> None:
    sizes = {pool: (len(given), len(surnames)) for pool, (given, surnames) in demo_identity.NAME_POOLS.items()}
    assert sizes == {"en": (12, 12), "de": (8, 8), "fr": (8, 8), "ja": (8, 8), "ko": (8, 8), "ru": (8, 8),
                     "in": (8, 8), "ms": (6, 6), "vi": (6, 6), "es": (8, 8)}
    assert demo_identity.NAME_POOLS["en"][1][8] == "SMITH-JONES"
    assert {n[3] for n in demo_identity.NATIONALITIES} == set(demo_identity.NAME_POOLS)


def test_a_rare_character_read_two_ways_keeps_the_last_common_one() -> None:
    assert demo_identity.RARE_FOR["军"] == demo_identity.RARE_FOR["俊"] == "珺"
    assert demo_identity.HOMOPHONE_OF["珺"] == "俊" and demo_identity.HOMOPHONE_OF["玹"] == "萱"


def test_reference_rows_are_read_once() -> None:
    assert reference_rows("streets") is reference_rows("streets")


def test_every_reference_file_is_used_and_described() -> None:
    code = inspect.getsource(demo_data) + inspect.getsource(demo_identity)
    readme = (REFERENCE_DIR / "README.md").read_text(encoding="utf-8")
    tables = sorted(p.stem for p in REFERENCE_DIR.glob("*.csv"))
    assert len(tables) == 18
    assert [t for t in tables if f'"{t}"' not in code] == []
    assert [t for t in tables if f"`{t}.csv`" not in readme] == []


# --- department templates --------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_world(tmp_path_factory, "reference", 60, seed=3)


@pytest.mark.parametrize("source", SOURCES)
def test_databases_have_the_templates_table_columns(world: Path, source: str) -> None:
    template = department_template(source)
    with sqlite3.connect(world / "departments" / f"{source}.sqlite") as con:
        info = list(con.execute(f'PRAGMA table_info("{template["table"]}")'))
    assert {r[1]: r[2] for r in info} == template["table_columns"]
    assert [r[1] for r in info] == list(template["table_columns"])
    assert [r[1] for r in info if r[5]] == [template["primary_key"]]
    assert set(template["columns"]) <= set(template["table_columns"])
    # the table's columns are the generator's business; the source YAML carries the mapping only
    assert "table_columns" not in source_doc(world, source)


def test_a_column_the_template_does_not_declare_is_refused() -> None:
    with pytest.raises(ValueError, match="department gongan: the template's table_columns lack XYZ"):
        department_table("gongan", {"RKBH": np.array(["RK1"], dtype=object), "XYZ": np.array([1])},
                         {"true_person_id": np.array(["TP1"], dtype=object)})


def test_a_declared_column_left_unfilled_is_refused() -> None:
    t = department_table("churujing", {"RYBH": np.array(["E1"], dtype=object), "SFZH": np.array(["1"], dtype=object)},
                         {"true_person_id": np.array(["TP1"], dtype=object)})
    assert t.truth["source_record_id"].tolist() == ["E1"] and t.truth["source_system"].tolist() == ["churujing"]
    with pytest.raises(ValueError, match="churujing: template declares column.s. the generator does not fill: "
                                         "CSRQ, GJ, GXSJ, LXDH, XB, YWXM, ZJLX$"):
        demo_identity.check_table(t)


def test_an_added_column_takes_its_place_from_the_template() -> None:
    t = department_table("churujing", {"RYBH": np.array(["E1"], dtype=object), "SFZH": np.array(["1"], dtype=object)},
                         {"true_person_id": np.array(["TP1"], dtype=object)})
    demo_identity.add_column(t, "ZJLX", np.array(["111"], dtype=object))
    assert list(t.columns) == ["RYBH", "ZJLX", "SFZH"]
