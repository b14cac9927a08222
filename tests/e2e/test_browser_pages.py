"""What analysts and stewards see, in a real headless Chromium (Debian's `chromium`, driven by
Playwright; fonts-noto-cjk for the Chinese text): the findings report, the GX Data Docs and the
steward review page of a real run, offline, with no raw identifier; the review round trip —
decide two pairs with the keyboard, save, `govdata review import`, next run — changes the
warehouse as decided. Screenshots of every page are kept in the test's tmp folder."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from govdata.expectations.offline_docs import remote_references
from govdata.demo_data import generate
from govdata.findings import format_share
from govdata.runner import run_pipeline

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PERSONS, SEED = 1500, 2   # a world whose first run queues two person pairs for review
ID_LIKE = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


@pytest.fixture(scope="module")
def run(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("browser")
    world = base / "world"
    generate(world, persons=PERSONS, seed=SEED)
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("GOVDATA_HOME", str(base / "home"))
    mp.delenv("GOVDATA_LANG", raising=False)
    url, lake = f"duckdb:///{base / 'warehouse.duckdb'}", base / "lake"
    summary = run_pipeline(world / "sources", warehouse_url=url, lake=str(lake), full_refresh=True)
    report = Path(summary["report_path"]).parent
    return {"world": world, "url": url, "db": base / "warehouse.duckdb", "lake": lake, "report": report,
            "base": base, "summary": summary}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium fonts-noto-cjk (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_offline(browser, path: Path, shots: Path, name: str, **context):
    """A page opened from file://, every non-local request refused and recorded."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN", accept_downloads=True,
                              **context)
    remote: list[str] = []

    def guard(route):
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    started = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    seconds = time.perf_counter() - started
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    print(f"{name}: {path.stat().st_size:,} bytes, loaded in {seconds:.2f} s, screenshot {shots / f'{name}.png'}")
    return ctx, page, remote, errors


def _query(db: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


def test_every_generated_page_loads_nothing_from_the_network(run):
    pages = sorted(run["report"].rglob("*.html"))
    names = {p.relative_to(run["report"]).as_posix() for p in pages}
    assert {"index.html", "findings.html", "review.html", "data_docs/index.html"} <= names
    assert len([n for n in names if n.startswith("data_docs/")]) >= 10
    for page in pages:
        assert remote_references(page.read_text(encoding="utf-8")) == [], page
    for css in (run["report"] / "data_docs" / "static").rglob("*.css"):
        assert remote_references(css.read_text(encoding="utf-8")) == [], css
    # the vendored libraries travel with the docs, licences included
    vendor = run["report"] / "data_docs" / "static" / "vendor"
    assert (vendor / "jquery-3.7.1" / "dist" / "jquery.min.js").exists()
    assert (vendor / "fontawesome-free-6.6.0" / "webfonts" / "fa-solid-900.woff2").exists()
    assert sorted(p.parent.name for p in vendor.glob("*/LICENSE*")) == sorted(p.name for p in vendor.iterdir()
                                                                                if p.is_dir())


def test_report_pages_hold_no_raw_identifier(run):
    for name in ("index.html", "findings.html", "review.html"):
        text = (run["report"] / name).read_text(encoding="utf-8")
        assert not ID_LIKE.findall(text), name
        assert not MOBILE.findall(text), name


def test_findings_page_in_chinese_with_charts_and_the_marts_numbers(run, browser, tmp_path):
    ctx, page, remote, errors = open_offline(browser, run["report"] / "findings.html", tmp_path / "shots", "findings")
    try:
        assert remote == [] and errors == []
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert page.locator("h1").inner_text() == "政务数据成效报告"
        assert page.locator("section h2").all_inner_texts() == [
            "核心指标", "一次采集、多方复用", "按时办结", "好差评", "主动服务", "证照复用", "近期趋势"]
        assert page.locator("svg.chart").count() == 7
        # on-time share, computed here straight from the facts
        on_time = _query(run["db"], "SELECT SUM(CASE WHEN within_limit THEN 1 ELSE 0 END)::DOUBLE / COUNT(within_limit) "
                                    "AS s FROM fact_application WHERE submitted_at IS NOT NULL").s[0]
        card = page.locator("[data-indicator=on_time] .value").inner_text()
        assert card == format_share(on_time) and card.endswith("%") and len(card.split(".")[1]) == 2
        # departments by their Chinese names from the source YAMLs, never by source id alone
        once = page.locator("#once-only table").first.inner_text()
        assert "公安局人口户籍" in once and "税务局" in once and "gongan" not in once
        # Chinese text rendered with a CJK font, not tofu boxes
        width = page.evaluate("""() => { const c = document.createElement('canvas').getContext('2d');
            c.font = '16px "Noto Sans CJK SC"'; return c.measureText('政务数据').width; }""")
        assert 60 <= width <= 68
        assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK SC\"', '政务')")
    finally:
        ctx.close()


def test_findings_page_switches_to_english(run, tmp_path):
    import json

    from govdata.findings import write_findings

    manifest = json.loads(next(run["lake"].glob("*/manifest.json")).read_text(encoding="utf-8"))
    written = write_findings(manifest, lang="en")
    text = Path(written["findings_path"]).read_text(encoding="utf-8")
    assert '<html lang="en">' in text and "<h1>Findings</h1>" in text and "On-time handling" in text
    write_findings(manifest)   # back to the default (zh-CN)
    assert '<html lang="zh-CN">' in Path(written["findings_path"]).read_text(encoding="utf-8")


def test_data_docs_render_offline(run, browser, tmp_path):
    docs = run["report"] / "data_docs"
    page_path = next((docs / "expectations" / "std" / "person").glob("gongan.html"))
    ctx, page, remote, errors = open_offline(browser, page_path, tmp_path / "shots", "data_docs")
    try:
        assert remote == [] and errors == []
        assert page.evaluate("typeof window.jQuery") == "function"
        assert page.evaluate("typeof window.vegaEmbed") == "function"
        assert page.evaluate("typeof jQuery.fn.bootstrapTable") == "function"
        # Bootstrap's style sheet applies (a .row is a flex box), Font Awesome's font loads
        assert page.evaluate("getComputedStyle(document.querySelector('.row')).display") == "flex"
        page.evaluate("document.fonts.load('900 16px \"Font Awesome 6 Free\"')")
        assert page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"')")
    finally:
        ctx.close()
    ctx, page, remote, errors = open_offline(browser, docs / "index.html", tmp_path / "shots", "data_docs_index")
    ctx.close()
    assert remote == []


def test_a_review_page_shorter_than_the_queue_shows_the_top_pairs_and_says_how_many_are_open(run, browser, tmp_path):
    from govdata.review_page import write_review_page
    from govdata.stages.load import read_manifest

    queue = _query(run["db"], "SELECT pair_id FROM review_queue WHERE status = 'open' ORDER BY score DESC, pair_id")
    manifest = read_manifest(str(run["report"].parent / "manifest.json"))
    manifest["run"]["lake"] = str(tmp_path / "lake")   # the run's own page stays for the round trip below
    written = write_review_page(manifest, limit=1)
    assert (written["pairs"], written["open_pairs"]) == (1, len(queue))
    ctx, page, remote, errors = open_offline(browser, Path(written["review_path"]), tmp_path / "shots", "review_top")
    try:
        assert remote == [] and errors == []
        shown = page.locator("section.pair").evaluate_all("els => els.map(e => e.dataset.pairId)")
        assert shown == [queue["pair_id"].iloc[0]]   # the highest score
        assert page.locator("#more").inner_text() == \
            f"本页显示得分最高的 1 对，共 {len(queue)} 对待复核；其余的在决定这些之后的下次运行页面上，全部可用 govdata review export 导出。"
    finally:
        ctx.close()


def test_review_round_trip_in_the_browser_changes_the_warehouse(run, browser, tmp_path):
    queue = _query(run["db"], "SELECT pair_id, left_source_system, left_source_record_id, right_source_system, "
                              "right_source_record_id FROM review_queue WHERE status = 'open' AND entity = 'person'")
    assert len(queue) >= 2
    ctx, page, remote, errors = open_offline(browser, run["report"] / "review.html", tmp_path / "shots", "review")
    try:
        assert remote == [] and errors == []
        shown = page.locator("section.pair").evaluate_all("els => els.map(e => e.dataset.pairId)")
        assert sorted(shown) == sorted(queue["pair_id"])
        first, second = shown[0], shown[1]
        page.fill("#steward", "李娜")
        page.locator("main").click(position={"x": 5, "y": 5})   # leave the name field: keys go to the page
        page.keyboard.press("m")                                 # pair 1: same person
        page.keyboard.press("n")                                 # pair 2: not the same person
        assert page.locator(f"[data-pair-id='{first}']").get_attribute("data-decision") == "match"
        assert page.locator(f"[data-pair-id='{second}']").get_attribute("data-decision") == "non_match"
        assert page.locator("#n-decided").inner_text() == "2"
        page.screenshot(path=str(tmp_path / "shots" / "review_decided.png"), full_page=True)
        with page.expect_download() as download:
            page.keyboard.press("Control+s")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
    finally:
        ctx.close()
    assert saved.name.startswith("review-person-")
    decisions = pd.read_csv(saved, dtype=str, keep_default_na=False)
    assert list(decisions.columns) == ["pair_id", "left_source_system", "left_source_record_id", "right_source_system",
                                       "right_source_record_id", "score", "decision", "decided_by", "decided_at"]
    assert dict(zip(decisions.pair_id, decisions.decision)) == {
        first: "match", second: "non_match", **{p: "" for p in shown[2:]}}
    assert set(decisions.loc[decisions.decision != "", "decided_by"]) == {"李娜"}

    cli = Path(sys.executable).parent / "govdata"
    done = subprocess.run([str(cli), "review", "import", str(saved), "--warehouse", run["url"]],
                          capture_output=True, text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert "2 decision(s) stored" in done.stderr

    run_pipeline(run["world"] / "sources", warehouse_url=run["url"], lake=str(run["lake"]))
    xref = _query(run["db"], "SELECT source_system, source_record_id, person_id, match_rule FROM xref_person")
    xref = xref.set_index(["source_system", "source_record_id"])
    pairs = queue.set_index("pair_id")
    for pair_id, decision in ((first, "match"), (second, "non_match")):
        p = pairs.loc[pair_id]
        left = xref.loc[(p.left_source_system, p.left_source_record_id)]
        right = xref.loc[(p.right_source_system, p.right_source_record_id)]
        if decision == "match":
            assert left.person_id == right.person_id
            assert "steward" in {left.match_rule, right.match_rule}
        else:
            assert left.person_id != right.person_id
    status = _query(run["db"], f"SELECT pair_id, status FROM review_queue WHERE pair_id IN ('{first}', '{second}')")
    assert set(status.status) <= {"decided", "superseded"} and len(status) == 2
    stored = _query(run["db"], "SELECT decision, decided_by FROM review_decision ORDER BY decision")
    assert stored.to_dict("records") == [{"decision": "match", "decided_by": "李娜"},
                                         {"decision": "non_match", "decided_by": "李娜"}]
    # the next run's review page no longer asks about them; its findings trend has two runs
    latest = max((run["lake"]).glob("*/report/review.html"), key=lambda p: p.stat().st_mtime)
    text = latest.read_text(encoding="utf-8")
    assert f'data-pair-id="{first}"' not in text and f'data-pair-id="{second}"' not in text
    history = _query(run["db"], "SELECT COUNT(DISTINCT run_id) AS n FROM findings_history").n[0]
    assert history == 2
    findings = latest.with_name("findings.html").read_text(encoding="utf-8")
    assert "最近 2 次运行的核心指标" in findings
    keep = os.environ.get("GOVDATA_SCREENSHOTS")   # CI: copy the screenshots out as artefacts
    if keep:
        shutil.copytree(tmp_path / "shots", Path(keep) / "review", dirs_exist_ok=True)
