"""Warehouse DDL: every table (and on PostgreSQL the vault schema, roles and grants)."""
from __future__ import annotations

from govdata.warehouse.connections import _DB, connect
from govdata.warehouse.mart_views import refresh_marts
from govdata.warehouse.schema import VAULT_SCHEMA, create_ddl, metadata, qualified

ROLES = ("govdata_loader", "govdata_steward", "govdata_analyst")


def init_warehouse(url: str) -> None:
    """Create every table (and on PostgreSQL the vault schema, roles and grants), then the marts."""
    with connect(url, vault=True) as db:
        if db.backend == "duckdb":
            # One DuckDB transaction writes one file; CREATE … IF NOT EXISTS makes a retry safe.
            for table in metadata.sorted_tables:
                db.execute(create_ddl(table, "duckdb"))
        else:
            with db.transaction():
                db.execute(f"CREATE SCHEMA IF NOT EXISTS {VAULT_SCHEMA}")
                for table in metadata.sorted_tables:
                    db.execute(create_ddl(table))
                _grant_roles(db)
                from govdata.warehouse.vault import install_identify

                install_identify(db)   # vault.identify: audited resolution for stewards only
    refresh_marts(url)


def _missing_tables(db: _DB) -> list[str]:
    if db.backend == "duckdb":
        rows = db.fetchall("SELECT CASE WHEN database_name = 'vault' THEN 'vault.' ELSE '' END || table_name "
                           "FROM duckdb_tables()")
    else:
        rows = db.fetchall("SELECT CASE WHEN table_schema = 'vault' THEN 'vault.' ELSE '' END || table_name "
                           "FROM information_schema.tables WHERE table_schema IN ('public', 'vault')")
    present = {r[0] for r in rows}
    return [qualified(t) for t in metadata.sorted_tables if qualified(t) not in present]


def _grant_roles(db: _DB) -> None:
    """Least privilege: loader writes, steward reads everything incl. the vault, analyst reads
    analyst tables and marts only. Roles are cluster-wide and created once (NOLOGIN groups)."""
    for role in ROLES:
        db.execute(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
                   f"EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    public = [t for t in metadata.sorted_tables if t.schema is None]
    vault = [t for t in metadata.sorted_tables if t.schema == VAULT_SCHEMA]
    db.execute(f"REVOKE ALL ON SCHEMA {VAULT_SCHEMA} FROM PUBLIC")
    db.execute("GRANT USAGE ON SCHEMA public TO " + ", ".join(ROLES))
    db.execute(f"GRANT USAGE ON SCHEMA {VAULT_SCHEMA} TO govdata_loader, govdata_steward")
    for t in public:
        db.execute(f"REVOKE ALL ON {t.name} FROM PUBLIC")
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t.name} TO govdata_loader")
        db.execute(f"GRANT SELECT ON {t.name} TO govdata_steward")
        if t.info["analyst"]:
            db.execute(f"GRANT SELECT ON {t.name} TO govdata_analyst")
    db.execute("GRANT INSERT ON identify_audit TO govdata_steward")
    db.execute("GRANT INSERT, UPDATE ON review_queue, review_decision TO govdata_steward")
    for t in vault:
        # The loader writes the vault but may read only its keys (needed by ON CONFLICT).
        keys = ", ".join(t.info["merge"][1])
        db.execute(f"REVOKE ALL ON {qualified(t)} FROM PUBLIC")
        db.execute(f"GRANT INSERT, UPDATE, DELETE ON {qualified(t)} TO govdata_loader")
        db.execute(f"GRANT SELECT ({keys}) ON {qualified(t)} TO govdata_loader")
        db.execute(f"GRANT SELECT ON {qualified(t)} TO govdata_steward")


__all__ = ["ROLES", "init_warehouse"]
