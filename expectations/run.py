"""Run the generated suites on standardised frames with an ephemeral GX context.

One pandas data source, one dataframe asset per source; each source's frame is validated
against its suite, then a one-row summary frame against its quarantine-rate suite.
Result format BASIC with partial_unexpected_count 0: GX then returns counts only, so no
raw ID or phone value can reach dq_result, logs or Data Docs.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import warnings
from collections.abc import Mapping
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

import great_expectations as gx  # noqa: E402 - after the logger level and warning filters above
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from great_expectations.data_context.types.base import ProgressBarsConfig

# That module sets its own logger to INFO when imported ("Created temporary directory … for
# ephemeral docs site" on every context): back to WARNING like the rest of GX.
logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

from govdata.expectations.outcome import ValidationOutcome, outcome_from_rows
from govdata.expectations.suites import (
    build_quarantine_suite,
    build_suite,
    load_quality_config,
)
from govdata.standards.model import SourceConfig, Standards

log = logging.getLogger(__name__)

RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0, "include_unexpected_rows": False}
DOCS_SITE = "govdata"
RAW_KEYS = ("raw_rows", "raw")
REJECTED_KEYS = ("rejected_rows", "rejected")
LONG_DIGITS = re.compile(r"\d{7,}[\dXx]*")


def ephemeral_context(docs_dir: Path | None = None):
    """In-memory GX context, quiet (no progress bars), with a local Data Docs site if asked."""
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
    return context


def run_suite(context, asset_name: str, suite: gx.ExpectationSuite, frame: pd.DataFrame
              ) -> ExpectationSuiteValidationResult:
    """Validate one in-memory frame against one suite (results kept for Data Docs)."""
    source = context.data_sources.add_or_update_pandas("govdata")
    asset = source.add_dataframe_asset(asset_name)
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=asset_name, data=batch_definition, suite=suite)
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


def prepare_frame(frame: pd.DataFrame, suite: gx.ExpectationSuite, source: SourceConfig,
                  standards: Standards) -> pd.DataFrame:
    """Only the columns the suite checks, in dtypes GX's pandas range check vectorises
    (datetime64[ns], float64); a checked column missing from the frame is an error."""
    columns = sorted({c for e in suite.expectations if (c := getattr(e, "column", None))})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"standardised frame of source {source.name} lacks columns {missing}")
    prepared = frame[columns].copy(deep=False)
    elements = standards.elements[source.kind]
    for column in columns:
        kind_of_value = elements[column].type
        if kind_of_value in ("date", "timestamp"):
            prepared[column] = as_datetime_ns(prepared[column], source.name)
        elif kind_of_value == "integer":
            prepared[column] = as_float(prepared[column], source.name)
    return prepared


# datetime64[ns] covers 1677-09-22..2262-04-11. Values beyond are clipped to these edges,
# which still lie outside every configured range, so they fail instead of vanishing.
NS_FLOOR, NS_CEILING = pd.Timestamp("1678-01-01"), pd.Timestamp("2261-12-31")


def as_datetime_ns(values: pd.Series, source: str) -> pd.Series:
    """date/datetime values -> datetime64[ns]; GX only vectorises range checks on that
    dtype (object dates go through a per-row Python map)."""
    if pd.api.types.is_datetime64_ns_dtype(values.dtype) or isinstance(values.dtype, pd.DatetimeTZDtype):
        return values
    try:
        wide = values if pd.api.types.is_datetime64_any_dtype(values.dtype) else values.astype("datetime64[s]")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"source {source}: column {values.name!r} does not hold dates ({exc})") from exc
    return wide.clip(lower=NS_FLOOR, upper=NS_CEILING).astype("datetime64[ns]")


def as_float(values: pd.Series, source: str) -> pd.Series:
    """Nullable integers -> float64 (NA -> NaN, which GX counts as missing)."""
    try:
        return pd.to_numeric(values, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"source {source}: column {values.name!r} does not hold integers ({exc})") from exc


def validate_standardised(
    frames: Mapping[str, pd.DataFrame],
    sources: list[SourceConfig],
    standards: Standards,
    quarantine_counts: dict[str, dict],
    run_id: str,
    docs_dir: Path | None = None,
    config: dict[str, Any] | None = None,
) -> ValidationOutcome:
    """Validate each source's standardised frame and quarantine rate; dq_result rows out.
    `config` replaces expectations/quality.yaml (tests, one-off runs)."""
    config = config or load_quality_config()
    today = dt.date.today()
    context = ephemeral_context(docs_dir)
    rows: list[dict[str, Any]] = []
    for source in sources:
        if source.name not in frames:
            raise ValueError(f"no standardised frame for source {source.name!r} (have {sorted(frames)})")
        # A lazy mapping (the validate stage's lake reader) gives the columns without reading the
        # file, and reads only the columns the suite checks: one source's checked columns in memory.
        present = frames.columns(source.name) if hasattr(frames, "columns") else frames[source.name].columns
        suite = build_suite(source.kind, standards, source, today=today, config=config, present=present)
        checked = sorted({c for e in suite.expectations if (c := getattr(e, "column", None))})
        data = frames.read(source.name, checked or ["source_record_id"]) if hasattr(frames, "read") else frames[source.name]
        frame = prepare_frame(data, suite, source, standards)
        if frame.shape[1] == 0:  # row count still needs a table GX can read
            frame = pd.DataFrame(index=data.index, data={"source_record_id": pd.NA})
        del data
        result = run_suite(context, f"std_{source.name}", suite, frame)
        del frame
        rows += expectation_rows(result, run_id, source.name)

        summary = quarantine_summary(source, quarantine_counts)
        result = run_suite(context, f"quarantine_{source.name}", build_quarantine_suite(source, config), summary)
        for row in expectation_rows(result, run_id, source.name):
            row.update(observed_value=f"{summary.at[0, 'quarantine_rate']:.4f}",
                       unexpected_count=int(summary.at[0, "rejected_rows"]),
                       element_count=int(summary.at[0, "raw_rows"]))
            rows.append(row)
    docs_index = build_docs(context, docs_dir) if docs_dir is not None else None
    outcome = outcome_from_rows(rows, docs_index)
    log.info("run %s: %d checks, %d failed, critical_failed=%s", run_id, len(outcome.results),
             len(outcome.failures), outcome.critical_failed)
    return outcome


def build_docs(context, docs_dir: Path) -> Path:
    """Static Data Docs site from this context's suites and validation results."""
    from govdata.expectations.offline_docs import make_offline

    context.build_data_docs(site_names=[DOCS_SITE])
    index = Path(docs_dir).resolve() / "index.html"
    if not index.exists():
        raise RuntimeError(f"GX did not write Data Docs index {index}")
    make_offline(docs_dir)   # CDN styles/scripts/fonts -> vendored copies: the docs open offline
    return index
