"""Analyst marts: one SELECT per file in warehouse/marts/, (re)created as views."""
from __future__ import annotations

from pathlib import Path

from govdata.warehouse.connections import _DB, connect

MARTS_DIR = Path(__file__).parent / "marts"


def mart_sql() -> dict[str, str]:
    """mart name → SELECT statement, one file each in warehouse/marts/."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(MARTS_DIR.glob("mart_*.sql"))}


def refresh_marts(url: str) -> list[str]:
    """(Re)create every mart as a view; analysts get SELECT on PostgreSQL."""
    marts = mart_sql()
    with connect(url) as db, db.transaction():
        for name, sql in marts.items():
            body = sql.strip().rstrip(";")
            db.execute(f"DROP VIEW IF EXISTS {name}")
            db.execute(f"CREATE VIEW {name} AS\n{body}")
            if db.backend == "postgresql" and _role_exists(db, "govdata_analyst"):
                db.execute(f"GRANT SELECT ON {name} TO govdata_analyst, govdata_steward")
    return list(marts)


def _role_exists(db: _DB, role: str) -> bool:
    return bool(db.fetchall("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,)))


__all__ = ["MARTS_DIR", "mart_sql", "refresh_marts"]
