# Shared by the benchmark scripts: process bookkeeping, the server under test, wrk runs and the
# release build. Source it after `set -euo pipefail`; it reads SKIP_BUILD, KEEP_DB, KEEP_WORK,
# PG_ADMIN_URL, BENCH_DB and QUIET_WAIT, and sets WORK, BIN, GIT_REV, NOISE and LOAD0.

PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_DB=${BENCH_DB:-etx_bench}
KEEP_DB=${KEEP_DB:-0}
KEEP_WORK=${KEEP_WORK:-0}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
PG_BASE=${PG_ADMIN_URL%/*}
# Same-host PostgreSQL over loopback without TLS, for the server and pgbench alike.
BENCH_URL="$PG_BASE/$BENCH_DB?sslmode=disable"
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
# A port below the ephemeral range (or above it if there is no room below), free of listeners
# and of sockets in any state: after a benchmark with thousands of client connections, a port
# in the ephemeral range can still be held by one of them in TIME-WAIT and the bind fails.
free_port() {
    local p lo hi port_lo port_hi
    read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
    lo=10000 hi=$((port_lo - 1))
    ((hi > lo + 1000)) || lo=$((port_hi + 1)) hi=65535
    for _ in $(seq 200); do
        p=$((lo + RANDOM % (hi - lo + 1)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! ss -Htan "sport = :$p" | grep -q .; then
            echo "$p"
            return
        fi
    done
    die "no free port found outside $port_lo-$port_hi"
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

# Passed-through configuration overrides (ETX__*, and MIMALLOC_* for the allocator), shown in
# the report.
PASS_ENV=()
while IFS='=' read -r k v; do
    [[ $k == ETX__* || $k == MIMALLOC_* ]] && PASS_ENV+=("$k=$v")
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


# The readers below come in two forms: `rss_kib PID` prints, `status_kib PID FIELD` and
# `ticks_into PID` set REPLY without starting a process. Sampling loops that run while a load is
# measured use the second form: forking awk, grep and sleep ten times a second took 10-13 % of
# the machine's CPU during the measurement, on the same two cores as the server.
status_kib() { # pid field -> REPLY (0 if the process is gone)
    local k v rest
    REPLY=0
    { while read -r k v rest; do
        [[ $k == "$2:" ]] && { REPLY=$v; return 0; }
    done <"/proc/$1/status"; } 2>/dev/null || true
}
rss_kib() { status_kib "$1" VmRSS; echo "$REPLY"; }
hwm_kib() { status_kib "$1" VmHWM; echo "$REPLY"; }

# CPU ticks (user+system, all threads) of one process, and of every PostgreSQL process.
ticks_into() { # pid -> REPLY (0 if the process is gone)
    local s f
    REPLY=0
    { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 0
    s=${s##*) } # the command name may hold spaces; fields count from the state after it
    read -ra f <<<"$s"
    REPLY=$((f[11] + f[12]))
}
ticks_of() { ticks_into "$1"; echo "$REPLY"; }
# A sleep that starts no process (`sleep` would fork and exec on every call).
exec 8<> <(:)
nap() { read -rt "$1" -u 8 || true; }
# Whether a line of file $1 starts with $2, read without starting a process.
has_line() {
    local l
    while IFS= read -r l; do
        [[ $l == "$2"* ]] && return 0
    done <"$1"
    return 1
}
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
    ETX_LABEL=$label ETX_TOKEN=${TOKEN:-} ETX_LOGIN=${BENCH_USER:-} ETX_PASSWORD=${BENCH_PASSWORD:-} \
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


# Builds (unless SKIP_BUILD=1) and copies the release binary, then notes concurrent CPU load.
prepare_binary() {
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

}

fresh_database() {
    log "fresh PostgreSQL database $BENCH_DB"
    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qAtc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null
    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $BENCH_DB" >/dev/null
    DB_CREATED=1
}
