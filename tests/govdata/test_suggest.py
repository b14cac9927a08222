"""`govdata sources suggest` recognises columns by their values on departments it has never seen."""
from __future__ import annotations


import pytest
import yaml

from govdata.demo_data import generate
from govdata.suggest import profile_column, suggest_sources
from standards.registry import load_standards


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("suggest")
    generate(out, persons=300, seed=11)
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
