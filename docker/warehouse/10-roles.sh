#!/usr/bin/env bash
# Runs once when the warehouse volume is initialised (postgres image, /docker-entrypoint-initdb.d).
# The group roles are the ones warehouse/load.py grants to (it also creates them if missing);
# here they get login members for analysts and stewards, passwords from the environment.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v analyst_pw="$WAREHOUSE_ANALYST_PASSWORD" -v steward_pw="$WAREHOUSE_STEWARD_PASSWORD" <<'SQL'
DO $$ BEGIN CREATE ROLE govdata_loader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE govdata_steward NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE govdata_analyst NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE ROLE analyst LOGIN PASSWORD :'analyst_pw' IN ROLE govdata_analyst;
CREATE ROLE steward LOGIN PASSWORD :'steward_pw' IN ROLE govdata_steward;
SQL
