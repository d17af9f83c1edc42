#!/usr/bin/env bash
# Accounts benchmark: builds the release binary, runs the scenarios against 127.0.0.1 only and
# prints a results table. Every load run is bounded in time, and every process started here is
# stopped on exit (normal or not). See benches/README.md.
#
#   benches/run.sh                 # everything, defaults below
#   DURATION=10 benches/run.sh     # shorter measured runs
#   SKIP_BUILD=1 benches/run.sh    # reuse target/release/etx
#
# Tunables (environment):
#   DURATION=20        seconds per measured wrk run
#   WARMUP=5           seconds of unmeasured /me load before the first measurement
#   CONNS=64           connections for GET /api/auth/me
#   STORM_CONNS=16     connections for the login storm
#   WRK_THREADS=2      wrk threads for /me (the storm uses 1)
#   STARTUP_RUNS=7     cold starts measured for the SQLite start-up time
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres   where the bench database is made
#   BENCH_DB=etx_bench database name (dropped and recreated; dropped again at the end)
#   KEEP_DB=1          keep the database afterwards;  KEEP_WORK=1  keep logs and wrk output
#   SKIP_BUILD=1       do not run cargo build
#   QUIET_WAIT=0       seconds to wait for other compiles (rustc/cargo) to finish before measuring
# Any ETX__SECTION__KEY variable already set is passed through to the server (and printed).

set -euo pipefail

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CONNS=${CONNS:-64}
STORM_CONNS=${STORM_CONNS:-16}
WRK_THREADS=${WRK_THREADS:-2}
STARTUP_RUNS=${STARTUP_RUNS:-7}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_USER=benchuser
BENCH_EMAIL=bench@example.com
BENCH_PASSWORD=Bench-Pass-2718
TOKEN=

register_and_login() {
    api POST /api/auth/register \
        "{\"username\":\"$BENCH_USER\",\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\"}" >/dev/null \
        || die "registration failed"
    fresh_token
    for _ in 1 2 3 4 5; do api GET /api/auth/me >/dev/null || die "/me failed"; done
    api GET /health >/dev/null
}

# A fresh session per scenario, so no token runs into its 15-minute lifetime.
fresh_token() {
    TOKEN=$(api POST /api/auth/login "{\"login\":\"$BENCH_USER\",\"password\":\"$BENCH_PASSWORD\"}" \
        | jq -er .access_token) || die "login failed"
}

# ---------------------------------------------------------------------------------------------

prepare_binary
fresh_database

# --- PostgreSQL server: idle RSS, /me, /me under a login storm --------------------------------
log "starting the server on PostgreSQL"
start_server "$WORK/pg-data" pg DATABASE_URL="$BENCH_URL"
PG_PID=$SERVER_PID
register_and_login
sleep 2
RSS_PG_IDLE=$(rss_kib "$PG_PID")
log "idle RSS (PostgreSQL) ${RSS_PG_IDLE} KiB"

fresh_token
log "warm-up: /me ${WARMUP}s"
run_wrk warmup me.lua "$CONNS" "$WRK_THREADS" "$WARMUP"

log "scenario 1: GET /api/auth/me, $CONNS connections, ${DURATION}s"
s_t0=$(ticks_of "$PG_PID") p_t0=$(pg_ticks)
run_wrk me me.lua "$CONNS" "$WRK_THREADS" "$DURATION"
S1_SRV_CPU=$(pct $(($(ticks_of "$PG_PID") - s_t0)) "$DURATION")
S1_PG_CPU=$(pct $(($(pg_ticks) - p_t0)) "$DURATION")

fresh_token
STORM_DUR=$((DURATION + 6))
log "scenario 2: login storm ($STORM_CONNS connections, ${STORM_DUR}s) with /me ($CONNS connections, ${DURATION}s) inside it"
ETX_LABEL=storm ETX_LOGIN=$BENCH_USER ETX_PASSWORD=$BENCH_PASSWORD \
    timeout -k 5 $((STORM_DUR + 30)) wrk -t1 -c"$STORM_CONNS" -d"${STORM_DUR}s" --timeout 10s --latency \
    -s "$BENCH_DIR/login.lua" "http://127.0.0.1:$SERVER_PORT" >"$WORK/storm.wrk" 2>&1 9>&- &
STORM_PID=$!
PIDS+=("$STORM_PID")
sleep 3
s_t0=$(ticks_of "$PG_PID") p_t0=$(pg_ticks)
run_wrk me_storm me.lua "$CONNS" "$WRK_THREADS" "$DURATION"
S2_SRV_CPU=$(pct $(($(ticks_of "$PG_PID") - s_t0)) "$DURATION")
S2_PG_CPU=$(pct $(($(pg_ticks) - p_t0)) "$DURATION")
wait "$STORM_PID" || true
forget_pid "$STORM_PID"

sleep 2
RSS_PG_AFTER=$(rss_kib "$PG_PID")
HWM_PG=$(hwm_kib "$PG_PID")
stop_pid "$PG_PID"

# --- SQLite: idle RSS, then cold start to /health/ready ----------------------------------------
log "idle RSS on SQLite"
start_server "$WORK/sqlite-data" sqlite
register_and_login
sleep 2
RSS_SQLITE_IDLE=$(rss_kib "$SERVER_PID")
stop_pid "$SERVER_PID"

log "scenario 4: cold start to /health/ready on SQLite, $STARTUP_RUNS runs"
STARTUP_MS=()
for i in $(seq "$STARTUP_RUNS"); do
    dir="$WORK/cold-$i"
    mkdir -p "$dir"
    port=$(free_port)
    t0=$EPOCHREALTIME
    (cd "$dir" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn "${PASS_ENV[@]}" \
        "$BIN" serve --bind "127.0.0.1:$port" --data-dir "$dir") >"$WORK/cold-$i.out" 2>"$WORK/cold-$i.err" 9>&- &
    pid=$!
    PIDS+=("$pid")
    wait_ready "$port" "$pid" 30 || die "cold start $i did not become ready"
    t1=$EPOCHREALTIME
    STARTUP_MS+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
    stop_pid "$pid"
done
STARTUP_MEDIAN=$(printf '%s\n' "${STARTUP_MS[@]}" | sort -n | awk '{v[NR] = $1} END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')

# --- Report ------------------------------------------------------------------------------------
verdict() { # value op target
    awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "MISSED" }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

ME_RPS=$(field me rps) ME_P50=$(field me p50_ms) ME_P99=$(field me p99_ms)
MS_RPS=$(field me_storm rps) MS_P50=$(field me_storm p50_ms) MS_P99=$(field me_storm p99_ms)
ST_RPS=$(field storm rps) ST_P50=$(field storm p50_ms) ST_P99=$(field storm p99_ms)
ERRS="me: $(field me non2xx)/$(field me socket_errors), me+storm: $(field me_storm non2xx)/$(field me_storm socket_errors), storm: $(field storm non2xx)/$(field storm socket_errors)"
RSS_TARGET_KIB=$((40 * 1024))

cat <<EOF

ETX accounts benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))
binary: $BIN_SRC (rev $GIT_REV)   wrk: $CONNS conns x $WRK_THREADS threads for /me, $STORM_CONNS conns x 1 thread for logins, ${DURATION}s runs
overrides: ${PASS_ENV[*]:-none} (plus login/register throttles raised)
load average before start: $LOAD0; concurrent builds: $NOISE

| # | scenario | measured | target | |
|---|---|---|---|---|
| 1 | GET /api/auth/me, $CONNS conns, PostgreSQL | $ME_RPS req/s, p50 $ME_P50 ms, p99 $ME_P99 ms | ≥ 10000 req/s, p99 ≤ 10 ms | $(verdict "$ME_RPS" ">=" 10000) / $(verdict "$ME_P99" "<=" 10) |
| 2 | /me during a $STORM_CONNS-conn login storm | $MS_RPS req/s, p50 $MS_P50 ms, p99 $MS_P99 ms | p99 ≤ 25 ms | $(verdict "$MS_P99" "<=" 25) |
| 2 | login storm (Argon2 defaults) | $ST_RPS logins/s, p50 $ST_P50 ms, p99 $ST_P99 ms | (reported) | |
| 3 | idle RSS after start + a few requests, PostgreSQL | $(mib "$RSS_PG_IDLE") | ≤ 40 MiB | $(verdict "$RSS_PG_IDLE" "<=" "$RSS_TARGET_KIB") |
| 3 | idle RSS after start + a few requests, SQLite | $(mib "$RSS_SQLITE_IDLE") | ≤ 40 MiB | $(verdict "$RSS_SQLITE_IDLE" "<=" "$RSS_TARGET_KIB") |
| 3 | RSS idle after scenarios 1–2 (peak), PostgreSQL | $(mib "$RSS_PG_AFTER") (peak $(mib "$HWM_PG")) | (reported) | |
| 4 | start to /health/ready = 200, SQLite, fresh data dir | median $STARTUP_MEDIAN ms (runs: ${STARTUP_MS[*]}) | ≤ 1000 ms | $(verdict "$STARTUP_MEDIAN" "<=" 1000) |

CPU (100% = one core): scenario 1 server $S1_SRV_CPU, PostgreSQL $S1_PG_CPU; scenario 2 server $S2_SRV_CPU, PostgreSQL $S2_PG_CPU
non-2xx / socket errors: $ERRS
EOF
