"""Run the generated suites on standardised frames with ephemeral GX contexts.

Per source, one dataframe asset: the source's frame is validated against its suite, then a
one-row summary frame against its quarantine-rate suite. Result format BASIC with
partial_unexpected_count 0: GX then returns counts only, so no raw ID or phone value can reach
dq_result, logs or Data Docs.

At scale (issue 14) the same expectations run on batches that are cheap to validate: each
source is read in its checked columns only, text as Arrow (no Python object per value) and
then coded or kept as Arrow text (as_checked_text), dates and integers in numpy dtypes; GX's
regex metric runs per distinct value or in RE2 when that is exact (regex_metric.py); sources are
validated side by side in forked worker processes, one source per process; one Data Docs site
is built from all results and the dq_result rows come in source order.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Quiet at the source (one GX run logs ~210 INFO lines and a warning per regex check):
# - great_expectations._docs_decorators logs "Skipping registering function …" at INFO for
#   every closure it meets while GX builds a context: GX's own API-docs bookkeeping.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
# - pandas warns from inside GX's regex metric (str.contains) when a pattern has groups, e.g.
#   the standards' `^(1\d{10}|0\d{9,11})$`; GX only tests for a match, so the groups are harmless.
warnings.filterwarnings("ignore", message="This pattern is interpreted as a regular expression, and has match groups",
                        category=UserWarning, module=r"great_expectations\.")
# - GX imports the deprecated sre_constants / sre_parse modules (Python 3.11 DeprecationWarning).
warnings.filterwarnings("ignore", message=r"module 'sre_(constants|parse)' is deprecated", category=DeprecationWarning,
                        module=r"great_expectations\.")

import great_expectations as gx  # after the logger level and warning filters above
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

# That module sets its own logger to INFO when imported ("Created temporary directory … for
# ephemeral docs site" on every context): back to WARNING like the rest of GX.
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

# GX fingerprints every in-memory batch under HASH_THRESHOLD bytes with an md5 over
# pd.util.hash_pandas_object of all its cells: ~1 s per million rows of Arrow text, on each suite
# run. The fingerprint only goes to the result's batch_markers, which neither dq_result nor the
# gate reads, and GX already leaves it out for batches above 1 GB. Off for every batch.
pandas_execution_engine.HASH_THRESHOLD = 0

from govdata.expectations import unexpected_values  # noqa: F401 - registers its GX metric provider
from govdata.expectations.column_batches import run_suite_by_column
from govdata.expectations.outcome import ValidationOutcome, outcome_from_rows
from govdata.expectations.columns import (  # noqa: F401 - as_* re-exported for callers of the run module
    as_checked_text,
    as_datetime_ns,
    as_float,
    checked_text_frame,
    prepare_columns,
)
from govdata import forking
from govdata.forking import can_fork, fork_pool  # noqa: F401 - can_fork re-exported
from govdata.memory import peak_rss_mb, release_memory
from govdata.expectations.suites import (
    build_quarantine_suite,
    build_suite,
    load_quality_config,
)
from govdata.standards.model import SourceConfig, Standards

log = logging.getLogger(__name__)

RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0, "include_unexpected_rows": False}
DOCS_SITE = "govdata"
DATASOURCE = "govdata"
RAW_KEYS = ("raw_rows", "raw")
REJECTED_KEYS = ("rejected_rows", "rejected")
LONG_DIGITS = re.compile(r"\d{7,}[\dXx]*")


def ephemeral_context(docs_dir: Path | None = None):
    """In-memory GX context, quiet (no progress bars), with a local Data Docs site if asked
    and the one pandas data source every suite run uses."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        docs_dir = Path(docs_dir).resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name=DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    context.data_sources.add_pandas(DATASOURCE)
    return context


def run_suite(context, asset_name: str, suite: gx.ExpectationSuite, frame: pd.DataFrame
              ) -> ExpectationSuiteValidationResult:
    """Validate one in-memory frame against one suite (results kept for Data Docs)."""
    return run_on_batch(context, whole_dataframe_batch(context, asset_name), asset_name, suite, frame)


def whole_dataframe_batch(context, asset_name: str):
    """A new in-memory frame asset's whole-frame batch definition."""
    asset = context.data_sources.get(DATASOURCE).add_dataframe_asset(asset_name)
    return asset.add_batch_definition_whole_dataframe("whole")


def run_on_batch(context, batch_definition, name: str, suite: gx.ExpectationSuite, frame: pd.DataFrame
                 ) -> ExpectationSuiteValidationResult:
    """Validate `frame`, given as the batch of `batch_definition`, against `suite` (a validation
    definition called `name`; results kept for Data Docs)."""
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)


def expectation_rows(result: ExpectationSuiteValidationResult, run_id: str, source_system: str
                     ) -> list[dict[str, Any]]:
    """dq_result rows from a GX suite result: counts and observed aggregates, no values."""
    rows = []
    for item in result.results:
        config = item.expectation_config
        detail = item.result or {}
        error = exception_message(item.exception_info)
        rows.append({
            "run_id": run_id,
            "source_system": source_system,
            "suite": result.suite_name,
            "expectation": expectation_label(config),
            "element": (config.meta or {}).get("element"),
            "severity": getattr(config.severity, "value", config.severity) or "critical",
            "success": bool(item.success),
            "observed_value": observed_value(detail, error),
            "unexpected_count": detail.get("unexpected_count"),
            "element_count": detail.get("element_count"),
        })
    return rows


def expectation_label(config) -> str:
    """GX's expectation type; a code-table check run as a regex says so (two regex checks
    on one element must stay apart in dq_result)."""
    meta = config.meta or {}
    if meta.get("check") == "code_table":
        return f"{config.type}[code_table={meta.get('code_table')}]"
    return config.type


def exception_message(info: dict | None) -> str | None:
    """GX keys exception_info either flat or by metric id; take the first raised message."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return redact_digits(str(entry.get("exception_message")))
    return None


def redact_digits(message: str) -> str:
    """Library error texts may quote a cell; long digit runs (ID, phone numbers) go."""
    return LONG_DIGITS.sub("<redacted>", message)


def observed_value(detail: dict[str, Any], error: str | None) -> str | None:
    if error:
        return f"error: {error}"
    if "observed_value" in detail:
        return str(detail["observed_value"])
    if "unexpected_percent" in detail and detail["unexpected_percent"] is not None:
        return f"{detail['unexpected_percent']:.4f}% unexpected"
    return None


def quarantine_summary(source: SourceConfig, quarantine_counts: dict[str, dict]) -> pd.DataFrame:
    """One row: raw_rows, rejected_rows, quarantine_rate (0 for an empty extract)."""
    counts = quarantine_counts.get(source.name)
    if counts is None:
        raise ValueError(f"quarantine_counts has no entry for source {source.name!r}")
    raw = _count(counts, RAW_KEYS, source.name)
    rejected = _count(counts, REJECTED_KEYS, source.name)
    if rejected > raw:
        raise ValueError(f"source {source.name}: rejected_rows {rejected} exceeds raw_rows {raw}")
    rate = rejected / raw if raw else 0.0
    return pd.DataFrame({"raw_rows": [raw], "rejected_rows": [rejected], "quarantine_rate": [rate]})


def _count(counts: dict, keys: tuple[str, ...], source: str) -> int:
    """The first of `keys` present in one source's counts, as a non-negative int."""
    key = next((k for k in keys if k in counts), None)
    if key is None:
        raise ValueError(f"quarantine_counts[{source!r}] lacks {keys[0]!r} (have {sorted(counts)})")
    value = counts[key]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"quarantine_counts[{source!r}][{key!r}] is not a count: {value!r}") from None
    if number < 0 or number != value or isinstance(value, bool):
        raise ValueError(f"quarantine_counts[{source!r}][{key!r}] is not a non-negative whole number: {value!r}")
    return number


def checked_columns(suite: gx.ExpectationSuite) -> list[str]:
    return sorted({c for e in suite.expectations if (c := getattr(e, "column", None))})


@dataclass
class SourceJob:
    """One source's validation as a worker gets it: where its frame comes from, what to check."""

    source: str
    frames: Any                  # the lazy frames mapping, or {source: its in-memory frame}
    types: dict[str, str]        # checked column -> element type
    suite: gx.ExpectationSuite
    quarantine_suite: gx.ExpectationSuite
    summary: pd.DataFrame        # quarantine_summary's one row
    run_id: str


@dataclass
class SourceResult:
    """A source's dq_result rows, its suites with their GX results for the Data Docs, and the
    peak resident memory of the process that validated it."""

    rows: list[dict[str, Any]]
    validations: list[tuple[gx.ExpectationSuite, Any, ExpectationSuiteValidationResult]]
    peak_rss_mb: int


def read_checked(frames: Any, source: str, columns: list[str]) -> pd.DataFrame:
    """A source's checked columns (`source_record_id` alone when none: GX still counts rows).
    A lazy mapping reads only those; from the lake's files, text as the checks take it
    (columns.checked_text_frame)."""
    if not hasattr(frames, "read"):
        return frames[source]
    columns = columns or ["source_record_id"]
    paths = getattr(frames, "paths", None)
    if paths is None:
        return frames.read(source, columns)
    from govdata.lake import present_columns

    return checked_text_frame(paths[source], present_columns(paths[source], columns))


def validate_source(job: SourceJob) -> SourceResult:
    """Both suites of one source in a fresh ephemeral context (a worker process's whole task)."""
    started = time.perf_counter()
    context = ephemeral_context(None)
    data = read_checked(job.frames, job.source, list(job.types))
    frame = prepare_columns(data, job.types, job.source)
    if frame.shape[1] == 0:  # row count still needs a table GX can read
        frame = pd.DataFrame(index=data.index, data={"source_record_id": pd.NA})
    del data
    result = run_suite_by_column(context, f"std_{job.source}", job.suite, frame)
    checked_rows = len(frame)
    del frame
    rows = expectation_rows(result, job.run_id, job.source)
    log.info("source %s: %d rows, %d checks in %.1fs", job.source, checked_rows, len(rows),
             time.perf_counter() - started)
    quarantine = run_suite(context, f"quarantine_{job.source}", job.quarantine_suite, job.summary)
    for row in expectation_rows(quarantine, job.run_id, job.source):
        row.update(observed_value=f"{job.summary.at[0, 'quarantine_rate']:.4f}",
                   unexpected_count=int(job.summary.at[0, "rejected_rows"]),
                   element_count=int(job.summary.at[0, "raw_rows"]))
        rows.append(row)
    stored = {key.expectation_suite_identifier.name: key for key in context.validation_results_store.list_keys()}
    validations = [(suite, stored[suite.name], outcome)
                   for suite, outcome in ((job.suite, result), (job.quarantine_suite, quarantine))]
    return SourceResult(rows, validations, peak_rss_mb())


def default_workers(jobs: int) -> int:
    """Processes for the sources: one per core this process may use, at most two (the machines
    are shared), never more than there are sources."""
    return forking.default_workers(jobs)


def run_jobs(jobs: list[SourceJob], workers: int) -> list[SourceResult]:
    """Each job's result, in the jobs' order.

    workers >= 1: that many forked processes, each validating one source and exiting, largest
    sources first (GX is imported already, so a process starts in milliseconds). A process then
    holds one source at most: run one after another in one process, the sources' peaks pile up
    (freed memory stays fragmented: 4.2 GB at the end of a 5M-person run against 1.8 GB for its
    largest source alone). workers 0, or no fork here: one after another in this process, memory
    handed back to the system after each."""
    if workers < 1 or not can_fork():
        results = []
        for job in jobs:
            results.append(validate_source(job))
            release_memory()
        return results
    order = sorted(range(len(jobs)), key=lambda i: -int(jobs[i].summary.at[0, "raw_rows"]))
    with fork_pool(workers, maxtasksperchild=1) as pool:
        done = dict(zip(order, pool.map(validate_source, [jobs[i] for i in order], chunksize=1)))
    return [done[i] for i in range(len(jobs))]


def source_jobs(frames: Mapping[str, pd.DataFrame], sources: list[SourceConfig], standards: Standards,
                quarantine_counts: dict[str, dict], run_id: str, config: dict[str, Any]) -> list[SourceJob]:
    """Every source's job, checked before any is run: a missing frame or bad counts fail at once."""
    have = set(frames)   # keys only: `in` on a lazy mapping would read the whole frame
    lazy = hasattr(frames, "read")
    today = dt.date.today()
    jobs = []
    for source in sources:
        if source.name not in have:
            raise ValueError(f"no standardised frame for source {source.name!r} (have {sorted(have)})")
        # A lazy mapping (the validate stage's lake reader) gives the columns without reading the file.
        present = frames.columns(source.name) if hasattr(frames, "columns") else frames[source.name].columns
        suite = build_suite(source.kind, standards, source, today=today, config=config, present=present)
        elements = standards.elements[source.kind]
        jobs.append(SourceJob(
            source=source.name,
            frames=frames if lazy else {source.name: frames[source.name]},
            types={c: elements[c].type for c in checked_columns(suite)},
            suite=suite,
            quarantine_suite=build_quarantine_suite(source, config),
            summary=quarantine_summary(source, quarantine_counts),
            run_id=run_id,
        ))
    return jobs


def validate_standardised(
    frames: Mapping[str, pd.DataFrame],
    sources: list[SourceConfig],
    standards: Standards,
    quarantine_counts: dict[str, dict],
    run_id: str,
    docs_dir: Path | None = None,
    config: dict[str, Any] | None = None,
    workers: int | None = None,
) -> ValidationOutcome:
    """Validate each source's standardised frame and quarantine rate; dq_result rows out, in
    source order. `config` replaces expectations/quality.yaml (tests, one-off runs); `workers`:
    processes for the sources, see run_jobs (default: default_workers; 0: this process)."""
    config = config or load_quality_config()
    jobs = source_jobs(frames, sources, standards, quarantine_counts, run_id, config)
    results = run_jobs(jobs, default_workers(len(jobs)) if workers is None else workers)
    rows = [row for result in results for row in result.rows]
    validations = [v for result in results for v in result.validations]
    docs_index = build_docs(validations, docs_dir) if docs_dir is not None else None
    outcome = outcome_from_rows(rows, docs_index)
    outcome.peak_rss_mb = max((result.peak_rss_mb for result in results), default=0)
    log.info("run %s: %d checks, %d failed, critical_failed=%s; largest validating process %d MB", run_id,
             len(outcome.results), len(outcome.failures), outcome.critical_failed, outcome.peak_rss_mb)
    return outcome


def build_docs(validations: list[tuple[gx.ExpectationSuite, Any, ExpectationSuiteValidationResult]],
               docs_dir: Path) -> Path:
    """Static Data Docs site from all sources' suites and validation results, built once in
    one context whichever process ran each validation."""
    from govdata.expectations.offline_docs import make_offline

    context = ephemeral_context(docs_dir)
    for suite, key, result in validations:
        context.suites.add(suite)
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[DOCS_SITE])
    index = Path(docs_dir).resolve() / "index.html"
    if not index.exists():
        raise RuntimeError(f"GX did not write Data Docs index {index}")
    make_offline(docs_dir)   # CDN styles/scripts/fonts -> vendored copies: the docs open offline
    return index
