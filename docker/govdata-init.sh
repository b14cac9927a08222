#!/usr/bin/env bash
# govdata-init (compose): create the warehouse schema, roles and grants (idempotent), then,
# once per volume, generate the demo world on the shared volume and move two departments onto
# real servers (MariaDB, PostgreSQL). The marker file keeps the same world across restarts,
# matching the watermarks the warehouse already holds for it.
set -euo pipefail
python -c 'from govdata.settings import get_settings; from govdata.warehouse.load import init_warehouse; init_warehouse(get_settings().warehouse_url)'
echo "warehouse schema ready"

world="${GOVDATA_WORLD:-/opt/govdata/world}"
marker="$world/.seeded"
if [[ -f "$marker" ]]; then
  echo "demo world already seeded in $world"
  exit 0
fi
govdata demo-data "$world" --persons "${GOVDATA_DEMO_PERSONS:-20000}" --seed "${GOVDATA_DEMO_SEED:-42}"
python /opt/govdata/docker/load_departments.py "$world" \
  --target shebao=DEPT_MARIADB_URL \
  --target shichang=DEPT_POSTGRES_URL
mkdir -p "${GOVDATA_LAKE:-/opt/govdata/lake}"
touch "$marker"
