"""Texts of the HTML pages per language, kept as YAML beside the templates
(govdata/templates/<page>.text.yaml) so that a translator edits data, not code."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("zh-CN", "en")


@functools.lru_cache(maxsize=None)
def page_text(page: str) -> dict[str, Any]:
    """language -> that page's texts (shared, do not modify)."""
    data = yaml.safe_load((TEMPLATES / f"{page}.text.yaml").read_text(encoding="utf-8"))
    missing = [lang for lang in LANGUAGES if lang not in data]
    if missing:
        raise ValueError(f"{page}.text.yaml: languages {missing} missing; add them beside {list(data)}")
    return data
