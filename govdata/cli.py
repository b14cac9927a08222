"""`govdata` command line: the same stages the DAG runs, for engineers and stewards."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="govdata — government data integration and master data.", no_args_is_help=True)
standards_app = typer.Typer(help="Standards owned by data stewards.", no_args_is_help=True)
sources_app = typer.Typer(help="Onboarding department sources.", no_args_is_help=True)
review_app = typer.Typer(help="Clerical review of uncertain matches.", no_args_is_help=True)
warehouse_app = typer.Typer(help="The shared warehouse.", no_args_is_help=True)
app.add_typer(standards_app, name="standards")
app.add_typer(sources_app, name="sources")
app.add_typer(review_app, name="review")
app.add_typer(warehouse_app, name="warehouse")

from govdata.sharing.cli import register as _register_sharing  # noqa: E402 - needs `app`

_register_sharing(app)   # `share`, `catalogue` and `serve`: govdata/sharing/cli.py

console = Console(stderr=True)


@app.command("demo-data")
def demo_data(out: Path = typer.Argument(..., help="Folder for departments/, sources/ and truth/"),
              persons: int = typer.Option(20_000, help="Number of persons in the demo world"),
              seed: int = typer.Option(42, help="Random seed (same seed, same world)")) -> None:
    """Generate the demo departments (SQLite databases + source YAMLs + ground truth)."""
    from govdata.demo_data import generate

    with console.status(f"generating {persons:,} persons…"):
        counts = generate(out, persons=persons, seed=seed)
    _print_counts("demo departments", counts)
    console.print(f"sources: [bold]{out / 'sources'}[/]")


@app.command()
def run(sources: Path = typer.Option(..., "--sources", help="Folder of source YAML files"),
        warehouse: Optional[str] = typer.Option(None, "--warehouse", envvar="GOVDATA_WAREHOUSE_URL",
                                                help="SQLAlchemy URL of the warehouse (default: DuckDB file)"),
        lake: Optional[str] = typer.Option(None, "--lake", envvar="GOVDATA_LAKE", help="Lake folder or fsspec URL"),
        full_refresh: bool = typer.Option(False, "--full-refresh", help="Ignore watermarks, extract everything"),
        workers: Optional[int] = typer.Option(None, "--workers", envvar="GOVDATA_RUN_WORKERS", min=1,
                                              help="Tasks run side by side (default: one per core, at most 2; "
                                                   "1 runs every task in this process)")) -> None:
    """Run the govdata_pipeline DAG (Airflow's dag.test()) on a folder of sources.

    A preflight (what `govdata check` shows) runs first, before Airflow is started: any problem
    is printed as one line (where, what, how to fix) and nothing is run. With more than one
    worker the tasks run on Airflow's LocalExecutor, mapped tasks side by side."""
    from govdata.preflight import preflight

    warehouse, lake = _warehouse_and_lake(warehouse, lake)
    with _one_line_errors():
        report = preflight(sources, warehouse, lake)
    if report.problems:
        for check in report.problems:
            _line(f"error: {check.line()}")
        raise typer.Exit(1)
    from govdata.runner import PipelineFailed, run_pipeline

    with _one_line_errors():
        try:
            summary = run_pipeline(sources, warehouse, lake, full_refresh, workers=workers)
        except PipelineFailed as exc:
            for line in exc.lines:  # the last names the task that failed first, and its error
                _line(line)
            raise typer.Exit(1) from None
    print_summary(summary)


@app.command()
def check(sources: Path = typer.Option(..., "--sources", help="Folder of source YAML files"),
          warehouse: Optional[str] = typer.Option(None, "--warehouse", envvar="GOVDATA_WAREHOUSE_URL",
                                                  help="SQLAlchemy URL of the warehouse (default: DuckDB file)"),
          lake: Optional[str] = typer.Option(None, "--lake", envvar="GOVDATA_LAKE", help="Lake folder or fsspec URL")
          ) -> None:
    """Check sources, connections, tables, mapped columns and the warehouse without extracting (like `dbt debug`).

    One line per check; the problems last, each with where, what and how to fix. Exit 1 on problems."""
    from govdata.preflight import preflight

    warehouse, lake = _warehouse_and_lake(warehouse, lake)
    with _one_line_errors():
        report = preflight(sources, warehouse, lake)
    for item in report.checks:
        if item.ok:
            _line(f"ok     {item.line()}")
    for item in report.problems:
        _line(f"error  {item.line()}")
    if report.problems:
        raise typer.Exit(1)
    _line(f"all {len(report.checks)} checks passed")


def _line(text: str) -> None:
    """One unwrapped line on stderr (rich would wrap long lines at the terminal width)."""
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _one_line_errors():
    """An unexpected error ends the command with one redacted line instead of a traceback
    (GOVDATA_DEBUG=1 shows the traceback)."""
    import os

    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("GOVDATA_DEBUG"):
            raise
        from govdata.errors import describe

        _line(f"error: {describe(exc)}")
        raise typer.Exit(1) from None


def print_summary(summary: dict) -> None:
    table = Table(title="govdata run", show_header=False)
    for key, value in summary.get("headline", {}).items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    paths = {label: summary.get(key) for label, key in
             (("warehouse", "warehouse_url"), ("report", "report_path"), ("data docs", "data_docs"))}
    if summary.get("report_path"):   # the analysts' and stewards' pages beside the run report
        folder = Path(summary["report_path"]).parent
        paths.update({label: str(folder / name) for label, name in
                      (("findings", "findings.html"), ("review page", "review.html")) if (folder / name).exists()})
    for label, path in paths.items():
        if path:
            # soft_wrap: a path is copied whole from the terminal, never broken over lines
            console.print(f"{label}: [bold]{path}[/]", soft_wrap=True)


def _print_counts(title: str, counts: dict) -> None:
    table = Table(title=title)
    table.add_column("source")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(str(name), f"{n:,}" if isinstance(n, int) else str(n))
    console.print(table)


@app.command()
def demo(out: Path = typer.Option(Path("demo"), help="Demo folder"),
         persons: int = typer.Option(20_000), seed: int = typer.Option(42),
         workers: Optional[int] = typer.Option(None, "--workers", envvar="GOVDATA_RUN_WORKERS", min=1,
                                               help="Tasks run side by side, as for `govdata run`")) -> None:
    """Generate the demo world and run the pipeline on it (what `make demo` does)."""
    import os

    os.environ.setdefault("GOVDATA_HOME", str(out.resolve()))
    demo_data(out / "world", persons, seed)
    # every option given: called as a function, typer's defaults would arrive as OptionInfo objects
    run(sources=out / "world" / "sources", warehouse=None, lake=None, full_refresh=True, workers=workers)


@standards_app.command("check")
def standards_check(root: Optional[Path] = typer.Option(None, help="standards folder (default: the shipped one)"),
                    sources: Optional[Path] = typer.Option(None, help="also check a folder of source YAMLs")) -> None:
    """Validate standards/ (and source mappings); exit 1 with a readable report on problems."""
    from govdata.standards.check import check_standards

    problems = check_standards(root, sources)
    if not problems:
        console.print("[green]standards OK[/]")
        return
    table = Table(title=f"{len(problems)} problem(s) in standards")
    for col in ("file", "where", "problem"):
        table.add_column(col)
    for p in problems:
        table.add_row(p.file, p.location, p.message)
    console.print(table)
    raise typer.Exit(1)


@standards_app.command("docs")
def standards_docs(sources: Optional[Path] = typer.Option(None, help="folder of source YAMLs to show who supplies what"),
                   out: Optional[Path] = typer.Option(None, help="write Markdown here instead of stdout")) -> None:
    """Render the data dictionary: elements, code tables, and which department supplies which element."""
    from govdata.standards.docs import render_data_dictionary
    from govdata.standards.registry import load_standards
    from govdata.standards.sources import load_sources

    text = render_data_dictionary(load_standards(), load_sources(sources) if sources else [])
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"data dictionary: [bold]{out}[/]")
    else:
        print(text)


@sources_app.command("suggest")
def sources_suggest(url: str = typer.Argument(..., help="SQLAlchemy URL of the department database"),
                    out: Optional[Path] = typer.Option(None, help="write one <table>.yaml per table here")) -> None:
    """Profile an unknown database and propose a source YAML per table (evidence as comments)."""
    from govdata.suggest import SuggestError, suggest_sources
    from govdata.standards.registry import load_standards

    try:
        proposals = suggest_sources(url, load_standards())
    except SuggestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for table, text in proposals.items():
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{table.lower()}.yaml").write_text(text, encoding="utf-8")
        else:
            print(f"--- # {table}\n{text}")
    if out:
        console.print(f"{len(proposals)} proposal(s) in [bold]{out}[/]")


def _warehouse_and_lake(warehouse: Optional[str], lake: Optional[str]) -> tuple[str, str]:
    from govdata.settings import get_settings

    settings = get_settings()
    return warehouse or settings.warehouse_url, lake or settings.lake


WAREHOUSE_OPT = typer.Option(None, "--warehouse", envvar="GOVDATA_WAREHOUSE_URL", help="warehouse SQLAlchemy URL")
LAKE_OPT = typer.Option(None, "--lake", envvar="GOVDATA_LAKE", help="lake folder or fsspec URL")


@review_app.command("export")
def review_export(out: Path = typer.Argument(..., help="CSV file to write"),
                  entity: str = typer.Option("person", help="person | enterprise"),
                  warehouse: Optional[str] = WAREHOUSE_OPT, lake: Optional[str] = LAKE_OPT) -> None:
    """Write the open review pairs (both records side by side, identifiers masked, per-field weights)."""
    from govdata.operations import export_review

    n = export_review(*_warehouse_and_lake(warehouse, lake), out, entity)
    console.print(f"{n} open {entity} pair(s) in [bold]{out}[/]: fill in decision (match | non_match)")


@review_app.command("import")
def review_import(path: Path = typer.Argument(..., exists=True, help="filled-in review CSV"),
                  entity: str = typer.Option("person", help="person | enterprise"),
                  who: Optional[str] = typer.Option(None, help="steward name (default: the login)"),
                  warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Store steward decisions; every later run applies them."""
    from govdata.operations import import_review

    url, _ = _warehouse_and_lake(warehouse, None)
    n = import_review(url, path, entity, who)
    console.print(f"{n} decision(s) stored; they apply from the next run")


@app.command()
def evaluate(world: Path = typer.Option(..., "--world", help="generated world (with truth/)"),
             warehouse: Optional[str] = WAREHOUSE_OPT, lake: Optional[str] = LAKE_OPT) -> None:
    """Score the latest run's linkage against the generator's truth (pairwise P/R/F1, errors by cause)."""
    from govdata.operations import evaluate_latest

    started = time.perf_counter()
    result = evaluate_latest(*_warehouse_and_lake(warehouse, lake), world,
                             progress=lambda line: console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/] {line}"))
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))


@app.command()
def identify(tokens: list[str] = typer.Argument(..., help="person, phone or legal-representative token(s)"),
             reason: str = typer.Option(..., "--reason", help="why the raw identifier is needed (audited)"),
             second_reason: Optional[str] = typer.Option(
                 None, "--second-reason", help="required above GOVDATA_IDENTIFY_BULK_LIMIT tokens (audited)"),
             warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Resolve tokens to raw identifiers, stewards only: on PostgreSQL the database checks the login
    role (govdata_steward) and audits it; on DuckDB whoever can read the key file, audited by OS account."""
    from govdata.warehouse.vault import identify as resolve

    url, _ = _warehouse_and_lake(warehouse, None)
    try:
        values = resolve(url, tokens, reason, second_reason)
    except (LookupError, ValueError, PermissionError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    for tok, value in values.items():
        print(value if len(values) == 1 else f"{tok}\t{value}")


vault_app = typer.Typer(help="The personal-data vault.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")


@vault_app.command("rotate-key")
def vault_rotate_key(warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """New token/encryption key: vault re-encrypted, warehouse tokens re-mapped (docs/SECURITY.md)."""
    from govdata.warehouse.vault import rotate_settings_key

    url, _ = _warehouse_and_lake(warehouse, None)
    try:
        result = rotate_settings_key(url)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    print(json.dumps(result, indent=2))
    console.print("key rotated: run `govdata run --full-refresh` now to re-tokenise what the vault cannot map")


@warehouse_app.command("init")
def warehouse_init(warehouse: Optional[str] = WAREHOUSE_OPT) -> None:
    """Create the schema (and on PostgreSQL the roles govdata_loader/steward/analyst)."""
    from govdata.warehouse.load import init_warehouse

    url, _ = _warehouse_and_lake(warehouse, None)
    init_warehouse(url)
    console.print("warehouse ready")


if __name__ == "__main__":
    sys.exit(app())
