"""Warehouse checks after a load: master/xref key uniqueness and xref → dim referential
integrity.

Two backends, one result layout (the same GX expectation names either way):
- PostgreSQL: GX's own SQL data source (`add_postgres`) runs the expectations in SQL.
- DuckDB (and any other URL): GX's SQL engine cannot read duckdb-engine results (every
  metric fails with "list index out of range", GX issues #10738/#11579), so the same checks
  run as plain SQLAlchemy queries and are wrapped as dq_result rows.
Only counts are reported; the FK check selects keys (source_system, source_record_id,
master id), never identifiers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import sqlalchemy as sa
from govdata.expectations.outcome import ValidationOutcome, outcome_from_rows
from govdata.warehouse.connections import read_only_engine
from great_expectations.data_context.types.base import ProgressBarsConfig

SOURCE_SYSTEM = "warehouse"
SUITE = "warehouse"
UNIQUE = "expect_column_values_to_be_unique"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"
REFERENCE = "unexpected_rows_expectation"
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


@dataclass(frozen=True)
class KeyCheck:
    """Rows of `table` must be unique on `columns`; with `references`, every `columns[0]`
    value must also exist in `references` (table, column)."""

    table: str
    columns: tuple[str, ...]
    references: tuple[str, str] | None = None

    @property
    def expectation(self) -> str:
        if self.references:
            return REFERENCE
        return UNIQUE if len(self.columns) == 1 else COMPOUND_UNIQUE

    @property
    def element(self) -> str:
        cols = self.columns[0] if len(self.columns) == 1 else "(" + ", ".join(self.columns) + ")"
        target = f" -> {self.references[0]}.{self.references[1]}" if self.references else ""
        return f"{self.table}.{cols}{target}"


CHECKS: tuple[KeyCheck, ...] = (
    KeyCheck("dim_person", ("person_id",)),
    KeyCheck("dim_enterprise", ("enterprise_id",)),
    KeyCheck("xref_person", ("source_system", "source_record_id")),
    KeyCheck("xref_enterprise", ("source_system", "source_record_id")),
    KeyCheck("xref_person", ("person_id",), references=("dim_person", "person_id")),
    KeyCheck("xref_enterprise", ("enterprise_id",), references=("dim_enterprise", "enterprise_id")),
)


def dangling_rows_sql(check: KeyCheck, source: str) -> str:
    """Rows of `source` (a table or GX's {batch}) whose key has no row in the referenced dim."""
    column = check.columns[0]
    ref_table, ref_column = check.references
    return (f"SELECT x.source_system, x.source_record_id, x.{column} FROM {source} x "
            f"LEFT JOIN {ref_table} d ON d.{ref_column} = x.{column} WHERE d.{ref_column} IS NULL")


def duplicate_rows_sql(check: KeyCheck) -> str:
    """Rows sharing their key with another row (GX's unexpected_count for uniqueness)."""
    cols = ", ".join(check.columns)
    return (f"SELECT COALESCE(SUM(n), 0) FROM (SELECT {cols}, COUNT(*) AS n FROM {check.table} "
            f"GROUP BY {cols} HAVING COUNT(*) > 1) duplicated")


def result_row(run_id: str, check: KeyCheck, success: bool, unexpected: int | None,
               rows: int | None, observed: str | None) -> dict[str, Any]:
    return {"run_id": run_id, "source_system": SOURCE_SYSTEM, "suite": SUITE,
            "expectation": check.expectation, "element": check.element, "severity": "critical",
            "success": success, "observed_value": observed, "unexpected_count": unexpected,
            "element_count": rows}


def require_tables(engine: sa.Engine, url_label: str) -> None:
    present = set(sa.inspect(engine).get_table_names())
    needed = {c.table for c in CHECKS} | {c.references[0] for c in CHECKS if c.references}
    missing = sorted(needed - present)
    if missing:
        raise ValueError(f"warehouse {url_label} lacks tables {missing}")


def sqlalchemy_rows(engine: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    """Every check as one SQL count query (DuckDB and any SQLAlchemy URL)."""
    rows = []
    with engine.connect() as conn:
        for check in CHECKS:
            total = conn.execute(sa.text(f"SELECT COUNT(*) FROM {check.table}")).scalar_one()
            if check.references:
                sql = f"SELECT COUNT(*) FROM ({dangling_rows_sql(check, check.table)}) dangling"
            else:
                sql = duplicate_rows_sql(check)
            bad = int(conn.execute(sa.text(sql)).scalar_one())
            rows.append(result_row(run_id, check, bad == 0, bad, int(total), f"{bad} unexpected rows"))
    return rows


def gx_expectation(check: KeyCheck) -> gxe.Expectation:
    meta = {"element": check.element}
    if check.references:
        return gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=dangling_rows_sql(check, "{batch}"), meta=meta,
            description=f"every {check.table}.{check.columns[0]} exists in {check.references[0]}")
    if len(check.columns) == 1:
        return gxe.ExpectColumnValuesToBeUnique(column=check.columns[0], meta=meta)
    return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(check.columns), meta=meta)


def gx_rows(url: str, run_id: str) -> list[dict[str, Any]]:
    """Every check as a GX expectation on a table asset of GX's PostgreSQL data source."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_postgres("warehouse", connection_string=url)
    batches: dict[str, Any] = {}
    totals: dict[str, int] = {}
    rows = []
    for check in CHECKS:
        if check.table not in batches:
            asset = source.add_table_asset(check.table, table_name=check.table)
            batches[check.table] = asset.add_batch_definition_whole_table("all").get_batch()
            count = batches[check.table].validate(gxe.ExpectTableRowCountToBeBetween(min_value=0))
            totals[check.table] = int(count.result["observed_value"])
        res = batches[check.table].validate(gx_expectation(check), result_format=RESULT_FORMAT)
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX check {check.element} failed to run: {res.exception_info['exception_message']}")
        detail = res.result or {}
        bad = int(detail.get("unexpected_count", detail.get("observed_value")))
        rows.append(result_row(run_id, check, bool(res.success), bad, totals[check.table], f"{bad} unexpected rows"))
    return rows


def is_postgres(url: str) -> bool:
    return sa.engine.make_url(url).get_backend_name() == "postgresql"


def validate_warehouse(url: str, run_id: str) -> ValidationOutcome:
    """Key uniqueness and xref → dim integrity on the loaded warehouse; all checks critical."""
    parsed = sa.engine.make_url(url)
    label = parsed.render_as_string(hide_password=True)
    engine = read_only_engine(url)
    try:
        require_tables(engine, label)
        if not is_postgres(url):
            return outcome_from_rows(sqlalchemy_rows(engine, run_id))
    finally:
        engine.dispose()
    return outcome_from_rows(gx_rows(url, run_id))
