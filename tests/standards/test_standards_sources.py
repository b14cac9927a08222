"""Source YAML loading: schema errors name file, key and expectation; connections resolve."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from govdata.standards.sources import SourceConfigError, load_source, load_sources

VALID = {
    "name": "gongan",
    "department": "公安局人口户籍",
    "kind": "person",
    "connection": "sqlite:///../departments/gongan.sqlite",
    "table": "T_RK_JBXX",
    "primary_key": "RKBH",
    "columns": {"SFZHM": "id_number", "XM": "name", "XBDM": "sex", "CSRQ": "birth_date"},
    "incremental": {"column": "ZHGXSJ"},
    "overrides": {"birth_date": {"format": "%d/%m/%Y", "dayfirst": True}},
}


def write_source(folder: Path, config: object, filename: str = "gongan.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def with_changes(**changes: object) -> dict:
    config = {**VALID, **changes}
    return {k: v for k, v in config.items() if v is not DROP}


DROP = object()


def test_valid_source_loads_every_field(tmp_path):
    path = write_source(tmp_path / "sources", with_changes(steward="张三"))
    config = load_source(path)
    assert config.name == "gongan" and config.kind == "person" and config.table == "T_RK_JBXX"
    assert config.connection == f"sqlite:///{tmp_path / 'departments' / 'gongan.sqlite'}"
    assert config.columns == VALID["columns"]
    assert config.elements == ["id_number", "name", "sex", "birth_date"]
    assert config.incremental == {"column": "ZHGXSJ"}
    assert config.overrides == {"birth_date": {"format": "%d/%m/%Y", "dayfirst": True}}
    assert config.extra == {"steward": "张三"}
    assert config.path == path


@pytest.mark.parametrize(("connection", "expected"), [
    ("sqlite:///../departments/x.sqlite", "sqlite:///{tmp}/departments/x.sqlite"),
    ("sqlite:///x.sqlite", "sqlite:///{tmp}/sources/x.sqlite"),
    ("sqlite+pysqlite:///db/x.sqlite", "sqlite+pysqlite:///{tmp}/sources/db/x.sqlite"),
    ("sqlite:////srv/data/x.sqlite", "sqlite:////srv/data/x.sqlite"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql+psycopg://loader:pw@db:5432/rk", "postgresql+psycopg://loader:pw@db:5432/rk"),
    ("airflow:gongan_db", "airflow:gongan_db"),
    ("${GOVDATA_TEST_SOURCE_URL}", "sqlite:///{tmp}/sources/env.sqlite"),
])
def test_connection_forms(tmp_path, monkeypatch, connection, expected):
    monkeypatch.setenv("GOVDATA_TEST_SOURCE_URL", "sqlite:///env.sqlite")
    path = write_source(tmp_path / "sources", with_changes(connection=connection))
    assert load_source(path).connection == expected.format(tmp=tmp_path)


ERRORS = [
    # (change to the valid config, key named, words of the expectation)
    ({"name": DROP}, "name", "to be present"),
    ({"columns": DROP}, "columns", "to be present"),
    ({"name": "Gong An"}, "name", "lower-case letters, digits and _ starting with a letter"),
    ({"table": ""}, "table", "a non-empty string"),
    ({"primary_key": ["A", "B"]}, "primary_key", "a non-empty string"),
    ({"kind": "persn"}, "kind", "one of person, enterprise, application, certificate, got 'persn'"),
    ({"columns": {}}, "columns", "a non-empty mapping of source column -> standard element"),
    ({"columns": {"XM": "uscc"}}, "columns.XM", "an element of kind person"),
    ({"columns": {"XM": "name", "XM2": "name"}}, "columns.XM2",
     "each element mapped once; name is already mapped from XM"),
    ({"connection": "${GOVDATA_TEST_UNSET_VARIABLE}"}, "connection",
     "environment variable GOVDATA_TEST_UNSET_VARIABLE to be set"),
    ({"connection": "not a url"}, "connection", "a SQLAlchemy URL, ${ENV_VAR} or airflow:<conn_id>"),
    ({"connection": "airflow:"}, "connection", "a connection id after 'airflow:'"),
    ({"incremental": "ZHGXSJ"}, "incremental", "a mapping {column: <watermark column>}"),
    ({"overrides": {"uscc": {"format": "%Y"}}}, "overrides.uscc", "an element of kind person, got 'uscc'"),
    ({"overrides": {"birth_date": "%Y"}}, "overrides.birth_date", "a mapping of options"),
    ({"overrides": {"birth_date": {"dayfirst": "yes"}}}, "overrides.birth_date.dayfirst", "true or false"),
]


@pytest.mark.parametrize(("change", "key", "expected"), ERRORS, ids=[e[1] + ":" + e[2][:20] for e in ERRORS])
def test_errors_name_file_key_and_expectation(tmp_path, monkeypatch, change, key, expected):
    monkeypatch.delenv("GOVDATA_TEST_UNSET_VARIABLE", raising=False)
    path = write_source(tmp_path, with_changes(**change))
    with pytest.raises(SourceConfigError) as caught:
        load_source(path)
    error = caught.value
    assert error.file == str(path)
    assert (error.key, expected in error.expected) == (key, True), str(error)
    assert str(path) in str(error) and f"key '{key}'" in str(error)


def test_all_issues_reported_together(tmp_path):
    path = write_source(tmp_path, with_changes(kind="persn", table=DROP))
    with pytest.raises(SourceConfigError) as caught:
        load_source(path)
    assert [(i.key, i.expected) for i in caught.value.issues] == [
        ("table", "to be present"),
        ("kind", "one of person, enterprise, application, certificate, got 'persn'")]


def test_not_a_mapping_and_bad_yaml(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- name: gongan\n", encoding="utf-8")
    with pytest.raises(SourceConfigError, match=r"list.yaml: key '\(top level\)': expected a mapping"):
        load_source(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: gongan\ncolumns: {XM: name\n", encoding="utf-8")
    with pytest.raises(SourceConfigError) as caught:
        load_source(broken)
    assert (caught.value.key, caught.value.expected) == ("line 3", "valid YAML")


def test_connection_secret_is_not_echoed(tmp_path):
    path = write_source(tmp_path, with_changes(connection="postgresql//loader:s3cret@db/rk"))
    with pytest.raises(SourceConfigError) as caught:
        load_source(path)
    assert "s3cret" not in str(caught.value)


def test_load_sources_sorted_and_unique(tmp_path):
    folder = tmp_path / "sources"
    write_source(folder, with_changes(name="shebao", connection="sqlite:///shebao.sqlite"), "a.yaml")
    write_source(folder, with_changes(name="gongan"), "b.yml")
    assert [s.name for s in load_sources(folder)] == ["gongan", "shebao"]
    write_source(folder, with_changes(name="gongan"), "c.yaml")
    with pytest.raises(SourceConfigError) as caught:
        load_sources(folder)
    assert caught.value.file == str(folder / "c.yaml") and caught.value.key == "name"
    assert str(folder / "b.yml") in caught.value.expected


def test_load_sources_missing_folder(tmp_path):
    with pytest.raises(SourceConfigError, match=r"nowhere: key '\(folder\)': expected an existing folder"):
        load_sources(tmp_path / "nowhere")
