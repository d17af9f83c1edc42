#!/usr/bin/env bash
# Runs the whole test suite twice: on SQLite (a temporary file per test) and on PostgreSQL (a
# fresh schema per test). PostgreSQL and Redis are started if they are installed but down; the
# run fails loudly if either cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL_BASE="${ETX_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# ensure_postgres, ensure_redis, ensure_moto, ensure_oathtool, ensure_aiosmtpd,
# ensure_socketio_client
source scripts/services.sh

ensure_postgres
ensure_redis
ensure_moto
ensure_oathtool
ensure_aiosmtpd
ensure_socketio_client
# The browser test (crate etx-e2e) drives Debian's Chromium through chromedriver.
./scripts/e2e-deps.sh

# A clean database for this run; every test then makes its own schema inside it.
psql "$PG_URL_BASE/postgres" -v ON_ERROR_STOP=1 -q -c "DROP DATABASE IF EXISTS etx_test WITH (FORCE)" -c "CREATE DATABASE etx_test"

echo "== tests on SQLite =="
env -u TEST_DATABASE_URL cargo test --workspace --locked

# The OpenAPI document must generate a Python client that works unmodified. The server binary
# is the one the test build just made (a plain `cargo build` would resolve other features and
# compile every dependency again).
echo "== generated OpenAPI client =="
./scripts/openapi-client.sh "${CARGO_TARGET_DIR:-target}/debug/etx"

echo "== tests on PostgreSQL =="
TEST_DATABASE_URL="$PG_URL_BASE/etx_test" cargo test --workspace --locked

# Three instances behind Debian's nginx (scripts/cluster.sh), on PostgreSQL and Redis: sessions
# across instances, Socket.IO delivery, an instance killed and a rolling restart under load.
echo "== scale-out through nginx =="
ensure_nginx
cargo test -p etx-server --test cluster --locked
