#!/usr/bin/env bash
# The file workspace and processing jobs: a 1 GiB upload through `POST /api/files` (MB/s and the
# server's RSS growth, against copying the same file on the same disk), and the job claim
# latency (from `POST /api/jobs` to the owner's Socket.IO client seeing the job `running`), on
# SQLite and on PostgreSQL. See benches/README.md.
#
#   benches/jobs.sh                              # 1 GiB upload, 200 jobs, both databases
#   UPLOAD_MIB=256 JOBS=50 SKIP_BUILD=1 benches/jobs.sh
#
# Tunables (environment):
#   UPLOAD_MIB=1024    size of the uploaded file
#   JOBS=200           jobs timed for the claim latency (after 5 unmeasured ones)
#   DBS="sqlite pg"    databases to run against
#   KEEP_WORK, SKIP_BUILD, QUIET_WAIT: as in run.sh
# The release build goes to CARGO_TARGET_DIR, /var/tmp/etx-bench-target unless set.

set -euo pipefail

UPLOAD_MIB=${UPLOAD_MIB:-1024}
JOBS=${JOBS:-200}
DBS=${DBS:-"sqlite pg"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/etx-bench-target}
# The upload's copy and the server's object store go to disk, not a RAM-backed /tmp.
export TMPDIR=${TMPDIR:-/var/tmp}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! python3 -c 'import socketio, websocket' 2>/dev/null; then
    log "installing python-socketio[client]"
    pip install "python-socketio[client]" >/dev/null || die "python-socketio[client] is required (pip)"
fi

prepare_binary

BENCH_USER=jobsbench
BENCH_PASSWORD=Bench-Pass-2718
TOKEN=
login() {
    api POST /api/auth/register \
        "{\"username\":\"$BENCH_USER\",\"email\":\"$BENCH_USER@example.com\",\"password\":\"$BENCH_PASSWORD\"}" >/dev/null \
        || die "registration failed"
    TOKEN=$(api POST /api/auth/login "{\"login\":\"$BENCH_USER\",\"password\":\"$BENCH_PASSWORD\"}" \
        | jq -er .access_token) || die "login failed"
}

log "writing a ${UPLOAD_MIB} MiB file of random bytes"
BIG="$WORK/big.bin"
head -c "$((UPLOAD_MIB * 1024 * 1024))" /dev/urandom >"$BIG"
TINY="$WORK/tiny.csv"
printf 'orgFullName,emissionSourceName,value\nAcme,Boiler 1,007\nAcme,Boiler 2,1e5\n' >"$TINY"

RESULTS=()
for db in $DBS; do
    extra=()
    if [[ $db == pg ]]; then
        fresh_database
        extra=(DATABASE_URL="$BENCH_URL")
    fi
    start_server "$WORK/data-$db" "server-$db" ETX__FILES__QUOTA_BYTES=$((4 * 1024 * 1024 * 1024)) "${extra[@]}"
    login

    # Reference: the same bytes copied on the same disk.
    sync
    t0=$(date +%s.%N)
    cp "$BIG" "$WORK/copy.bin"
    sync
    t1=$(date +%s.%N)
    rm -f "$WORK/copy.bin"
    copy_mbs=$(awk -v b="$((UPLOAD_MIB * 1048576))" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", b / (z - a) / 1e6 }')

    status_kib "$SERVER_PID" VmRSS
    rss0=$REPLY
    peak=$rss0
    curl -sS --fail-with-body --max-time 600 -o "$WORK/upload-$db.json" -w '%{time_total}\n' \
        -H "Authorization: Bearer $TOKEN" -F "file=@$BIG;filename=big.bin" \
        "http://127.0.0.1:$SERVER_PORT/api/files" >"$WORK/upload-$db.time" &
    cpid=$!
    while kill -0 "$cpid" 2>/dev/null; do
        status_kib "$SERVER_PID" VmRSS
        ((REPLY > peak)) && peak=$REPLY
        nap 0.05
    done
    wait "$cpid" || die "the upload failed: $(cat "$WORK/upload-$db.json")"
    secs=$(cat "$WORK/upload-$db.time")
    up_mbs=$(awk -v b="$((UPLOAD_MIB * 1048576))" -v s="$secs" 'BEGIN { printf "%.0f", b / s / 1e6 }')
    stored=$(jq -r '.files[0].size' "$WORK/upload-$db.json")
    [[ $stored == $((UPLOAD_MIB * 1048576)) ]] || die "stored $stored bytes"
    growth=$(((peak - rss0) / 1024))
    RESULTS+=("| $db | ${UPLOAD_MIB} MiB upload | ${secs} s, ${up_mbs} MB/s (disk copy ${copy_mbs} MB/s: $(awk -v u="$up_mbs" -v c="$copy_mbs" 'BEGIN { printf "%.2f", u / c }') ×) | RSS $((rss0 / 1024)) → peak $((peak / 1024)) MiB (+${growth} MiB) |")

    input=$(curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" -F "file=@$TINY;filename=tiny.csv" \
        "http://127.0.0.1:$SERVER_PORT/api/files" | jq -er '.files[0].id')
    line=$(python3 "$BENCH_DIR/jobs/claim_latency.py" "http://127.0.0.1:$SERVER_PORT" "$TOKEN" "$input" "$JOBS" | grep '^RESULT ')
    get() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1 == k {print $2}'; }
    RESULTS+=("| $db | claim latency, $(get n) jobs | p50 $(get claim_p50_ms) ms, p90 $(get claim_p90_ms) ms, p99 $(get claim_p99_ms) ms, max $(get claim_max_ms) ms | POST round trip p50 $(get post_p50_ms) ms |")
    stop_pid "$SERVER_PID"
done

cat <<REPORT

ETX jobs benchmark — $(date -u +%Y-%m-%dT%H:%MZ), commit $GIT_REV, $(nproc) CPUs
load average at start: $LOAD0; concurrent CPU-heavy processes: $NOISE
overrides: ${PASS_ENV[*]:-none}

| database | what | result | reference / memory |
|---|---|---|---|
$(printf '%s\n' "${RESULTS[@]}")
REPORT
