"""ValidationOutcome and the dq_result row layout shared by the runners."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

DQ_RESULT_COLUMNS = [
    "run_id", "source_system", "suite", "expectation", "element", "severity",
    "success", "observed_value", "unexpected_count", "element_count",
]


@dataclass
class ValidationOutcome:
    """dq_result rows plus the verdict the DAG acts on (a failing critical check stops the run).
    `peak_rss_mb`: the largest peak resident memory among the processes that validated (the
    standardised sources are validated in worker processes, whose memory the caller's own peak
    does not show); None when not measured."""

    results: pd.DataFrame
    critical_failed: bool
    failures: list[str] = field(default_factory=list)
    docs_index: Path | None = None
    peak_rss_mb: int | None = None


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """dq_result rows with stable dtypes (nullable ints, string observed values)."""
    frame = pd.DataFrame(rows, columns=DQ_RESULT_COLUMNS)
    for col in ("run_id", "source_system", "suite", "expectation", "element", "severity", "observed_value"):
        frame[col] = frame[col].astype("string")
    frame["success"] = frame["success"].astype(bool)
    for col in ("unexpected_count", "element_count"):
        frame[col] = pd.to_numeric(frame[col]).astype("Int64")
    return frame


def outcome_from_rows(rows: list[dict], docs_index: Path | None = None) -> ValidationOutcome:
    """Verdict and human-readable failure lines (counts only: never values)."""
    frame = results_frame(rows)
    failed = frame[~frame["success"]]
    failures = [describe_failure(row) for row in failed.to_dict("records")]
    critical = bool((failed["severity"] == "critical").any())
    return ValidationOutcome(frame, critical, failures, docs_index)


def describe_failure(row: dict) -> str:
    where = row["source_system"]
    what = f"{row['element']} " if isinstance(row["element"], str) else ""
    detail = f"observed {row['observed_value']}" if isinstance(row["observed_value"], str) else ""
    if not pd.isna(row["unexpected_count"]):
        detail = f"{row['unexpected_count']} of {row['element_count']} rows unexpected"
    return f"[{row['severity']}] {where} {row['suite']}: {what}{row['expectation']} failed ({detail})"
