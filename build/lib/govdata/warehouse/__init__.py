"""The shared warehouse: schema (schema.py), build rows from link/std outputs (build.py),
idempotent loads and marts for DuckDB and PostgreSQL (load.py), the personal-data vault
(vault.py), extraction state (state.py), analyst marts (marts/*.sql), load benchmark (bench.py)."""
