"""The run report: one HTML page per run (counts, quality, linkage, timings, charts) + summary.json.

Charts are inline SVG so the page is a single self-contained file that opens anywhere.
"""
from __future__ import annotations

import html
import json

import fsspec
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from govdata.lake import exists, read_parquet, run_path

_env = Environment(loader=PackageLoader("govdata", "templates"), autoescape=select_autoescape(["html", "j2"]))


def bar_chart_svg(values: dict[str, float], unit: str = "", width: int = 520, bar_height: int = 18) -> str:
    """A horizontal bar chart as an SVG string (labels escaped)."""
    if not values:
        return "<p class='muted'>nothing to show</p>"
    top = max(values.values()) or 1
    label_w, rows = 190, []
    for i, (label, value) in enumerate(values.items()):
        y = i * (bar_height + 6)
        w = (width - label_w - 80) * value / top
        rows.append(
            f"<text x='0' y='{y + bar_height - 4}' font-size='12'>{html.escape(str(label))}</text>"
            f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar_height}' fill='#3b7dd8'/>"
            f"<text x='{label_w + w + 4:.1f}' y='{y + bar_height - 4}' font-size='12'>{value:,.3g}{unit}</text>"
        )
    height = len(values) * (bar_height + 6)
    return f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{''.join(rows)}</svg>"


def score_histogram(scores: pd.Series, bins: int = 20) -> dict[str, float]:
    scores = pd.to_numeric(scores, errors="coerce").dropna()
    if scores.empty:
        return {}
    counts = pd.cut(scores, bins=bins).value_counts(sort=False)
    return {f"{iv.left:.2f}–{iv.right:.2f}": int(n) for iv, n in counts.items()}


def _linkage_rules(linked: dict, kind: str) -> dict[str, int]:
    path = linked.get("paths", {}).get(f"{kind}_xref")
    if not path:
        return {}
    return read_parquet(path, columns=["match_rule"])["match_rule"].value_counts().to_dict()


def _frame_rows(linked: dict, name: str) -> int:
    path = linked.get("paths", {}).get(name)
    return len(read_parquet(path)) if path and exists(path) else 0


def _masters(linked: dict, kind: str) -> int:
    """Master records after the run (an incremental run rebuilds only the golden records it
    relinked, so count the ids of the xref)."""
    path = linked.get("paths", {}).get(f"{kind}_xref")
    return int(read_parquet(path, columns=[f"{kind}_id"])[f"{kind}_id"].nunique()) if path and exists(path) else 0


def _linkage_modes(linked: dict) -> dict:
    keep = ("mode", "records_relinked", "records_carried")
    return {kind: {k: s.get(k) for k in keep} for kind, s in linked.get("stats", {}).items()}


def build_summary(run: dict, normalised: list[dict], linked: dict, loaded: dict, validated: dict) -> dict:
    tables = loaded.get("tables", {})
    headline = {
        "sources": len(normalised),
        "records in": sum(n["rows_in"] for n in normalised),
        "standardised": sum(n["rows_standardised"] for n in normalised),
        "rows quarantined": sum(n["rows_rejected"] for n in normalised),
        "values quarantined": sum(n["values_quarantined"] for n in normalised),
        "persons": _masters(linked, "person"),
        "enterprises": _masters(linked, "enterprise"),
        "review queue": _frame_rows(linked, "person_review") + _frame_rows(linked, "enterprise_review"),
        "quality checks failed": validated.get("failed", 0),
        "facts with another owner": loaded.get("owner_changes", {}).get("count", 0),
    }
    return {"run_id": run["run_id"], "warehouse_url": _redact_url(run["warehouse_url"]), "headline": headline,
            "tables": tables, "linkage": _linkage_modes(linked), "data_docs": validated.get("docs_index"),
            "owner_changes": loaded.get("owner_changes", {"count": 0, "by_table": {}, "by_reason": {}, "examples": []})}


def _redact_url(url: str) -> str:
    """Never print a password that is part of a warehouse URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL: print as is
        return url


def _relative_to_page(target: str | None, page: str) -> str | None:
    """Links inside the report folder stay valid when the folder is copied or served."""
    import os

    if not target or "://" in page:
        return target
    return os.path.relpath(target, os.path.dirname(page))


def stage_timings(extracted: list[dict], normalised: list[dict], validated: dict, linked: dict, loaded: dict,
                  marted: dict, snapshots: list[dict] = ()) -> dict:
    """Seconds per stage. Mapped stages are summed over their tasks: seconds of work, whatever
    the parallelism. The link stage is link_plan + every partition + link_merge. `snapshots`:
    the snapshot tasks' results (each stage's timing is in its own results)."""
    return {"extract": round(sum(e.get("seconds", 0) for e in extracted), 3),
            "normalise": round(sum(n.get("seconds", 0) for n in normalised), 3),
            "snapshot": round(sum(s.get("seconds", 0) for s in snapshots), 3),
            "validate": validated.get("seconds", 0),
            "link": round(linked.get("plan_seconds", 0) + sum(linked.get("partition_seconds", []))
                          + linked.get("seconds", 0), 3),
            "load": loaded.get("seconds", 0), "marts": marted.get("seconds", 0)}


def _wall(tasks: list[dict]) -> float | None:
    """First start to last finish of a stage's timed tasks; None without timestamps (old manifests)."""
    timed = [t for t in tasks if "started" in t and "finished" in t]
    if not timed:
        return None
    return round(max(t["finished"] for t in timed) - min(t["started"] for t in timed), 3)


def stage_clock(extracted: list[dict], normalised: list[dict], validated: dict, linked: dict, loaded: dict,
                marted: dict, snapshots: list[dict] = ()) -> dict:
    """Per stage, shown apart: `wall_seconds` (first task's work start to last task's work finish:
    what the stage costs the run, its tasks side by side) and `task_seconds` (work summed over its
    tasks, whatever the parallelism: stage_timings), `tasks`, and `startup_seconds` (the tasks'
    start-up: imports, and in a forked task process the time since the fork; never counted as
    work). The link stage's wall is link_plan's seconds (it has no timestamps) plus the span of
    the partitions and link_merge. `total`: the pipeline's wall from the first stage's start to
    the last one's finish, the summed task seconds and start-up."""
    task_seconds = stage_timings(extracted, normalised, validated, linked, loaded, marted, snapshots)
    single = {"validate": validated, "load": loaded, "marts": marted}
    out = {}
    for stage, tasks in (("extract", extracted), ("normalise", normalised), ("snapshot", snapshots)):
        out[stage] = {"wall_seconds": _wall(tasks), "task_seconds": task_seconds[stage], "tasks": len(tasks),
                      "startup_seconds": round(sum(t.get("startup_seconds", 0) for t in tasks), 3),
                      "peak_rss_mb": _peak(tasks)}
    out["validate"] = _single(validated, task_seconds["validate"])
    partitions = linked.get("partition_seconds", [])
    span = linked.get("inputs_span")
    link_wall = None
    if "finished" in linked:
        link_wall = round(linked.get("plan_seconds", 0) + linked["finished"] - (span[0] if span else linked["started"]), 3)
    out["link"] = {"wall_seconds": link_wall, "task_seconds": task_seconds["link"], "tasks": len(partitions) + 2,
                   "startup_seconds": round(linked.get("startup_seconds", 0) + linked.get("inputs_startup_seconds", 0), 3),
                   "peak_rss_mb": max(_peak([linked]), linked.get("inputs_peak_rss_mb", 0))}
    out["load"] = _single(loaded, task_seconds["load"])
    out["marts"] = _single(marted, task_seconds["marts"])
    every = [*extracted, *normalised, *snapshots, *(t for t in single.values() if t), linked]
    starts = [t["started"] for t in every if "started" in t] + ([span[0]] if span else [])
    finishes = [t["finished"] for t in every if "finished" in t]
    out["total"] = {"wall_seconds": round(max(finishes) - min(starts), 3) if starts and finishes else None,
                    "task_seconds": round(sum(task_seconds.values()), 3),
                    "tasks": sum(v["tasks"] for v in out.values()),
                    "startup_seconds": round(sum(v["startup_seconds"] for v in out.values()), 3),
                    "peak_rss_mb": max(v["peak_rss_mb"] for v in out.values())}
    return out


def _single(result: dict, seconds: float) -> dict:
    return {"wall_seconds": _wall([result]) if result else None, "task_seconds": seconds, "tasks": 1 if result else 0,
            "startup_seconds": result.get("startup_seconds", 0) if result else 0,
            "peak_rss_mb": _peak([result] if result else [])}


def _peak(tasks: list[dict]) -> int:
    """The largest peak resident memory (MB) of a stage's tasks (or of the processes a task
    forked, e.g. validate's workers): what one worker must hold."""
    return max([max(t.get("peak_rss_mb", 0), t.get("workers_peak_rss_mb", 0)) for t in tasks] or [0])


def write_run_report(path: str, *, run: dict, extracted: list[dict], normalised: list[dict], validated: dict,
                     linked: dict, loaded: dict, marted: dict, retention: dict | None = None,
                     snapshots: list[dict] = ()) -> dict:
    summary = build_summary(run, normalised, linked, loaded, validated)
    summary["retention"] = retention or {}   # lake folders removed (govdata.retention)
    summary["records_by_kind"] = {k: sum(n["rows_in"] for n in normalised if n["kind"] == k)
                                  for k in sorted({n["kind"] for n in normalised})}
    summary["report_path"] = path
    timings = stage_timings(extracted, normalised, validated, linked, loaded, marted, snapshots)
    summary["timings"] = timings          # task seconds per stage (work, summed over the tasks)
    clock = stage_clock(extracted, normalised, validated, linked, loaded, marted, snapshots)
    summary["stage_clock"] = clock        # wall and task seconds apart, start-up apart
    quarantine_chart = {}
    for n in normalised:
        for reason, count in n["quarantine_reasons"].items():
            quarantine_chart[f"{n['source']}: {reason}"] = count
    dq = read_parquet(validated["dq_path"]) if validated.get("dq_path") else pd.DataFrame()
    scores = pd.Series(dtype=float)
    xref_path = linked.get("paths", {}).get("person_xref")
    if xref_path:
        xref = read_parquet(xref_path, columns=["match_rule", "match_score"])
        scores = xref.loc[xref["match_rule"] == "probabilistic", "match_score"]
    page = _env.get_template("run_report.html.j2").render(
        run=run, summary=summary, normalised=normalised, extracted=extracted,
        dq=dq.to_dict("records"), dq_failed=[r for r in dq.to_dict("records") if not r.get("success")],
        person_rules=_linkage_rules(linked, "person"), enterprise_rules=_linkage_rules(linked, "enterprise"),
        link_stats=linked.get("stats", {}), history_rows=_frame_rows(linked, "person_history") + _frame_rows(linked, "enterprise_history"),
        tables=loaded.get("tables", {}), marts=marted.get("marts", []),
        timing_chart=bar_chart_svg(timings, " s"), stage_clock=clock, quarantine_chart=bar_chart_svg(quarantine_chart),
        score_chart=bar_chart_svg(score_histogram(scores)),
        data_docs=_relative_to_page(validated.get("docs_index"), path),
    )
    with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as fh:
        fh.write(page)
    with fsspec.open(run_path(run["lake"], run["run_id"], "report", "summary.json"), "w", encoding="utf-8",
                     auto_mkdir=True) as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2, default=str)
    return summary
