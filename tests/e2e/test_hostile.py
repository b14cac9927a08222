"""The hostile corpus (tests/data/hostile/build_corpus.py) through the real DAG with `govdata run`
in a subprocess: the run ends with exit 0, every source reconciles (rows in = loaded + rejected,
from the warehouse's dim_source and quarantine), every kind of damage ends as the corpus expects
(quarantined with its reason code, or loaded repaired), and no raw ID or phone number of the
corpus appears in any output or log line, nor in the analyst-visible quarantine."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import duckdb
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "hostile"))
from build_corpus import build  # noqa: E402

pytestmark = pytest.mark.e2e

DIGIT_RUNS = re.compile(r"[0-9]{11,}[0-9Xx]?")
TABLE = {"person": "xref_person", "enterprise": "xref_enterprise", "application": "fact_application"}
KIND_OF = {"h_person": "person", "h_ent": "enterprise", "h_app": "application"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    manifest = build(base / "corpus")
    db = base / "warehouse.duckdb"
    env = {**os.environ, "GOVDATA_HOME": str(base), "AIRFLOW_HOME": str(base / "airflow"),
           "GOVDATA_TOKEN_KEY": "11" * 32}
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW__")}
    govdata = Path(sys.executable).with_name("govdata")
    proc = subprocess.run([str(govdata), "run", "--sources", str(base / "corpus" / "sources"),
                           "--warehouse", f"duckdb:///{db}", "--lake", str(base / "lake"), "--full-refresh"],
                          env=env, capture_output=True, text=True, timeout=1800)
    return {"manifest": manifest, "proc": proc, "db": db, "base": base}


def _query(db: Path, sql: str, *params) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, list(params)).df()


def test_the_run_ends_well(hostile):
    proc = hostile["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_source_reconciles_in_the_warehouse(hostile):
    rows = hostile["manifest"]["rows"]
    assert sum(rows.values()) >= 10_000
    sources = _query(hostile["db"], "select source_system, record_count, rejected_rows from dim_source")
    rejected = _query(hostile["db"], """select source_system, count(distinct source_record_id) n, count(*) rows
                                        from quarantine where row_rejected group by 1""").set_index("source_system")
    assert sorted(sources.source_system) == sorted(rows)
    for s in sources.itertuples():
        loaded = _query(hostile["db"], f"select count(*) n from {TABLE[KIND_OF[s.source_system]]} "
                                       "where source_system = ?", s.source_system).n[0]
        assert rows[s.source_system] == s.record_count + s.rejected_rows, s.source_system
        assert s.record_count == loaded, s.source_system
        quarantined = rejected.loc[s.source_system] if s.source_system in rejected.index else None
        n = 0 if quarantined is None else quarantined.n
        assert s.rejected_rows == n, s.source_system
        assert quarantined is None or quarantined.rows == quarantined.n  # one entry per rejected row


def test_at_least_fifteen_kinds_of_damage(hostile):
    kinds = hostile["manifest"]["kinds"]
    assert len(kinds) >= 15
    reasons = {r["reason"] for k in kinds.values() for r in k["records"] if "reason" in r}
    assert {"missing_key", "duplicate_key", "undecodable", "control_characters", "too_long", "out_of_range",
            "not_integer", "invalid_name"} <= reasons


def test_every_damaged_record_ends_as_expected(hostile):
    db, kinds = hostile["db"], hostile["manifest"]["kinds"]
    quarantine = _query(db, "select source_system, source_record_id, element, reason_code, row_rejected from quarantine")
    failures = []
    keyless = 0
    for kind, entry in kinds.items():
        source = entry["source"]
        q = quarantine[quarantine.source_system == source]
        loaded = set(_query(db, f"select source_record_id from {TABLE[KIND_OF[source]]} where source_system = ?",
                            source).source_record_id)
        for rec in entry["records"]:
            if "reason" in rec and "record_id" not in rec:
                keyless += 1
                continue
            if "reason" in rec:
                hit = q[(q.source_record_id == rec["record_id"]) & (q.reason_code == rec["reason"])
                        & (q.row_rejected == rec["rejected"])]
                if not rec["rejected"]:
                    hit = hit[hit.element == rec["element"]]
                ok = len(hit) == 1 and ((rec["record_id"] in loaded) != rec["rejected"])
            else:
                ok = rec["loaded"] in loaded
            if not ok:
                failures.append((kind, rec))
    assert failures == []
    missing = quarantine[quarantine.source_record_id.str.startswith("(missing key)#")]
    assert keyless == len(missing) == 180
    assert set(missing.reason_code) == {"missing_key"} and missing.row_rejected.all()


def _person(db: Path, record_id: str) -> pd.Series:
    return _query(db, """select p.* from xref_person x join dim_person p using (person_id)
                         where x.source_system = 'h_person' and x.source_record_id = ?""", record_id).iloc[0]


def test_repaired_values_are_loaded(hostile):
    db, kinds = hostile["db"], hostile["manifest"]["kinds"]
    for rec in kinds["traditional_name"]["records"]:
        assert _person(db, rec["loaded"])["name"] == rec["name"]
    for rec in kinds["excel_serial_date"]["records"][:10]:
        assert str(_person(db, rec["loaded"])["birth_date"])[:10] == rec["birth_date"]
    for rec in kinds["nullish_value"]["records"]:
        assert pd.isna(_person(db, rec["loaded"])["phone_masked"])
    for rec in kinds["real_code"]["records"][:10]:
        assert _person(db, rec["loaded"])["sex"] in ("1", "2")
    for kind in ("fullwidth_id", "id_15_digit"):
        for rec in kinds[kind]["records"][:10]:
            assert re.fullmatch(r"[0-9]{6}\*{8}[0-9]{3}[0-9X]", _person(db, rec["loaded"])["id_number_masked"])
    for kind in ("control_characters", "ansi_escape", "zero_width"):
        for rec in kinds[kind]["records"]:
            name = _person(db, rec["record_id"])["name"]
            assert re.fullmatch(r"[\u4e00-\u9fff]+", name), (kind, name)
    ratings = _query(db, "select source_record_id, rating from fact_application where source_record_id like 'AF%'")
    assert len(ratings) == 60 and set(ratings.rating) == {4}
    out_of_range = _query(db, "select count(*) n from fact_application where rating not between 1 and 5")
    assert out_of_range.n[0] == 0


def _leaks(text: str, identifiers: set[str]) -> set[str]:
    found = set()
    for run in DIGIT_RUNS.findall(unicodedata.normalize("NFKC", text)):
        for width in (11, 15, 18):
            for i in range(len(run) - width + 1):
                if run[i:i + width].upper() in identifiers:
                    found.add(run[i:i + width])
    return found


def test_no_raw_identifier_in_any_output_or_log(hostile):
    identifiers = set(hostile["manifest"]["identifiers"])
    assert len(identifiers) > 10_000
    proc = hostile["proc"]
    assert _leaks(proc.stdout + proc.stderr, identifiers) == set()
    logs = [p for p in (hostile["base"] / "airflow").rglob("*") if p.is_file() and p.suffix in (".log", ".json", "")]
    for path in logs:
        if path.stat().st_size < 50_000_000:
            assert _leaks(path.read_text(encoding="utf-8", errors="replace"), identifiers) == set(), path
    visible = _query(hostile["db"], "select masked_value, message from quarantine")
    assert _leaks(" ".join(visible.masked_value.fillna("")) + " ".join(visible.message.fillna("")), identifiers) == set()
    names = _query(hostile["db"], "select name from dim_person union all select legal_rep_name from dim_enterprise")
    assert _leaks(" ".join(names.iloc[:, 0].fillna("")), identifiers) == set()
