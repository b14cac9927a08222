"""A generated demo world and its departments read back, for the generator's tests."""
from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from govdata.demo_data import generate

AS_OF = date(2025, 6, 30)   # a fixed "today": the same seed gives the same bytes on any day


def generated_world(factory: pytest.TempPathFactory, name: str, persons: int, seed: int) -> Path:
    out = factory.mktemp(name) / "world"
    generate(out, persons, seed=seed, as_of=AS_OF)
    return out


def source_doc(world: Path, source: str) -> dict[str, Any]:
    """The source YAML the generator wrote for a department."""
    return yaml.safe_load((world / "sources" / f"{source}.yaml").read_text(encoding="utf-8"))


def read_source(world: Path, source: str) -> pd.DataFrame:
    """A department's whole table, from its SQLite database."""
    with sqlite3.connect(world / "departments" / f"{source}.sqlite") as con:
        return pd.read_sql(f'SELECT * FROM "{source_doc(world, source)["table"]}"', con)
