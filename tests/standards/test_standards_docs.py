"""Data dictionary rendering on the shipped standards and two tiny sources."""
from __future__ import annotations

from pathlib import Path

from govdata.standards.docs import render_data_dictionary
from govdata.standards.model import SourceConfig
from govdata.standards.registry import load_standards


def source(name: str, kind: str, columns: dict[str, str], connection: str) -> SourceConfig:
    return SourceConfig(name=name, department=f"{name} 部门", kind=kind, connection=connection,
                        table="T", primary_key="ID", columns=columns, path=Path(f"/x/{name}.yaml"))


SOURCES = [
    source("shebao", "person", {"GMSFHM": "id_number", "XM": "name", "LXDH": "phone"},
           "postgresql+psycopg://loader:s3cret@db.internal:5432/si"),
    source("gongan", "person", {"SFZHM": "id_number", "XM": "name", "XB": "sex"}, "sqlite:////d/gongan.sqlite"),
    source("shichang", "enterprise", {"TYSHXYDM": "uscc", "QYMC": "name"}, "airflow:shichang"),
]


def test_data_dictionary_sections_and_matrix():
    text = render_data_dictionary(load_standards(), SOURCES)
    lines = text.splitlines()
    assert lines[0] == "# govdata data dictionary"
    assert [line for line in lines if line.startswith("## ")] == [
        "## Elements", "## Code tables", "## Sources", "## Which department supplies which element", "## Linkage"]
    assert "| element | gongan | shebao | sources |" in lines
    assert "| `id_number` | `SFZHM` | `GMSFHM` | 2 |" in lines
    assert "| `sex` | `XB` |  | 1 |" in lines
    assert "| `ethnicity` |  |  | 0 |" in lines
    assert "| `uscc` | `TYSHXYDM` | 1 |" in lines
    assert "No source supplies this kind." in text
    region_row = next(line for line in lines if line.startswith("| `region` |"))
    assert region_row.endswith("| eed219a (data through 2024) | CC0 1.0 | 6823 |")
    assert "areacodes by yescallop, result.csv at commit eed219a, CC0 1.0" in region_row
    assert "| `shebao` | shebao 部门 | person | T | ID | postgresql | full snapshot | 3 |" in lines
    assert "| `shichang` | shichang 部门 | enterprise | T | ID | airflow connection | full snapshot | 2 |" in lines
    assert "s3cret" not in text and "db.internal" not in text
    # pipes inside a pattern are escaped so the table keeps its columns
    phone = next(line for line in lines if line.startswith("| `phone` | 联系电话"))
    assert "\\|0[1-9]" in phone


def test_data_dictionary_documents_the_linkage_declaration():
    lines = render_data_dictionary(load_standards(), SOURCES).splitlines()
    assert "Persons link automatically at a total weight of 14.0; from 12.0 they go to the stewards' review queue." \
        in lines
    assert "| `b_birth` | birth_day, surname_initial |" in lines
    assert "| `document` | agreement_only | document | 0.95 | 1e-06 | 19.86 | yes |  |" in lines
    assert "| `phone` | exact | phone | 0.6 | 0.01 | 5.91 |  | phone_persons |" in lines
    assert "Records without a usable USCC join its holder by: uscc → org_code → tax_no → reg_no → name." in lines
