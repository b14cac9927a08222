"""`govdata sources suggest` recognises columns by their values on departments it has never seen."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import yaml

from govdata.demo_data import generate
from govdata.profiling import profile_column
from govdata.suggest import suggest_sources
from govdata.standards.registry import load_standards


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("suggest")
    generate(out, persons=300, seed=3)
    return out


def _proposal(world, source: str) -> dict:
    url = f"sqlite:///{world / 'departments' / f'{source}.sqlite'}"
    (text,) = suggest_sources(url, load_standards()).values()
    return yaml.safe_load(text)


def test_pinyin_initial_columns_of_the_population_register(world):
    proposal = _proposal(world, "gongan")
    assert proposal["kind"] == "person"
    assert proposal["primary_key"] == "RKBH"
    columns = proposal["columns"]
    assert columns["SFZHM"] == "id_number"
    assert columns["XM"] == "name"
    assert columns["XBDM"] == "sex"
    assert columns["CSRQ"] == "birth_date"
    assert columns["LXDH"] == "phone"


def test_english_columns_with_legacy_ids_and_chinese_sex_words(world):
    columns = _proposal(world, "shebao")["columns"]
    assert columns["id_card"] == "id_number"   # 15-digit and mistyped IDs still pass the rate
    assert columns["gender"] == "sex"
    assert columns["birthday"] == "birth_date"


def test_enterprise_table_is_recognised_by_uscc(world):
    proposal = _proposal(world, "shichang")
    assert proposal["kind"] == "enterprise"
    elements = set(proposal["columns"].values())
    assert {"uscc", "name", "legal_rep_id_number", "legal_rep_name"} <= elements


def test_evidence_is_written_as_comments(world):
    url = f"sqlite:///{world / 'departments' / 'gongan.sqlite'}"
    (text,) = suggest_sources(url, load_standards()).values()
    line = next(l for l in text.splitlines() if l.strip().startswith("SFZHM:"))
    assert "# GB 11643 check digit passes (100% of non-empty sample values)" in line


def test_column_profile_on_inline_values():
    import pandas as pd

    standards = load_standards()
    assert [e.element for e in profile_column(pd.Series(["男", "女", "女", None]), standards)] == ["sex"]
    assert [e.element for e in profile_column(pd.Series(["13812345678", "+86 13912345678"]), standards)] == ["phone"]
    assert profile_column(pd.Series(["", None]), standards) == []


DEPARTMENTS = ["churujing", "gongan", "minzheng", "shebao", "shichang", "shuiwu", "weijian", "zhengwu", "zhengzhao",
               "zhengwu_sqr"]
# canlian (the disability register) is a full snapshot without an incremental column, so it is
# only in the world's list.
WORLD_DEPARTMENTS = sorted([*DEPARTMENTS, "canlian"])
# Columns the demo YAMLs leave unmapped — churujing.GJ nationality, gongan.ZXBZ cancellation
# flag, zhengwu.SXMC service item name next to its code — must stay unmapped, which the equality
# below asserts as well. Document types written as a mix of GA/T 2000.156 codes, labels and
# aliases in one column (111, 居民身份证, 护照 ...) are recognised as id_type.


@pytest.mark.parametrize("source", DEPARTMENTS)
def test_every_column_of_each_demo_department_is_mapped_as_its_source_yaml(world, source):
    expected = yaml.safe_load((world / "sources" / f"{source}.yaml").read_text(encoding="utf-8"))
    proposal = _proposal(world, source)
    assert proposal["kind"] == expected["kind"]
    assert proposal["table"] == expected["table"]
    assert proposal["primary_key"] == expected["primary_key"]
    columns = set(expected["columns"]) | set(proposal["columns"])
    assert {c: proposal["columns"].get(c) for c in columns} == {c: expected["columns"].get(c) for c in columns}
    assert proposal["incremental"] == {"column": expected["incremental"]["column"]}


def test_demo_world_has_the_eleven_departments(world):
    assert sorted(p.stem for p in (world / "sources").glob("*.yaml")) == WORLD_DEPARTMENTS


def test_coded_address_and_time_evidence_reads_as_integers(world):
    url = f"sqlite:///{world / 'departments' / 'gongan.sqlite'}"
    (text,) = suggest_sources(url, load_standards()).values()
    lines = {l.split(":")[0].strip(): l for l in text.splitlines() if l.startswith("  ")}
    assert "ethnicity codes" in lines["MZDM"]
    assert "Chinese address" in lines["HJDZ"]
    birth = lines["CSRQ"]
    assert "years 19" in birth and ".0" not in birth
    assert text.splitlines()[-1] == "# not recognised: ZXBZ"   # a 0/1 flag is no sex code (no 2)


def _department(path, rows: list[tuple]) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE RY (BH TEXT, ZJLX TEXT, ZJHM TEXT, XM TEXT, GXSJ TEXT)")
        db.executemany("INSERT INTO RY VALUES (?, ?, ?, ?, ?)", rows)
    return f"sqlite:///{path}"


def test_document_type_and_number_pair(tmp_path):
    def citizen_id(body: str) -> str:   # GB 11643 check digit, ISO 7064 MOD 11-2
        weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]

    rows = []
    for i in range(40):
        passport = i % 4 == 3   # a quarter are passports: the number column alone passes only 75%
        number = f"E{i:08d}" if passport else citizen_id(f"1101011980{(i % 12) + 1:02d}{(i % 28) + 1:02d}{i % 10}{i % 10}{i % 10}")
        rows.append((f"R{i:03d}", "414" if passport else "111", number, "张三" if i % 2 else "李四",
                     f"2024-0{(i % 9) + 1}-01 10:00:00"))
    url = _department(tmp_path / "pair.sqlite", rows)
    standards = load_standards()
    (text,) = suggest_sources(url, standards).values()
    proposal = yaml.safe_load(text)
    assert proposal["primary_key"] == "BH"
    assert proposal["incremental"] == {"column": "GXSJ"}
    assert proposal["columns"] == {"ZJLX": "id_type", "ZJHM": "id_number", "XM": "name", "GXSJ": "updated_at"}


def test_missing_sqlite_database_fails_in_one_line_and_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere.sqlite"
    done = subprocess.run([sys.executable, "-m", "govdata.cli", "sources", "suggest", f"sqlite:///{missing}"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: sqlite:///{missing}: no SQLite database at {missing} (check the path; nothing was created)"]
    assert not missing.exists()
