"""Tiny inline standards and sources for the data-quality tests (no standards/ files needed)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from govdata.standards.model import Element, SourceConfig, Standards

ID_PATTERN = r"^\d{17}[\dX]$"
PHONE_PATTERN = r"^(1\d{10}|0\d{9,11})$"


def element(name: str, kind: str = "person", **fields) -> Element:
    return Element(name=name, kind=kind, type=fields.pop("type", "string"), zh=name, en=name,
                   standard="test", rule="test", **fields)


@pytest.fixture
def standards() -> Standards:
    person = {
        "id_number": element("id_number", type="id_number", pattern=ID_PATTERN, required=True, critical=True),
        "name": element("name", required=True),
        "sex": element("sex", type="code", code_table="sex", critical=True),
        "birth_date": element("birth_date", type="date"),
        "phone": element("phone", pattern=PHONE_PATTERN, pii="contact"),
    }
    application = {
        "application_no": element("application_no", kind="application", required=True, critical=True),
        "submitted_at": element("submitted_at", kind="application", type="timestamp"),
        "rating": element("rating", kind="application", type="integer"),
    }
    sex = pd.DataFrame({"code": ["0", "1", "2", "9"], "name": ["未知的性别", "男性", "女性", "未说明的性别"]})
    return Standards(elements={"person": person, "application": application}, code_tables={"sex": sex})


@pytest.fixture
def gongan() -> SourceConfig:
    return SourceConfig(name="gongan", department="公安局人口户籍", kind="person", connection="sqlite://",
                        table="T_RK_JBXX", primary_key="RKBH",
                        columns={"SFZHM": "id_number", "XM": "name", "XBDM": "sex", "CSRQ": "birth_date"})


@pytest.fixture
def hall() -> SourceConfig:
    return SourceConfig(name="hall", department="政务服务大厅", kind="application", connection="sqlite://",
                        table="T_BJ", primary_key="BJBH",
                        columns={"BJBH": "application_no", "SQSJ": "submitted_at", "PJ": "rating"},
                        extra={"quality": {"max_quarantine_rate": 0.5}})


@pytest.fixture
def gongan_frame() -> pd.DataFrame:
    """Four clean rows except: one unknown sex code '3', one birth date before 1900."""
    return pd.DataFrame({
        "source_system": "gongan",
        "source_record_id": ["1", "2", "3", "4"],
        "kind": "person",
        "id_number": ["11010519491231002X", "110105194912310029", "440524188001010014", None],
        "name": ["张三", "李四", "王五", "赵六"],
        "sex": ["1", "2", "3", None],
        "birth_date": [dt.date(1949, 12, 31), dt.date(1949, 12, 31), dt.date(1880, 1, 1), None],
    })
