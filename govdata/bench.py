"""`make bench`: generator time, per-stage time, records/s end to end, peak memory, and the
component rates each issue targets. Prints a table and writes bench/out/results.json."""
from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
OUT = Path("bench/out")


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main(persons: int = typer.Option(200_000), seed: int = typer.Option(7),
         keep: bool = typer.Option(False, help="Keep bench/out between runs")) -> None:
    from govdata.demo_data import generate

    if OUT.exists() and not keep:
        shutil.rmtree(OUT)
    os.environ["GOVDATA_HOME"] = str(OUT.resolve())
    results: dict = {"persons": persons}

    start = time.perf_counter()
    counts = generate(OUT / "world", persons=persons, seed=seed)
    results["generator_seconds"] = round(time.perf_counter() - start, 2)
    records = sum(v for v in counts.values() if isinstance(v, int))
    results["records"] = records

    from govdata.runner import run_pipeline

    start = time.perf_counter()
    summary = run_pipeline(OUT / "world" / "sources", full_refresh=True)
    total = time.perf_counter() - start
    results["pipeline_seconds"] = round(total, 2)
    results["stage_seconds"] = summary.get("timings", {})
    results["records_per_second_end_to_end"] = round(records / total)
    results["headline"] = summary.get("headline", {})

    from govdata.evaluate import evaluate_run

    results["linkage_quality"] = evaluate_run(OUT / "world", summary)
    results["peak_rss_mb"] = round(peak_rss_mb())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    show(results)


def show(results: dict) -> None:
    table = Table(title=f"govdata bench — {results['persons']:,} persons")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        if isinstance(value, dict):
            for k, v in value.items():
                table.add_row(f"{key}.{k}", str(v))
        else:
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
