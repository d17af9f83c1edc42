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
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_DB=${BENCH_DB:-etx_bench}
KEEP_DB=${KEEP_DB:-0}
KEEP_WORK=${KEEP_WORK:-0}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
PG_BASE=${PG_ADMIN_URL%/*}
BENCH_URL="$PG_BASE/$BENCH_DB"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

for tool in wrk curl jq psql awk; do
    command -v "$tool" >/dev/null || die "$tool is required (wrk: apt-get install -y wrk)"
done

# One benchmark at a time on this machine: two would share the database and the CPUs.
exec 9>"${TMPDIR:-/tmp}/etx-bench.lock"
if ! flock -n 9; then
    log "another benches/run.sh is running; waiting for it (up to 30 min)"
    flock -w 1800 9 || die "gave up waiting for the other benchmark run"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/etx-bench.XXXXXX")
PIDS=()
DB_CREATED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $DB_CREATED == 1 && $KEEP_DB != 1 ]]; then
        psql "$PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ $KEEP_WORK == 1 || $rc != 0 ]]; then
        log "logs and wrk output kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# A port nobody is listening on (bash's /dev/tcp: a refused connect means free).
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# HTTP status of GET $2 on port $1, into STATUS ("000" when nothing answers). No fork, so it
# can be polled tightly when timing start-up.
STATUS=000
probe() {
    local fd line
    STATUS=000
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 0
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&"$fd" 2>/dev/null || true
    if read -r -t 2 -u "$fd" line 2>/dev/null; then
        line=${line#HTTP/1.? }
        STATUS=${line:0:3}
    fi
    exec {fd}>&-
}

wait_ready() { # port pid timeout_s
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        kill -0 "$2" 2>/dev/null || return 1
        probe "$1" /health/ready
        [[ $STATUS == 200 ]] && return 0
        sleep 0.005
    done
    return 1
}

# Passed-through configuration overrides, shown in the report.
PASS_ENV=()
while IFS='=' read -r k v; do
    [[ $k == ETX__* ]] && PASS_ENV+=("$k=$v")
done < <(env)

# Starts the server with a minimal environment; extra NAME=VALUE pairs follow the data dir.
# Sets SERVER_PID and SERVER_PORT. The working directory is the data dir so no stray
# ./etx.toml is read.
start_server() { # data_dir name [NAME=VALUE...]
    local dir=$1 name=$2
    shift 2
    mkdir -p "$dir"
    SERVER_PORT=$(free_port)
    (cd "$dir" && exec env -i PATH="$PATH" HOME="${HOME:-/root}" RUST_LOG=warn \
        ETX__RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE=100000000 \
        ETX__RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE=100000000 \
        "${PASS_ENV[@]}" "$@" \
        "$BIN" serve --bind "127.0.0.1:$SERVER_PORT" --data-dir "$dir") \
        >"$WORK/$name.out" 2>"$WORK/$name.err" 9>&- &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_ready "$SERVER_PORT" "$SERVER_PID" 60 || {
        tail -20 "$WORK/$name.err" >&2
        die "server $name did not become ready"
    }
}

api() { # method path [json] -> body on stdout; fails on non-2xx
    local url="http://127.0.0.1:$SERVER_PORT$2"
    if [[ $# -ge 3 ]]; then
        curl -sS --fail-with-body --max-time 30 -X "$1" -H 'Content-Type: application/json' -d "$3" "$url"
    else
        curl -sS --fail-with-body --max-time 30 -X "$1" -H "Authorization: Bearer $TOKEN" "$url"
    fi
}

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

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# CPU ticks (user+system, all threads) of one process, and of every PostgreSQL process.
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
    local t=0 pid
    for pid in $(pgrep -x postgres || true); do
        t=$((t + $(ticks_of "$pid")))
    done
    echo "$t"
}
pct() { awk -v d="$1" -v hz="$CLK_TCK" -v s="$2" 'BEGIN { printf "%.0f%%", 100 * d / hz / s }'; }

# Runs wrk bounded by DURATION (+ slack) and prints its RESULT line's key=value pairs.
run_wrk() { # label script conns threads duration_s [extra wrk args...]
    local label=$1 script=$2 conns=$3 threads=$4 dur=$5
    shift 5
    ETX_LABEL=$label ETX_TOKEN=$TOKEN ETX_LOGIN=$BENCH_USER ETX_PASSWORD=$BENCH_PASSWORD \
        timeout -k 5 $((dur + 30)) wrk -t"$threads" -c"$conns" -d"${dur}s" --latency \
        -s "$BENCH_DIR/$script" "$@" "http://127.0.0.1:$SERVER_PORT" >"$WORK/$label.wrk" 2>&1 9>&- || true
}

field() { # label key -> value from that run's RESULT line
    local line
    line=$(grep -m1 '^RESULT ' "$WORK/$1.wrk" || true)
    [[ -n $line ]] || {
        cat "$WORK/$1.wrk" >&2
        die "wrk run $1 produced no result"
    }
    tr ' ' '\n' <<<"$line" | awk -F= -v k="$2" '$1 == k {print $2}'
}

# ---------------------------------------------------------------------------------------------

if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release -p etx-server (this takes a while on a small machine)"
    (cd "$ROOT" && cargo build --release -p etx-server)
fi
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)
BIN="$TARGET_DIR/release/etx"
[[ -x $BIN ]] || die "$BIN not found (run without SKIP_BUILD=1)"
# Run a private copy: a concurrent cargo build may replace target/release/etx mid-run.
cp "$BIN" "$WORK/etx"
BIN_SRC=$BIN
BIN="$WORK/etx"
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no -- crates config Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    GIT_REV="$GIT_REV+uncommitted changes"
fi

# Other CPU-heavy work (a compile, another benchmark) skews every figure on a small machine.
# QUIET_WAIT=N waits up to N seconds for rustc/cargo/wrk processes to finish.
BUSY_RE='rustc|cargo|wrk|cc1|cc1plus|ld|rust-lld|clippy-driver|rustdoc'
busy_list() { ps -eo comm= | grep -Ex "$BUSY_RE" | sort | uniq -c | xargs; }
busy() { [[ -n $(busy_list) ]]; }
if [[ ${QUIET_WAIT:-0} -gt 0 ]] && busy; then
    log "waiting up to ${QUIET_WAIT}s for other builds to finish"
    deadline=$((SECONDS + QUIET_WAIT))
    while busy && ((SECONDS < deadline)); do sleep 5; done
fi
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
NOISE=none
if busy; then
    NOISE="WARNING, other CPU-heavy processes running: $(busy_list)"
    log "$NOISE"
fi

log "fresh PostgreSQL database $BENCH_DB"
psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qAtc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null
psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $BENCH_DB" >/dev/null
DB_CREATED=1

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
