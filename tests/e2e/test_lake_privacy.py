"""Personal data at rest after real runs: nothing in the lake shows a source's ID or mobile
number to a reader without the key, every file is 0600 in a 0700 folder, and old or killed
runs' folders are gone (docs/SECURITY.md)."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from govdata.demo_data import generate
from govdata.lake import read_parquet
from govdata.runner import run_pipeline
from govdata.standards.sources import load_sources

pytestmark = pytest.mark.e2e
PII_ELEMENTS = {"id_number", "legal_rep_id_number", "applicant_id_number", "holder_id_number", "phone"}
KILLED = "manual__2020-01-01T00_00_00_00_00"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    base = tmp_path_factory.mktemp("privacy")
    world = base / "world"
    generate(world, persons=800, seed=11)
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.delenv("GOVDATA_TOKEN_KEY", raising=False)   # the embedded default: a key file
    mp.setenv("GOVDATA_HOME", str(base / "home"))
    mp.setenv("GOVDATA_LAKE_KEEP_RUNS", "1")
    lake, url = base / "lake", f"duckdb:///{base / 'warehouse.duckdb'}"
    first = run_pipeline(world / "sources", warehouse_url=url, lake=str(lake), full_refresh=True)
    killed = lake / KILLED / "raw"   # a run killed during extract, long ago
    killed.mkdir(parents=True)
    (killed / "gongan.parquet").write_bytes(b"PAR1 partial")
    for p in (killed / "gongan.parquet", killed, killed.parent):
        os.utime(p, (0, 0))
    # a full refresh writes every snapshot anew, so etl_state no longer needs the first run
    second = run_pipeline(world / "sources", warehouse_url=url, lake=str(lake), full_refresh=True)
    return {"world": world, "lake": lake, "base": base, "first": first, "second": second}


def _digits(value) -> str:
    return re.sub(r"[^0-9X]", "", unicodedata.normalize("NFKC", str(value)).upper())


def _needles(world: Path, lake: Path) -> set[str]:
    """Every ID and phone number of the sources: as the departments store them (digits only)
    and in standard form (what std/ and the golden records hold, read with the key)."""
    needles = set()
    for src in load_sources(world / "sources"):
        cols = [c for c, element in src.columns.items() if element in PII_ELEMENTS]
        with sqlite3.connect(src.connection.removeprefix("sqlite:///")) as con:
            for col in cols:
                needles |= {_digits(v) for (v,) in con.execute(f'SELECT "{col}" FROM "{src.table}"') if v}
    for path in lake.glob("*/std/*.parquet"):
        frame = read_parquet(str(path))
        for col in PII_ELEMENTS & set(frame.columns):
            needles |= set(frame[col].dropna().astype(str))
    return {n for n in needles if len(n) >= 11}


def _found(text: str, needles: set[str]) -> set[str]:
    hits = set()
    for run in re.findall(r"[0-9Xx]{11,}", text):
        run = run.upper()
        hits |= {run[i:i + n] for n in (11, 15, 18) for i in range(len(run) - n + 1) if run[i:i + n] in needles}
    return hits


def _as_text(table: pa.Table) -> str:
    return "\n".join(str(v) for column in table.columns for v in column.to_pylist())


def test_no_identifier_or_phone_readable_without_the_key(runs):
    lake = runs["lake"]
    needles = _needles(runs["world"], lake)
    assert len(needles) > 1000
    # the same scan does see them once the key is used: the needles are what the files held
    current = [read_parquet(str(p)) for p in lake.glob("*/current/*.parquet")]
    seen = set().union(*(_found(_as_text(pa.Table.from_pandas(f)), needles) for f in current))
    assert len(seen) > 1000

    files = sorted(p for p in lake.rglob("*") if p.is_file())
    encrypted, plain_tables, other = [], [], []
    for path in files:
        data = path.read_bytes()
        assert not _found(data.decode("latin-1"), needles), f"raw bytes of {path.relative_to(lake)}"
        if path.suffix == ".arrow":
            table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
        elif path.suffix == ".parquet":
            try:
                table = pq.read_table(path)   # a reader without the key
            except OSError as exc:
                assert "no decryption found" in str(exc) and data[-4:] == b"PARE", path
                encrypted.append(path)
                continue
        else:
            other.append(path)
            continue
        plain_tables.append(path)
        assert not _found(_as_text(table), needles), f"values of {path.relative_to(lake)}"
    run_dir = {p.relative_to(lake).parts[0] for p in files}
    assert len(run_dir) == 1   # the first run and the killed one were removed
    rel = lambda ps: sorted(str(Path(*p.relative_to(lake).parts[1:])) for p in ps)  # noqa: E731
    sources = sorted(s.name for s in load_sources(runs["world"] / "sources"))
    assert [p for p in rel(encrypted) if not p.startswith("link/")] == sorted(
        [f"{d}/{s}.parquet" for d in ("current", "raw", "std") for s in sources])
    assert [p for p in rel(encrypted) if p.startswith("link/")] == ["link/enterprise_golden.parquet",
                                                                    "link/person_golden.parquet"]
    assert not [p for p in rel(plain_tables) if p.startswith(("raw/", "std/", "current/"))]
    assert not [p for p in files if p.suffix == ".arrow" or "link/input" in str(p) or "link/parts" in str(p)]
    print(f"scanned {len(files)} files: {len(encrypted)} encrypted Parquet, {len(plain_tables)} plain Parquet "
          f"(no PII columns), {len(other)} other")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_lake_files_0600_in_0700_folders_and_keys_private(runs):
    lake, base = runs["lake"], runs["base"]
    entries = [lake, *lake.rglob("*")]
    assert [str(p.relative_to(lake)) for p in entries if p.is_dir() and _mode(p) != 0o700] == []
    assert [str(p.relative_to(lake)) for p in entries if p.is_file() and _mode(p) != 0o600] == []
    assert _mode(base / "home" / "govdata.key") == 0o600
    vault = [p for p in base.iterdir() if p.name.startswith("warehouse.vault.duckdb")]
    assert vault and {oct(_mode(p)) for p in vault} == {"0o600"}


def test_retention_removed_the_old_run_and_the_killed_one(runs):
    first, second = runs["first"], runs["second"]
    assert first["retention"]["removed"] == []
    removed = second["retention"]["removed"]
    first_dir = Path(first["report_path"]).parent.parent.name
    assert sorted(removed, key=lambda r: r["run"]) == sorted([
        {"run": first_dir, "reason": "older than the last 1 run(s)"},
        {"run": KILLED, "reason": "killed or failed run (no manifest)"}], key=lambda r: r["run"])
    assert second["retention"]["hand_off_files_removed"] > 0
    page = Path(second["report_path"]).read_text(encoding="utf-8")
    assert f"<td>{KILLED}</td><td>killed or failed run (no manifest)</td>" in page
    summary = json.loads((Path(second["report_path"]).parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["retention"]["keep_runs"] == 1
