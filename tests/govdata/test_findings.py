"""Findings report helpers: numbers for Chinese readers, the language switch, inline SVG charts,
department names from the source YAMLs, and the offline rewrite of GX's CDN references."""
from __future__ import annotations

import re

import pytest

from govdata.expectations.offline_docs import CDN_TO_VENDOR, VENDOR_DIR, _rewrite, remote_references
from govdata.charts import share_bars, sparkline, stacked_bars
from govdata.findings import format_count, format_delta, format_share, language, source_departments


def test_counts_read_as_chinese_readers_write_them():
    assert format_count(8460) == "8,460"
    assert format_count(9999) == "9,999"
    assert format_count(10_000) == "1万"
    assert format_count(12_345) == "1.2万"
    assert format_count(2_550_000) == "255万"
    assert format_count(123_456_789) == "1.2亿"
    assert format_count(None) == "–"
    assert format_count(12_345, "en") == "12,345"


def test_shares_are_percentages_with_one_decimal():
    assert format_share(0.98) == "98.0%"
    assert format_share(0.881770833) == "88.2%"
    assert format_share(1) == "100.0%"
    assert format_share(float("nan")) == "–"
    assert format_delta(0.95, 0.90, True, "zh-CN") == "+5.0个百分点"
    assert format_delta(0.90, 0.95, True, "en") == "-5.0 pts"
    assert format_delta(66, 60, False, "zh-CN") == "+6"
    assert format_delta(0.9, None, True, "zh-CN") == ""


@pytest.mark.parametrize("value, expected", [(None, "zh-CN"), ("zh-CN", "zh-CN"), ("zh", "zh-CN"), ("en", "en"),
                                             ("en_US", "en"), ("EN-gb", "en")])
def test_language_switch(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("GOVDATA_LANG", raising=False)
    else:
        monkeypatch.setenv("GOVDATA_LANG", value)
    assert language() == expected


def test_share_bars_scale_to_one_hundred_percent_and_escape_labels():
    svg = share_bars([("公安局<人口>", 0.5, "50.0%"), ("税务局", 1.0, "100.0%")], width=640)
    assert "公安局&lt;人口&gt;" in svg and "<script" not in svg
    widths = [float(w) for w in re.findall(r"<rect x='\d+' y='\d+' width='([\d.]+)' height='18' fill='#2f6fbd'", svg)]
    backgrounds = [float(w) for w in re.findall(r"width='([\d.]+)' height='18' fill='#eef2f7'", svg)]
    assert widths[1] == backgrounds[1] and abs(widths[1] - 2 * widths[0]) <= 0.1   # 100% fills the track, 50% half
    assert share_bars([]) == ""
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_stacked_bars_and_sparkline():
    svg = stacked_bars([("窗口", [0.8, 0.12, 0.08])], ["#1", "#2", "#3"], width=400)
    assert svg.count("<rect") == 3 and "80.0%" in svg and "12.0%" in svg
    assert sparkline([0.9]).count("<circle") == 1 and "polyline" not in sparkline([0.9])
    assert "polyline" in sparkline([0.8, 0.85, 0.9])
    assert sparkline([]) == ""


def test_departments_come_from_the_source_yaml(tmp_path):
    (tmp_path / "gongan.yaml").write_text("name: gongan\ndepartment: 公安局人口户籍\nkind: person\n"
                                         "columns:\n  SFZHM: id_number\n  XM: name\n", encoding="utf-8")
    run = {"sources": [{"name": "gongan", "path": str(tmp_path / "gongan.yaml"), "kind": "person"},
                       {"name": "gone", "path": str(tmp_path / "gone.yaml"), "kind": "person"}]}
    frame = source_departments(run)
    assert frame[["source_system", "department"]].values.tolist() == [["gongan", "公安局人口户籍"], ["gone", "gone"]]
    assert frame["elements"][0] == ["id_number", "name"]


GX_HEAD = """<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" integrity="sha384-x" crossorigin="anonymous"></script>
<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=20261202T024741.306918Z">
<style>.x{background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png')}</style>
<a href="https://greatexpectations.io">a link, not a load</a>"""


def test_offline_rewrite_of_gx_pages():
    assert len(remote_references(GX_HEAD)) == 6
    page = _rewrite(GX_HEAD, "../../")
    assert remote_references(page) == []
    assert 'href="../../static/vendor/bootstrap-4.3.1/dist/css/bootstrap.min.css"' in page
    assert '<script src="../../static/vendor/vega-5.33.1/build/vega.min.js">' in page
    assert '<script src="../../static/vendor/vega-lite-5.23.0/build/vega-lite.min.js">' in page
    assert '<script src="../../static/vendor/popper.js-1.12.9/dist/umd/popper.min.js"></script>' in page
    assert page.count("../../static/images/logo-long.png") == 2
    assert '<a href="https://greatexpectations.io">' in page


def test_every_vendored_file_is_there_with_its_licence():
    for target in CDN_TO_VENDOR.values():
        assert (VENDOR_DIR / target).is_file(), target
    for folder in (p for p in VENDOR_DIR.iterdir() if p.is_dir()):
        assert list(folder.glob("LICENSE*")), folder.name
