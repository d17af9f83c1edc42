#!/usr/bin/env bash
# A local cluster as deployed: PostgreSQL and Redis (started if they are down), INSTANCES (3)
# `etx` instances on loopback ports sharing them, and Debian's nginx balancing the instances
# with the proxy rules of deploy/nginx/etx-proxy.conf. Prints the URL and stays in the
# foreground; Ctrl-C (or SIGTERM) stops all of it.
#
#   scripts/cluster.sh                      # http://127.0.0.1:8080/ in front of :8081-:8083
#   PORT=18080 INSTANCES=2 scripts/cluster.sh
#
# Environment: ETX_BIN (the binary; default target/release/etx, built when missing), PORT (8080,
# nginx), FIRST_PORT (PORT + 1, the instances), CLUSTER_DB (etx_cluster: dropped and created
# again unless KEEP_DB=1), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres),
# REDIS_URL (redis://127.0.0.1:6379; NO_REDIS=1 for instances without it), CLUSTER_DIR (a new temporary directory: logs, data dirs,
# nginx's files), ETX_SECRET_KEY (random), and any ETX__SECTION__KEY setting for the instances.
#
# Once it is up, CLUSTER_DIR/cluster.env names the URL, the instances' ports and pid files;
# `scripts/cluster.sh start-instance CLUSTER_DIR N` starts instance N (1-based) again after it
# was stopped (a rolling restart); everything started that way is stopped with the cluster.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

start_instance() {
  local dir=$1 n=$2
  # shellcheck source=/dev/null
  source "$dir/cluster.env"
  local port=$((FIRST_PORT + n - 1))
  mkdir -p "$dir/data-$n"
  (
    export ETX_BIND="127.0.0.1:$port" ETX_DATA_DIR="$dir/data-$n"
    export ETX__HTTP__TRUSTED_PROXIES='["127.0.0.1/32"]'
    # Longer than nginx keeps an idle connection to an instance (keepalive_timeout below): a
    # stopping instance then closes none that nginx might be about to reuse.
    export ETX__HTTP__DRAIN_DELAY_MS=${ETX__HTTP__DRAIN_DELAY_MS:-2500}
    if [ "${NO_REDIS:-0}" = 1 ]; then unset REDIS_URL; fi
    exec "$ETX_BIN" serve >>"$dir/etx-$n.log" 2>&1
  ) &
  echo $! >"$dir/etx-$n.pid"
  for _ in $(seq 1 200); do
    if curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready"; then return 0; fi
    if ! kill -0 "$(cat "$dir/etx-$n.pid")" 2>/dev/null; then
      echo "ERROR: instance $n exited; see $dir/etx-$n.log" >&2
      tail -5 "$dir/etx-$n.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "ERROR: instance $n not ready on :$port after 20 s; see $dir/etx-$n.log" >&2
  return 1
}

if [ "${1:-}" = "start-instance" ]; then
  start_instance "$2" "$3"
  exit
fi

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_postgres
[ -n "${REDIS_URL:-}" ] || [ "${NO_REDIS:-0}" = 1 ] || ensure_redis
ensure_nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

INSTANCES=${INSTANCES:-3}
PORT=${PORT:-8080}
FIRST_PORT=${FIRST_PORT:-$((PORT + 1))}
CLUSTER_DB=${CLUSTER_DB:-etx_cluster}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
CLUSTER_DIR=${CLUSTER_DIR:-$(mktemp -d /tmp/etx-cluster.XXXXXX)}
ETX_SECRET_KEY=${ETX_SECRET_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
if [ -z "${ETX_BIN:-}" ]; then
  ETX_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/etx"
  [ -x "$ETX_BIN" ] || (cd "$ROOT" && cargo build --release --locked -p etx-server)
fi
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)

stop_all() {
  trap - EXIT INT TERM
  [ -n "${SLEEPER:-}" ] && kill "$SLEEPER" 2>/dev/null || true
  for f in "$CLUSTER_DIR"/etx-*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  [ -e "$CLUSTER_DIR/nginx/nginx.pid" ] && kill "$(cat "$CLUSTER_DIR/nginx/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${KEEP_DB:-0}" != 1 ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $CLUSTER_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  echo "cluster stopped"
}
trap stop_all EXIT
trap 'exit 0' INT TERM

if [ "${KEEP_DB:-0}" != 1 ]; then
  PGOPTIONS="--client-min-messages=warning" psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 \
    -qc "DROP DATABASE IF EXISTS $CLUSTER_DB WITH (FORCE)" \
    -c "CREATE DATABASE $CLUSTER_DB"
fi

cat >"$CLUSTER_DIR/cluster.env" <<ENV
URL=http://127.0.0.1:$PORT
INSTANCES=$INSTANCES
FIRST_PORT=$FIRST_PORT
ETX_BIN=$ETX_BIN
NO_REDIS=${NO_REDIS:-0}
export DATABASE_URL=${PG_ADMIN_URL%/*}/$CLUSTER_DB
$([ "${NO_REDIS:-0}" = 1 ] || echo "export REDIS_URL=$REDIS_URL")
export ETX_SECRET_KEY=$ETX_SECRET_KEY
ENV
# Every ETX_* setting this cluster was started with, so an instance started again later (by
# `start-instance`, from another shell) runs with the same configuration.
export -p | grep -E '^declare -x ETX_' | grep -vE '^declare -x ETX_(BIN|BIND|DATA_DIR|SECRET_KEY)=' \
  >>"$CLUSTER_DIR/cluster.env" || true
chmod 600 "$CLUSTER_DIR/cluster.env"

# The schema once, before the instances race to create it.
(source "$CLUSTER_DIR/cluster.env" && ETX_DATA_DIR="$CLUSTER_DIR/data-1" "$ETX_BIN" migrate >"$CLUSTER_DIR/migrate.log" 2>&1)
for n in $(seq 1 "$INSTANCES"); do
  start_instance "$CLUSTER_DIR" "$n"
done

mkdir -p "$CLUSTER_DIR/nginx/tmp"
chmod 777 "$CLUSTER_DIR/nginx/tmp"
{
  echo "worker_processes 1;"
  echo "pid $CLUSTER_DIR/nginx/nginx.pid;"
  echo "error_log $CLUSTER_DIR/nginx/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log off;"
  for t in client_body proxy fastcgi uwsgi scgi; do
    echo "  ${t}_temp_path $CLUSTER_DIR/nginx/tmp/$t;"
  done
  echo "  upstream etx {"
  echo "    least_conn;"
  for n in $(seq 1 "$INSTANCES"); do
    echo "    server 127.0.0.1:$((FIRST_PORT + n - 1)) max_fails=0;"
  done
  echo "    keepalive 64;"
  echo "    keepalive_timeout 2s;"
  echo "  }"
  echo "  map \$http_upgrade \$etx_connection { default upgrade; '' ''; }"
  echo "  server {"
  echo "    listen 127.0.0.1:$PORT;"
  echo "    include $ROOT/deploy/nginx/etx-proxy.conf;"
  echo "  }"
  echo "}"
} >"$CLUSTER_DIR/nginx/nginx.conf"
"$NGINX" -p "$CLUSTER_DIR/nginx" -c "$CLUSTER_DIR/nginx/nginx.conf" -e "$CLUSTER_DIR/nginx/error.log"
for _ in $(seq 1 50); do
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/health/ready" && break
  sleep 0.1
done

echo "ETX Processor cluster: $INSTANCES instances behind nginx at http://127.0.0.1:$PORT/"
echo "files, logs and cluster.env in $CLUSTER_DIR; Ctrl-C stops it"
# Until told to stop; `wait` returns at once when a signal arrives.
sleep infinity &
SLEEPER=$!
wait "$SLEEPER" || true
