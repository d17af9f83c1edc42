#!/usr/bin/env bash
# Resting-orders benchmark on PostgreSQL: ORDERS open limit orders (100,000) loaded by the
# matcher, one tick crossing CROSSED of them (10,000); prints the time until all are filled,
# then checks none filled twice and verifies the ledger. See benches/README.md.
#
#   benches/resting.sh
#   ORDERS=200000 CROSSED=20000 MATCH_BATCH=2000 benches/resting.sh
#
# Tunables (environment): ORDERS, CROSSED, USERS (1000), MATCH_BATCH and MATCH_GROUPS ([trading]
# match_batch and match_groups, 3000 and 4 by default), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres), BENCH_DB
# (etx_bench_resting; dropped and created again). CARGO_TARGET_DIR is honoured.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_DB=${BENCH_DB:-etx_bench_resting}
export BENCH_DATABASE_URL="${PG_ADMIN_URL%/*}/$BENCH_DB?sslmode=disable"

psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" \
    -c "CREATE DATABASE $BENCH_DB"
cd "$ROOT"
cargo bench --quiet -p etx-server --bench resting
psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"
