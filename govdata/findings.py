"""The findings report: what the reform achieved, from the analyst marts, for stewards and analysts.

One static HTML page per run (`<lake>/<run>/report/findings.html`, inline SVG charts, no script,
no network): once-only collection per department and data element, on-time handling per service
item and channel, satisfaction (好差评), proactive service, certificate reuse, and the headline
indicators of the last runs (kept in the warehouse table findings_history). Chinese by default;
GOVDATA_LANG=en switches to English. Numbers are formatted for the reader: 1.2万 and 98.0% in
Chinese, 12,345 and 98.0% in English.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import fsspec
import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from govdata.charts import share_bars, sparkline, stacked_bars
from govdata.lake import run_path
from govdata.page_text import page_text
from govdata.standards.registry import STANDARDS_ROOT

log = logging.getLogger(__name__)

_env = Environment(loader=PackageLoader("govdata", "templates"), autoescape=select_autoescape(["html", "j2"]))
HISTORY_RUNS = 10   # runs shown in the trends

# headline indicator -> (zh, en); stored per run in findings_history (value in 0..1 or a count)
INDICATORS = {
    "once_only_person": ("自然人数据多部门复用率", "persons also held by another department"),
    "once_only_enterprise": ("法人数据多部门复用率", "enterprises also held by another department"),
    "on_time": ("按时办结率", "completed within the legal time limit"),
    "online": ("网办率", "applications submitted online"),
    "satisfied": ("好评率", "ratings 4–5 (好评)"),
    "dissatisfied": ("差评率", "ratings 1–2 (差评)"),
    "certificate_reuse": ("证照复用率", "certificates presented again in an application"),
    "proactive_reachable": ("到期证照可主动提醒率", "expiring certificates whose holder can be reminded"),
    "proactive_due": ("90天内到期证照数", "certificates expiring within 90 days"),
}
COUNT_INDICATORS = {"proactive_due"}

TEXT = page_text("findings")   # language -> key -> text (templates/findings.text.yaml)


def language() -> str:
    """GOVDATA_LANG: zh-CN (default) or en (en, en-US, en_GB…)."""
    value = os.environ.get("GOVDATA_LANG", "zh-CN").strip().lower().replace("_", "-")
    return "en" if value.startswith("en") else "zh-CN"


# --- number formatting ------------------------------------------------------------------------
def _trim(x: float) -> str:
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def format_count(n, lang: str = "zh-CN") -> str:
    """Counts for the reader: 8,460 / 1.2万 / 3.4亿 in Chinese, 12,345 in English."""
    if n is None or pd.isna(n):
        return "–"
    n = int(round(float(n)))
    if lang == "en":
        return f"{n:,}"
    if abs(n) >= 100_000_000:
        return f"{_trim(n / 100_000_000)}亿"
    if abs(n) >= 10_000:
        return f"{_trim(n / 10_000)}万"
    return f"{n:,}"


def format_share(x, lang: str = "zh-CN") -> str:
    """A share 0..1 as a percentage with one decimal (98.0%)."""
    if x is None or pd.isna(x):
        return "–"
    return f"{float(x) * 100:.1f}%"


def format_number(x, digits: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else f"{float(x):.{digits}f}"


def format_delta(now, before, is_share: bool, lang: str) -> str:
    if now is None or before is None or pd.isna(now) or pd.isna(before):
        return ""
    d = float(now) - float(before)
    if is_share:
        pts = "个百分点" if lang == "zh-CN" else " pts"
        return f"{d * 100:+.1f}{pts}"
    return f"{d:+,.0f}"


# --- charts (inline SVG, no script) -----------------------------------------------------------
# --- labels -----------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _code_names(table: str, lang: str) -> dict[str, str]:
    frame = pd.read_csv(STANDARDS_ROOT / "codes" / f"{table}.csv", dtype=str, keep_default_na=False)
    column = "name_en" if lang == "en" and "name_en" in frame else "name"
    return dict(zip(frame["code"], frame[column]))


@lru_cache(maxsize=None)
def _element_labels(lang: str) -> dict[str, str]:
    data = yaml.safe_load((STANDARDS_ROOT / "elements.yaml").read_text(encoding="utf-8")) or {}
    labels: dict[str, str] = {}
    for elements in data.values():
        for name, spec in (elements or {}).items():
            if isinstance(spec, dict):
                labels.setdefault(name, spec.get("en" if lang == "en" else "zh") or name)
    return labels


def source_departments(run: dict) -> pd.DataFrame:
    """source_system, department (the source YAML's `department:`), kind, elements it maps."""
    rows = []
    for s in run.get("sources", []):
        department, elements = s["name"], []
        try:
            spec = yaml.safe_load(Path(s["path"]).read_text(encoding="utf-8")) or {}
            department = spec.get("department") or department
            for value in (spec.get("columns") or {}).values():
                element = value.get("element") if isinstance(value, dict) else value
                if element:
                    elements.append(str(element))
        except OSError:   # the YAML moved since the run: fall back on the source id
            log.warning("source YAML %s not readable: department shown by its source id", s.get("path"))
        rows.append({"source_system": s["name"], "department": str(department), "kind": s.get("kind"),
                     "elements": elements})
    return pd.DataFrame(rows, columns=["source_system", "department", "kind", "elements"])


# --- data from the marts ----------------------------------------------------------------------
def _query(url: str, sql: str) -> pd.DataFrame:
    from govdata.warehouse.load import connect

    with connect(url, read_only=True) as db:
        return db.fetch_arrow(sql).to_pandas()


def _weighted(frame: pd.DataFrame, share: str, weight: str) -> float | None:
    f = frame.dropna(subset=[share])
    total = f[weight].sum()
    return float((f[share] * f[weight]).sum() / total) if total else None


def collect(url: str, run: dict, lang: str) -> dict:
    """Everything the page shows, from the marts and the source YAMLs (aggregates only)."""
    sources = source_departments(run)
    dept = dict(zip(sources["source_system"], sources["department"]))
    once = _query(url, "SELECT entity, source_system, records, entities, shared_entities, shared_share "
                       "FROM mart_once_only ORDER BY entity DESC, shared_share DESC, source_system")
    once["department"] = once["source_system"].map(dept).fillna(once["source_system"])

    timely = _query(url, "SELECT service_item_code, channel, volume, completed, median_working_days, "
                         "within_limit_share, online_share FROM mart_service_timeliness")
    items = _query(url, "SELECT service_item_code, name, department FROM dim_service_item")
    item_name = dict(zip(items["service_item_code"], items["name"]))
    channels = _code_names("channel", lang)
    timely["on_time_n"] = timely["within_limit_share"].fillna(0) * timely["completed"]
    timely["online_n"] = timely["online_share"] * timely["volume"]
    timely["has_limit"] = timely["completed"].where(timely["within_limit_share"].notna(), 0)

    def timeliness_by(key: str) -> pd.DataFrame:
        g = timely.groupby(key, dropna=False).agg(volume=("volume", "sum"), completed=("completed", "sum"),
                                                  on_time_n=("on_time_n", "sum"), has_limit=("has_limit", "sum"),
                                                  online_n=("online_n", "sum")).reset_index()
        g["on_time"] = g["on_time_n"] / g["has_limit"].where(g["has_limit"] > 0)
        g["online"] = g["online_n"] / g["volume"].where(g["volume"] > 0)
        return g

    by_item = timeliness_by("service_item_code")
    by_item["label"] = by_item["service_item_code"].map(item_name).fillna(by_item["service_item_code"])
    by_item["department"] = by_item["service_item_code"].map(dict(zip(items["service_item_code"], items["department"])))
    medians = _query(url, "SELECT service_item_code, CAST(percentile_cont(0.5) WITHIN GROUP "
                          "(ORDER BY working_days_taken) AS DOUBLE PRECISION) AS median_days FROM fact_application "
                          "WHERE completed_at IS NOT NULL GROUP BY service_item_code")
    by_item = by_item.merge(medians, how="left", on="service_item_code").sort_values(
        ["on_time", "volume"], ascending=[True, False])
    by_channel = timeliness_by("channel")
    by_channel["label"] = by_channel["channel"].map(channels).fillna(by_channel["channel"])
    by_channel = by_channel.sort_values("volume", ascending=False)

    sat = _query(url, "SELECT service_item_code, channel, rated, avg_rating, satisfied_share, dissatisfied_share "
                      "FROM mart_satisfaction WHERE rated > 0")
    sat["good_n"] = sat["satisfied_share"] * sat["rated"]
    sat["bad_n"] = sat["dissatisfied_share"] * sat["rated"]
    sat["sum_n"] = sat["avg_rating"] * sat["rated"]

    def satisfaction_by(key: str, labels: dict) -> pd.DataFrame:
        g = sat.groupby(key).agg(rated=("rated", "sum"), good_n=("good_n", "sum"), bad_n=("bad_n", "sum"),
                                 sum_n=("sum_n", "sum")).reset_index()
        g["good"], g["bad"] = g["good_n"] / g["rated"], g["bad_n"] / g["rated"]
        g["neutral"] = (1 - g["good"] - g["bad"]).clip(lower=0)
        g["avg"] = g["sum_n"] / g["rated"]
        g["label"] = g[key].map(labels).fillna(g[key])
        return g.sort_values("rated", ascending=False)

    sat_channel = satisfaction_by("channel", channels)
    sat_item = satisfaction_by("service_item_code", item_name).sort_values("good")

    proactive = _query(url, "SELECT reason, window_days, certificate_type, person_id, enterprise_id "
                            "FROM mart_proactive_service")
    certs = proactive[proactive["reason"] == "certificate_expiry"].copy()
    certs["reachable"] = certs["person_id"].notna() | certs["enterprise_id"].notna()
    cert_names = _code_names("certificate_type", "zh-CN")
    cert_label = (lambda c: str(c).replace("_", " ")) if lang == "en" else (lambda c: cert_names.get(c, c))
    pro_type = certs.groupby("certificate_type").agg(due=("reachable", "size"), reachable=("reachable", "sum"),
                                                     due30=("window_days", lambda w: int((w == 30).sum()))
                                                     ).reset_index()
    pro_type["coverage"] = pro_type["reachable"] / pro_type["due"]
    pro_type["label"] = pro_type["certificate_type"].map(cert_label)
    pro_type = pro_type.sort_values("due", ascending=False)
    pro_window = {w: {"due": int((certs["window_days"] == w).sum()),
                      "reachable": int(certs.loc[certs["window_days"] == w, "reachable"].sum())} for w in (30, 90)}
    retirement = int((proactive["reason"] == "retirement").sum())

    reuse = _query(url, "SELECT certificate_type, issuer, issued, reused_certificates, reuse_applications, "
                        "reuse_share FROM mart_certificate_reuse ORDER BY reuse_share DESC, certificate_type")
    reuse["label"] = reuse["certificate_type"].map(cert_label)

    def share_of(frame: pd.DataFrame, num: str, den: str) -> float | None:
        d = frame[den].sum()
        return float(frame[num].sum() / d) if d else None

    indicators = {
        "once_only_person": share_of(once[once["entity"] == "person"], "shared_entities", "entities"),
        "once_only_enterprise": share_of(once[once["entity"] == "enterprise"], "shared_entities", "entities"),
        "on_time": share_of(timely, "on_time_n", "has_limit"),
        "online": share_of(timely, "online_n", "volume"),
        "satisfied": share_of(sat, "good_n", "rated"),
        "dissatisfied": share_of(sat, "bad_n", "rated"),
        "certificate_reuse": share_of(reuse, "reused_certificates", "issued"),
        "proactive_reachable": float(certs["reachable"].mean()) if len(certs) else None,
        "proactive_due": float(len(certs)),
    }
    return {"sources": sources, "once": once, "by_item": by_item, "by_channel": by_channel,
            "sat_channel": sat_channel, "sat_item": sat_item, "pro_type": pro_type, "pro_window": pro_window,
            "retirement": retirement, "reuse": reuse, "indicators": indicators,
            "totals": {"volume": int(timely["volume"].sum()), "completed": int(timely["completed"].sum()),
                       "rated": int(sat["rated"].sum()), "issued": int(reuse["issued"].sum())}}


# --- history ----------------------------------------------------------------------------------
def record_history(url: str, run_id: str, indicators: dict) -> pd.DataFrame:
    """This run's headline indicators into findings_history (one row per indicator; a rerun of
    the same run replaces its rows)."""
    from govdata.warehouse.load import load_tables

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = pd.DataFrame([{"run_id": run_id, "indicator": k, "value": v, "recorded_at": now}
                         for k, v in indicators.items()])
    load_tables(url, {"findings_history": rows}, run_id)
    return rows


def history(url: str, runs: int = HISTORY_RUNS) -> pd.DataFrame:
    """indicator × run (oldest first) for the last `runs` runs."""
    from govdata.warehouse.load import read_table

    frame = read_table(url, "findings_history")
    if frame is None or frame.empty:
        return pd.DataFrame()
    order = frame.groupby("run_id")["recorded_at"].max().sort_values()
    keep = list(order.index[-runs:])
    wide = frame[frame["run_id"].isin(keep)].pivot_table(index="indicator", columns="run_id", values="value",
                                                         aggfunc="last")
    return wide.reindex(columns=keep)


# --- page -------------------------------------------------------------------------------------
def _headline_cards(indicators: dict, trend: pd.DataFrame, lang: str) -> list[dict]:
    cards = []
    for key, (zh, en) in INDICATORS.items():
        value = indicators.get(key)
        is_share = key not in COUNT_INDICATORS
        series = list(trend.loc[key]) if not trend.empty and key in trend.index else [value]
        previous = series[-2] if len(series) >= 2 else None
        cards.append({"key": key, "label": en if lang == "en" else zh,
                      "value": format_share(value, lang) if is_share else format_count(value, lang),
                      "delta": format_delta(value, previous, is_share, lang), "spark": sparkline(series)})
    return cards


def _run_label(run_id: str) -> str:
    """manual__2026-12-02T02:47:07.604559+00:00 -> 2026-12-02 02:47 (the trend table's header)."""
    stamp = run_id.split("__", 1)[-1]
    try:
        return pd.Timestamp(stamp).tz_convert("Asia/Shanghai").strftime("%m-%d %H:%M")
    except (ValueError, TypeError):
        return stamp[:16]


def render(data: dict, run: dict, trend: pd.DataFrame, lang: str, links: dict) -> str:
    t = TEXT[lang]
    fc = lambda n: format_count(n, lang)   # noqa: E731
    fs = lambda x: format_share(x, lang)   # noqa: E731
    once = data["once"]
    kind_label = {"person": t["person"], "enterprise": t["enterprise"]}
    once_rows = [{"department": r.department, "source": r.source_system, "entity": kind_label.get(r.entity, r.entity),
                  "records": fc(r.records), "entities": fc(r.entities), "shared": fc(r.shared_entities),
                  "share": fs(r.shared_share)} for r in once.itertuples()]
    once_chart = share_bars([(f"{r.department}（{kind_label.get(r.entity, r.entity)}）" if lang == "zh-CN"
                              else f"{r.department} ({r.entity})", r.shared_share, fs(r.shared_share))
                             for r in once.itertuples()])
    # department × element: who collects which element
    src = data["sources"]
    src = src[src["kind"].isin(["person", "enterprise"])]
    labels = _element_labels(lang)
    skip = {"updated_at"}
    element_order: list[str] = []
    for elements in src["elements"]:
        element_order += [e for e in elements if e not in element_order and e not in skip]
    matrix = [{"element": labels.get(e, e), "code": e,
               "cells": [e in elements for elements in src["elements"]],
               "count": sum(e in elements for elements in src["elements"])} for e in element_order]
    matrix.sort(key=lambda m: -m["count"])

    items = data["by_item"]
    item_chart = share_bars([(r.label, r.on_time, fs(r.on_time)) for r in items.itertuples()], color="#1f8a5b")
    item_rows = [{"label": r.label, "department": r.department or "", "volume": fc(r.volume),
                  "completed": fc(r.completed), "on_time": fs(r.on_time), "median": format_number(r.median_days),
                  "online": fs(r.online)} for r in items.itertuples()]
    chan = data["by_channel"]
    channel_chart = share_bars([(r.label, r.on_time, fs(r.on_time)) for r in chan.itertuples()], width=520,
                               color="#1f8a5b")
    channel_rows = [{"label": r.label, "volume": fc(r.volume), "completed": fc(r.completed), "on_time": fs(r.on_time)}
                    for r in chan.itertuples()]
    sat_colors = ["#1f8a5b", "#c9a227", "#c0392b"]
    sat_chart = stacked_bars([(r.label, [r.good, r.neutral, r.bad]) for r in data["sat_channel"].itertuples()],
                             sat_colors)
    sat_item_chart = stacked_bars([(r.label, [r.good, r.neutral, r.bad]) for r in data["sat_item"].itertuples()],
                                  sat_colors)
    sat_rows = [{"label": r.label, "rated": fc(r.rated), "avg": format_number(r.avg, 2), "good": fs(r.good),
                 "neutral": fs(r.neutral), "bad": fs(r.bad)} for r in data["sat_channel"].itertuples()]
    pro = data["pro_type"]
    pro_chart = share_bars([(r.label, r.coverage, f"{fs(r.coverage)}（{fc(r.reachable)}/{fc(r.due)}）"
                             if lang == "zh-CN" else f"{fs(r.coverage)} ({fc(r.reachable)}/{fc(r.due)})")
                            for r in pro.itertuples()], color="#8e44ad")
    pro_rows = [{"label": r.label, "due": fc(r.due), "due30": fc(r.due30), "reachable": fc(r.reachable),
                 "coverage": fs(r.coverage)} for r in pro.itertuples()]
    windows = [{"label": t["days30"] if w == 30 else t["days90"], "due": fc(v["due"]), "reachable": fc(v["reachable"]),
                "coverage": fs(v["reachable"] / v["due"]) if v["due"] else "–"} for w, v in data["pro_window"].items()]
    reuse = data["reuse"]
    reuse_chart = share_bars([(r.label, r.reuse_share, fs(r.reuse_share)) for r in reuse.itertuples()], color="#d35400")
    reuse_rows = [{"label": r.label, "issuer": r.issuer, "issued": fc(r.issued), "reused": fc(r.reused_certificates),
                   "apps": fc(r.reuse_applications), "share": fs(r.reuse_share)} for r in reuse.itertuples()]
    trend_rows = []
    if not trend.empty:
        for key, (zh, en) in INDICATORS.items():
            if key in trend.index:
                is_share = key not in COUNT_INDICATORS
                trend_rows.append({"label": en if lang == "en" else zh, "spark": sparkline(list(trend.loc[key])),
                                   "values": [(fs(v) if is_share else fc(v)) for v in trend.loc[key]]})
    generated = datetime.now(timezone.utc).astimezone(_shanghai())
    return _env.get_template("findings.html.j2").render(
        t=t, lang=lang, run=run, links=links,
        generated=(f"{generated.year}年{generated.month}月{generated.day}日 {generated:%H:%M}" if lang == "zh-CN"
                   else f"{generated:%Y-%m-%d %H:%M} (UTC+8)"),
        cards=_headline_cards(data["indicators"], trend, lang), once_rows=once_rows, once_chart=once_chart,
        departments=list(src["department"]), matrix=matrix, item_chart=item_chart, item_rows=item_rows,
        channel_chart=channel_chart, channel_rows=channel_rows, sat_chart=sat_chart, sat_item_chart=sat_item_chart,
        sat_rows=sat_rows, sat_colors=sat_colors, pro_chart=pro_chart, pro_rows=pro_rows, windows=windows,
        retirement=fc(data["retirement"]), reuse_chart=reuse_chart, reuse_rows=reuse_rows,
        trend_runs=[_run_label(r) for r in trend.columns] if not trend.empty else [], trend_rows=trend_rows,
        totals={k: fc(v) for k, v in data["totals"].items()}, n_runs=len(trend.columns) if not trend.empty else 1)


def _shanghai():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def write_findings(manifest: dict, lang: str | None = None) -> dict:
    """findings.html for the manifest's run (after the marts are refreshed); records the run's
    headline indicators in findings_history first, so the page's trends include this run."""
    run = manifest["run"]
    lang = lang or language()
    url = run["warehouse_url"]
    data = collect(url, run, lang)
    record_history(url, run["run_id"], data["indicators"])
    trend = history(url)
    path = run_path(run["lake"], run["run_id"], "report", "findings.html")
    links = {"run_report": "index.html", "review": "review.html",
             "data_docs": "data_docs/index.html" if manifest.get("validated", {}).get("docs_index") else None}
    page = render(data, run, trend, lang, links)
    with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as fh:
        fh.write(page)
    return {"findings_path": path, "indicators": data["indicators"], "bytes": len(page.encode("utf-8"))}
