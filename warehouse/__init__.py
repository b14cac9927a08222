"""The shared warehouse, split by concern: schema (schema.py); rows built from link/std outputs
(build.py, with owners.py for identifier_owner / fact_owner_change and facts.py for facts and the
calendar); loads (load.py: one commit over staging.py's Arrow or lake-staged tables, merged per
backend by merge_duckdb.py / merge_postgres.py, the DuckDB vault's protocol in commit.py);
connections.py, ddl.py (tables, roles, grants), state.py (reads, extraction state),
mart_views.py (analyst marts refresh, marts/*.sql), the personal-data vault (vault.py) and the
load benchmark (bench.py)."""
