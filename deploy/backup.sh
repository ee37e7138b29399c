#!/usr/bin/env bash
# Back up a running compose stack of deploy/compose.yaml into OUT (default ./backup-<date>):
#   warehouse/           the DuckDB warehouse as Parquet + schema.sql/load.sql (DuckDB's EXPORT
#                        DATABASE, read-only, waiting for a running step's write lock like any
#                        reader of the warehouse: churn.warehouse.connect)
#   dagster.dump         the Dagster instance (pg_dump custom format; restore with pg_restore)
# Usage: deploy/backup.sh [OUT]   (PROJECT=<compose project> when not "churn")
set -euo pipefail
project="${PROJECT:-churn}"
out="${1:-backup-$(date -u +%Y%m%dT%H%M%SZ)}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
code="${project}_code_1"
postgres="${project}_postgres_1"
inside="/var/lib/churn/backup/$stamp"
podman exec -i "$code" python - "$inside" <<'PY'
import sys
from pathlib import Path
from churn.sql import quote_literal
from churn.warehouse import connect
Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
con = connect(Path("/var/lib/churn/warehouse.duckdb"), read_only=True)
con.execute(f"EXPORT DATABASE {quote_literal(sys.argv[1])} (FORMAT parquet)")
PY
podman cp "$code:$inside" "$out/warehouse"
podman exec "$code" rm -rf "$inside"
podman exec "$postgres" sh -c 'pg_dump -U "$POSTGRES_USER" -Fc "$POSTGRES_DB"' >"$out/dagster.dump"
echo "backed up to $out: warehouse/ ($(ls "$out/warehouse" | wc -l) files), dagster.dump ($(wc -c <"$out/dagster.dump") bytes)"
