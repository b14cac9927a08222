"""The warehouse schema: one SQLAlchemy Core definition for DuckDB and PostgreSQL.

Every table declares how a load merges into it (`info["merge"]`):
- `("key", cols)`: upsert by primary key — rows with the same key are replaced;
- `("scope", cols)`: all rows whose scope (e.g. run_id + source_system) appears in the load
  are replaced (tables without a natural row key, like dq_result);
- `("all", ())`: the load is the table's whole new content (identifier_owner);
- `("record", cols)`: quarantine — the rows of every source record re-normalised by the run
  (or of every record of a source read in full) are replaced, see warehouse.load.
`info["keep"]` lists columns an upsert never overwrites (first_seen_run).
Tables in schema `vault` hold encrypted identifiers: a separate DuckDB file, or the PostgreSQL
schema only govdata_steward may read.
"""
from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Column, Date, DateTime, Double, Integer,
                        LargeBinary, MetaData, String, Table, Text)

metadata = MetaData()
VAULT_SCHEMA = "vault"


def _table(name: str, *cols, merge: tuple[str, tuple[str, ...]], keep: tuple[str, ...] = (),
           analyst: bool = True, schema: str | None = None, checks: tuple[CheckConstraint, ...] = ()) -> Table:
    return Table(name, metadata, *cols, *checks, schema=schema,
                 info={"merge": merge, "keep": keep, "analyst": analyst})


def _pk(name: str, type_=String) -> Column:
    return Column(name, type_, primary_key=True, nullable=False, autoincrement=False)


def _lineage() -> list[Column]:
    return [Column("record_count", Integer), Column("source_count", Integer), Column("lineage", Text),
            Column("first_seen_run", String), Column("last_run", String)]

dim_person = _table(
    "dim_person", _pk("person_id"), Column("person_token", String), Column("id_number_masked", String),
    Column("name", String), Column("name_pinyin", String), Column("sex", String), Column("birth_date", Date),
    Column("ethnicity", String), Column("phone_masked", String), Column("address", String),
    Column("region_code", String), *_lineage(),
    merge=("key", ("person_id",)), keep=("first_seen_run",))

dim_enterprise = _table(
    "dim_enterprise", _pk("enterprise_id"), Column("enterprise_token", String), Column("uscc", String),
    Column("org_code", String), Column("name", String), Column("name_core", String),
    Column("legal_rep_name", String), Column("legal_rep_token", String), Column("legal_rep_id_masked", String),
    Column("founded_date", Date), Column("address", String), Column("industry_code", String),
    Column("region_code", String), *_lineage(),
    merge=("key", ("enterprise_id",)), keep=("first_seen_run",))

dim_region = _table(
    "dim_region", _pk("code"), Column("name", String), Column("level", String), Column("status", String),
    Column("valid_from", Integer), Column("valid_to", Integer), Column("successors", String),
    Column("province", String), Column("prefecture", String), Column("parent_code", String),
    merge=("key", ("code",)))

dim_service_item = _table(
    "dim_service_item", _pk("service_item_code"), Column("name", String), Column("legal_limit_days", Integer),
    Column("department", String), merge=("key", ("service_item_code",)))

dim_date = _table(
    "dim_date", _pk("date_key", Integer), Column("date", Date, nullable=False), Column("year", Integer),
    Column("month", Integer), Column("day", Integer), Column("weekday", Integer), Column("is_holiday", Boolean),
    Column("holiday_name", String), Column("is_workday", Boolean), merge=("key", ("date_key",)))

dim_source = _table(
    "dim_source", _pk("source_system"), Column("kind", String), Column("record_count", Integer),
    Column("rejected_rows", Integer), Column("quarantined_values", Integer), Column("last_run", String),
    merge=("key", ("source_system",)))

fact_application = _table(
    "fact_application", _pk("source_system"), _pk("source_record_id"), Column("application_no", String),
    Column("applicant_person_id", String), Column("applicant_enterprise_id", String),
    Column("applicant_token", String), Column("service_item_code", String), Column("channel", String),
    Column("online", Boolean), Column("region_code", String), Column("submitted_at", DateTime),
    Column("accepted_at", DateTime), Column("completed_at", DateTime), Column("legal_limit_days", Integer),
    Column("working_days_taken", Integer), Column("within_limit", Boolean), Column("rating", Integer),
    Column("certificate_no", String), Column("run_id", String),
    merge=("key", ("source_system", "source_record_id")),
    checks=(CheckConstraint("rating BETWEEN 1 AND 5", name="ck_fact_application_rating"),))

fact_certificate = _table(
    "fact_certificate", _pk("source_system"), _pk("source_record_id"), Column("certificate_no", String),
    Column("certificate_type", String), Column("holder_person_id", String), Column("holder_enterprise_id", String),
    Column("holder_token", String), Column("issuer", String), Column("issue_date", Date),
    Column("expiry_date", Date), Column("status", String), Column("run_id", String),
    merge=("key", ("source_system", "source_record_id")))

xref_person = _table(
    "xref_person", _pk("source_system"), _pk("source_record_id"), Column("person_id", String, nullable=False),
    Column("match_rule", String), Column("match_score", Double), Column("run_id", String),
    Column("is_deleted", Boolean),
    merge=("key", ("source_system", "source_record_id")))

xref_enterprise = _table(
    "xref_enterprise", _pk("source_system"), _pk("source_record_id"),
    Column("enterprise_id", String, nullable=False), Column("match_rule", String), Column("match_score", Double),
    Column("run_id", String), Column("is_deleted", Boolean), merge=("key", ("source_system", "source_record_id")))

master_id_history = _table(
    "master_id_history", _pk("old_id"), _pk("new_id"), _pk("entity"), Column("reason", String),
    Column("run_id", String), merge=("key", ("old_id", "new_id", "entity")))

review_queue = _table(
    "review_queue", _pk("pair_id"), Column("entity", String), Column("left_source_system", String),
    Column("left_source_record_id", String), Column("right_source_system", String),
    Column("right_source_record_id", String), Column("score", Double), Column("evidence", Text),
    Column("status", String), Column("run_id", String), merge=("key", ("pair_id",)), analyst=False)

review_decision = _table(
    "review_decision", _pk("entity"), _pk("left_source_system"), _pk("left_source_record_id"),
    _pk("right_source_system"), _pk("right_source_record_id"), Column("decision", String, nullable=False),
    Column("decided_by", String), _pk("decided_at", DateTime),
    merge=("key", ("entity", "left_source_system", "left_source_record_id", "right_source_system",
                   "right_source_record_id", "decided_at")), analyst=False,
    checks=(CheckConstraint("decision IN ('match', 'non_match')", name="ck_review_decision"),))

quarantine = _table(
    "quarantine", Column("run_id", String, nullable=False), Column("source_system", String, nullable=False),
    Column("source_record_id", String), Column("element", String), Column("reason_code", String),
    Column("masked_value", String), Column("row_rejected", Boolean), Column("message", Text),
    merge=("record", ("source_system", "source_record_id")))

identifier_owner = _table(
    "identifier_owner", _pk("entity"), _pk("identifier_token"), Column("master_id", String, nullable=False),
    Column("agreement", Integer), Column("assigned_run", String),
    merge=("all", ()))

fact_owner_change = _table(
    "fact_owner_change", _pk("run_id"), _pk("fact_table"), _pk("source_system"), _pk("source_record_id"),
    _pk("role"), Column("identifier_token", String), Column("identifier_masked", String),
    Column("old_owner", String), Column("new_owner", String), Column("reason", String),
    merge=("key", ("run_id", "fact_table", "source_system", "source_record_id", "role")))

etl_run = _table(
    "etl_run", _pk("run_id"), Column("started_at", DateTime), Column("finished_at", DateTime),
    Column("status", String), Column("counts", Text), merge=("key", ("run_id",)))

# The Fellegi–Sunter weights each run linked with, one row per comparison (m = P(agree | match),
# u = P(agree | non-match); source: ecm, prior or kept): an incremental run scores with the latest
# run's (govdata/stages/link_inputs.py: previous_model).
NO_WEIGHTS = "(none)"   # the comparison of a model without weights (deterministic enterprise linkage)
link_model = _table(
    "link_model", _pk("run_id"), _pk("entity"), _pk("comparison"), Column("m", Double), Column("u", Double),
    Column("source", String), merge=("scope", ("run_id", "entity")))

# The findings report's headline indicators per run (govdata/findings.py): its trends.
findings_history = _table(
    "findings_history", _pk("run_id"), _pk("indicator"), Column("value", Double), Column("recorded_at", DateTime),
    merge=("key", ("run_id", "indicator")))

etl_state = _table(
    "etl_state", _pk("source_system"), Column("watermark", String), Column("rows_extracted", BigInteger),
    Column("state", Text), Column("run_id", String), Column("updated_at", DateTime),
    merge=("key", ("source_system",)), analyst=False)

dq_result = _table(
    "dq_result", Column("run_id", String, nullable=False), Column("source_system", String, nullable=False),
    Column("suite", String), Column("expectation", String), Column("element", String), Column("severity", String),
    Column("success", Boolean), Column("observed_value", Text), Column("unexpected_count", BigInteger),
    Column("element_count", BigInteger), merge=("scope", ("run_id", "source_system")))

vault_commit = _table(
    "vault_commit", _pk("load_id"), Column("run_id", String), Column("committed_at", DateTime),
    merge=("key", ("load_id",)), analyst=False)

identify_audit = _table(
    "identify_audit", _pk("audit_id"), Column("who", String, nullable=False), Column("asked_at", DateTime, nullable=False),
    Column("token", String, nullable=False), Column("reason", Text, nullable=False),
    merge=("key", ("audit_id",)), analyst=False)

vault_person = _table(
    "vault_person", _pk("person_id"), Column("person_token", String), Column("id_number_enc", LargeBinary),
    Column("phone_token", String), Column("phone_enc", LargeBinary),
    merge=("key", ("person_id",)), analyst=False, schema=VAULT_SCHEMA)

vault_enterprise = _table(
    "vault_enterprise", _pk("enterprise_id"), Column("legal_rep_token", String),
    Column("legal_rep_id_number_enc", LargeBinary),
    merge=("key", ("enterprise_id",)), analyst=False, schema=VAULT_SCHEMA)


# DuckDB: the load that last wrote the vault file (one row); see warehouse.load, "one commit".
vault_load = _table(
    "vault_load", _pk("load_id"), Column("run_id", String), merge=("key", ("load_id",)), analyst=False,
    schema=VAULT_SCHEMA)


# --- sharing (govdata.sharing, docs/SHARING.md): clients, requests, grants, audit, request log ---
share_client = _table(
    "share_client", _pk("client_id"), Column("department", String, nullable=False),
    Column("key_hash", String, nullable=False), Column("rate_per_second", Double), Column("created_at", DateTime),
    Column("active", Boolean), merge=("key", ("client_id",)), analyst=False)

share_request = _table(
    "share_request", _pk("request_id"), Column("resource", String, nullable=False),
    Column("department", String, nullable=False), Column("purpose", Text, nullable=False),
    Column("valid_until", Date, nullable=False), Column("requested_by", String), Column("requested_at", DateTime),
    Column("status", String, nullable=False), Column("decided_by", String), Column("decided_at", DateTime),
    Column("decision_reason", Text), merge=("key", ("request_id",)), analyst=False,
    checks=(CheckConstraint("status IN ('pending', 'approved', 'refused', 'expired')", name="ck_share_request_status"),))

share_grant = _table(
    "share_grant", _pk("grant_id"), Column("request_id", String, nullable=False),
    Column("resource", String, nullable=False), Column("department", String, nullable=False),
    Column("role_name", String), Column("privilege", Text), Column("granted_at", DateTime),
    Column("valid_until", Date, nullable=False), Column("revoked_at", DateTime), Column("revoke_reason", Text),
    merge=("key", ("grant_id",)), analyst=False)

share_audit = _table(
    "share_audit", _pk("audit_id"), Column("audited_at", DateTime, nullable=False), Column("actor", String),
    Column("action", String, nullable=False), Column("request_id", String), Column("grant_id", String),
    Column("resource", String), Column("department", String), Column("detail", Text),
    merge=("key", ("audit_id",)), analyst=False)

# The service's request log, chained by hashes (row_hash = sha256 over prev_hash and the row).
share_log = _table(
    "share_log", _pk("seq", BigInteger), Column("logged_at", DateTime, nullable=False), Column("client_id", String),
    Column("department", String), Column("endpoint", String), Column("purpose", String),
    Column("application_no", String), Column("subject_token", String), Column("resources", String),
    Column("elements", String), Column("outcome", String), Column("status_code", Integer), Column("reason", Text),
    Column("prev_hash", String, nullable=False), Column("row_hash", String, nullable=False),
    merge=("key", ("seq",)), analyst=False)


def table_for(name: str) -> Table:
    """The Table called `name` (vault tables by bare name too); a clear error otherwise."""
    for table in metadata.tables.values():
        if table.name == name:
            return table
    raise KeyError(f"unknown warehouse table {name!r}; known: {', '.join(sorted(all_table_names()))}")


def all_table_names() -> list[str]:
    return [t.name for t in metadata.sorted_tables]


def analyst_table_names() -> list[str]:
    return [t.name for t in metadata.sorted_tables if t.info["analyst"]]


def vault_table_names() -> list[str]:
    return [t.name for t in metadata.sorted_tables if t.schema == VAULT_SCHEMA]


def qualified(table: Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def arrow_type(col: Column) -> pa.DataType:
    """The Arrow type a column is loaded from."""
    t = col.type
    if isinstance(t, Boolean):
        return pa.bool_()
    if isinstance(t, (Integer, BigInteger)):
        return pa.int64()
    if isinstance(t, Double):
        return pa.float64()
    if isinstance(t, DateTime):
        return pa.timestamp("us")
    if isinstance(t, Date):
        return pa.date32()
    if isinstance(t, LargeBinary):
        return pa.binary()
    return pa.string()


def arrow_schema(table: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c), nullable=c.nullable) for c in table.columns])


def create_ddl(table: Table, backend: str = "postgresql") -> str:
    """CREATE TABLE IF NOT EXISTS in PostgreSQL syntax, which DuckDB also accepts.
    DuckDB gets no PRIMARY KEY: its index makes bulk DELETE+INSERT 10x slower, and the loader
    guarantees key uniqueness itself (duplicates in a load are refused, existing keys are deleted
    before the insert, in one transaction). NOT NULL and CHECK constraints stay on both."""
    import re

    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    ddl = str(CreateTable(table, if_not_exists=True).compile(dialect=postgresql.dialect())).strip()
    if backend == "duckdb":
        ddl = re.sub(r",\s*PRIMARY KEY \([^)]*\)", "", ddl)
    return ddl


__all__ = ["metadata", "table_for", "all_table_names", "analyst_table_names", "vault_table_names", "qualified",
           "arrow_schema", "arrow_type", "create_ddl", "VAULT_SCHEMA", "sa"]
