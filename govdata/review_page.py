"""The stewards' review page: one offline HTML page per run with the open review pairs (the
first PAGE_PAIRS, highest score first; the page says how many more `govdata review export` has).

Both records side by side (identifiers and phone numbers masked exactly as in `govdata review
export`), each compared field's agreement and Fellegi–Sunter weight, and keyboard shortcuts:
M match, N non-match, S skip, J/K or ↓/↑ next/previous, Ctrl+S save. Saving downloads a CSV in
the format `govdata review import` reads (the columns of `govdata review export`, with
decision / decided_by / decided_at filled in). Decisions also stay in the browser
(localStorage) until saved. One file, inline CSS and script, nothing from the network.
"""
from __future__ import annotations

import json
import logging

import fsspec
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from govdata.findings import _element_labels, language, source_departments
from govdata.page_text import page_text
from govdata.lake import run_path

log = logging.getLogger(__name__)

_env = Environment(loader=PackageLoader("govdata", "templates"), autoescape=select_autoescape(["html", "j2"]))

# evidence key (a comparison of the linkage model) -> the record field it compares
EVIDENCE_FIELD = {"id": "id_number", "name": "name", "pinyin": "name_pinyin", "birth": "birth_date", "sex": "sex",
                  "phone": "phone", "region": "region_code", "address": "address", "uscc": "uscc",
                  "org_code": "org_code", "name_core": "name_core", "legal_rep_name": "legal_rep_name",
                  "document": "doc_number", "latin": "name_latin"}
_TEXTS = page_text("review")   # templates/review.text.yaml
TEXT = {lang: texts["text"] for lang, texts in _TEXTS.items()}
EXTRA_LABELS = {lang: texts["labels"] for lang, texts in _TEXTS.items()}
ID_STATUS = {lang: texts["id_status"] for lang, texts in _TEXTS.items()}


# Pairs one page shows: a steward works through a few hundred pairs at a sitting, and a page of
# every pair of a city-sized run (38,000 at 1M persons) is a 118 MB file no browser opens well.
# The rest are on the next run's page once these are decided, and all in `govdata review export`.
PAGE_PAIRS = 1000


def open_pairs(url: str, manifest: dict, limit: int | None = None) -> tuple[pd.DataFrame, int]:
    """(the first `limit` open review pairs, highest score first, then pair id; how many are
    open in all), each with both records' fields masked exactly like `govdata review export`
    (one row per pair: the export CSV's columns). Only the shown pairs' records are read."""
    import tempfile
    from pathlib import Path

    from govdata.transforms.linkage import review_to_csv
    from govdata.warehouse.load import read_table

    queue = read_table(url, "review_queue")
    if queue is None or queue.empty:
        return pd.DataFrame(), 0
    queue = queue[queue["status"].fillna("open") == "open"]
    total = len(queue)
    queue = queue.assign(_score=pd.to_numeric(queue["score"], errors="coerce")).sort_values(
        ["_score", "pair_id"], ascending=[False, True]).drop(columns="_score")
    if limit is not None:
        queue = queue.head(limit)
    frames = []
    for entity, pairs in queue.groupby("entity"):
        records = pair_records(manifest, entity, pairs)
        if records.empty:
            continue
        with tempfile.TemporaryDirectory() as tmp:   # the export's own masking and layout
            path = review_to_csv(pairs, records, Path(tmp) / "pairs.csv")
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.insert(1, "entity", entity)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(), total
    out = pd.concat(frames, ignore_index=True)
    out["score_value"] = pd.to_numeric(out["score"], errors="coerce")
    return out.sort_values(["score_value", "pair_id"], ascending=[False, True]).reset_index(drop=True), total


def pair_records(manifest: dict, kind: str, pairs: pd.DataFrame) -> pd.DataFrame:
    """The live records of that kind the pairs name (either side), in the columns the review
    shows: each source's snapshot filtered in Arrow, not read whole into pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from govdata.lake import dataset, read_arrow, to_pandas
    from govdata.transforms.linkage.review import SHOWN

    keys = pd.concat([pairs[[f"{side}_source_system", f"{side}_source_record_id"]].set_axis(
        ["source_system", "source_record_id"], axis=1) for side in ("left", "right")], ignore_index=True).astype(str)
    frames = []
    for n in manifest["normalised"]:
        wanted = keys.loc[keys["source_system"] == n["source"], "source_record_id"].unique()
        if n["kind"] != kind or not len(wanted):
            continue
        path = n.get("current_path") or n["std_path"]   # an incremental run's std holds only what it extracted
        present = set(dataset(path).schema.names)
        table = read_arrow(path, [c for c in ("source_system", "source_record_id", *SHOWN) if c in present])
        table = table.filter(pc.is_in(table.column("source_record_id").cast(pa.string()), pa.array(wanted, pa.string())))
        frames.append(to_pandas(table))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _shown(field: str, value: str, lang: str) -> str:
    """A value as a steward reads it: codes with their names (2 → 2 女, 370102 → 370102 历下区)."""
    from govdata.findings import _code_names

    if value == "":
        return value
    if field == "sex":
        name = _code_names("sex", "zh-CN").get(value)
        return f"{value} {name}" if name and lang == "zh-CN" else value
    if field == "region_code":
        name = _code_names("region", "zh-CN").get(value)
        return f"{value} {name}" if name else value
    if field.endswith("_status"):
        return ID_STATUS[lang].get(value, value)
    return value


def _pairs_view(pairs: pd.DataFrame, departments: dict[str, str], lang: str) -> list[dict]:
    labels = {**_element_labels(lang), **EXTRA_LABELS[lang]}
    t = TEXT[lang]
    view = []
    for _, row in pairs.iterrows():
        fields = [c[len("left_"):] for c in pairs.columns if c.startswith("left_") and c not in
                  ("left_source_system", "left_source_record_id")]
        weights = {c[len("weight_"):]: row[c] for c in pairs.columns if c.startswith("weight_") and row[c] != ""}
        by_field = {EVIDENCE_FIELD.get(k, k): float(v) for k, v in weights.items()}
        rows = []
        for f in fields:
            left, right = row[f"left_{f}"], row.get(f"right_{f}", "")
            if left == "" and right == "" and f not in by_field:
                continue
            w = by_field.get(f)
            state = (None if w is None else "agree" if w > 0 else "disagree" if w < 0
                     else "missing" if left == "" or right == "" else "neutral")   # 0: no evidence either way
            rows.append({"label": labels.get(f, f), "field": f, "left": _shown(f, left, lang),
                         "right": _shown(f, right, lang),
                         "weight": "" if w is None else f"{w:+.2f}", "state": state,
                         "state_label": t[state] if state else ""})
        view.append({"pair_id": row["pair_id"], "entity": row["entity"], "entity_label": t.get(row["entity"], row["entity"]),
                     "score": row["score"], "score_shown": f"{float(row['score']):.2f}" if row["score"] else "–",
                     "left_department": departments.get(row["left_source_system"], row["left_source_system"]),
                     "right_department": departments.get(row["right_source_system"], row["right_source_system"]),
                     "left_source": row["left_source_system"], "left_record": row["left_source_record_id"],
                     "right_source": row["right_source_system"], "right_record": row["right_source_record_id"],
                     "rows": rows})
    return view


def render(pairs: pd.DataFrame, run: dict, lang: str, total: int | None = None) -> str:
    """The page; `total`: the open pairs in all, when the page shows only the first of them."""
    departments = dict(zip(*[source_departments(run)[c] for c in ("source_system", "department")]))
    view = _pairs_view(pairs, departments, lang) if not pairs.empty else []
    # what the save button writes: the export's key columns per pair (no field values)
    keys = [{k: p[k] for k in ("pair_id", "entity", "left_source", "left_record", "right_source", "right_record",
                                "score")} for p in view]
    total = len(view) if total is None else total
    more = TEXT[lang]["more"].format(shown=f"{len(view):,}", total=f"{total:,}") if total > len(view) else ""
    return _env.get_template("review.html.j2").render(
        t=TEXT[lang], lang=lang, run=run, pairs=view, keys_json=json.dumps(keys, ensure_ascii=False),
        storage_key=f"govdata-review:{run['run_id']}", more=more, total=total)


def write_review_page(manifest: dict, lang: str | None = None, limit: int = PAGE_PAIRS) -> dict:
    """review.html next to the run report: the first `limit` open pairs of the warehouse's
    review queue (highest score first); the page says how many more there are."""
    run = manifest["run"]
    lang = lang or language()
    pairs, total = open_pairs(run["warehouse_url"], manifest, limit)
    page = render(pairs, run, lang, total)
    path = run_path(run["lake"], run["run_id"], "report", "review.html")
    with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as fh:
        fh.write(page)
    return {"review_path": path, "pairs": int(len(pairs)), "open_pairs": int(total),
            "bytes": len(page.encode("utf-8"))}
