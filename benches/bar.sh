#!/usr/bin/env bash
# BAR grouping benchmark: `etx bar-group` against the origin system's pandas approach
# (bar/pandas_baseline.py) on the same generated file, wall time and peak RSS from
# /usr/bin/time -v, for 500 emission sources and for 100,000 distinct keys. See benches/README.md.
#
#   benches/bar.sh                         # 2,000,000 rows (~140 MB), both scenarios
#   ROWS=500000 SKIP_BUILD=1 benches/bar.sh
#
# Tunables (environment):
#   ROWS=2000000         rows of each generated file
#   SOURCES="500 100000" emission-source counts, one scenario each (make_csv.py's 2nd argument)
#   SKIP_BUILD=1         use the release binary already built (CARGO_TARGET_DIR is honoured)
#   ETX_BIN=path         use this etx binary instead of the release build
#   KEEP_WORK=1          keep the generated files and outputs
#   QUIET_WAIT=N         wait up to N seconds for other compiles to finish before measuring

set -euo pipefail

ROWS=${ROWS:-2000000}
SOURCES=${SOURCES:-"500 100000"}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    apt-get install -y time >/dev/null || die "/usr/bin/time is required (apt-get install -y time)"
fi
if ! python3 -c 'import pandas' 2>/dev/null; then
    log "installing pandas"
    pip install pandas >/dev/null || die "pandas is required (pip install pandas)"
fi

# One benchmark at a time on this machine (the same lock as lib.sh).
exec 9>"${TMPDIR:-/tmp}/etx-bench.lock"
if ! flock -n 9; then
    log "another benchmark is running; waiting for it (up to 30 min)"
    flock -w 1800 9 || die "gave up waiting for the other benchmark run"
fi

# The files are large: keep them on disk, not on a tmpfs /tmp.
WORK=$(mktemp -d "${BAR_WORK_DIR:-/var/tmp}/etx-bar-bench.XXXXXX")
cleanup() {
    local rc=$?
    if [[ $KEEP_WORK == 1 || $rc != 0 ]]; then log "files kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT

if [[ -n ${ETX_BIN:-} ]]; then
    BIN_SRC=$ETX_BIN
else
    if [[ $SKIP_BUILD != 1 ]]; then
        log "cargo build --release -p etx-server"
        (cd "$ROOT" && cargo build --release -p etx-server)
    fi
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BIN_SRC="$TARGET_DIR/release/etx"
fi
[[ -x $BIN_SRC ]] || die "$BIN_SRC not found (run without SKIP_BUILD=1)"
# A private copy: a concurrent cargo build may replace the binary mid-run.
cp "$BIN_SRC" "$WORK/etx"
BIN="$WORK/etx"
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)

BUSY_RE='rustc|cargo|wrk|cc1|cc1plus|ld|rust-lld|clippy-driver|rustdoc'
busy_list() { ps -eo comm= | grep -Ex "$BUSY_RE" | sort | uniq -c | xargs; }
if [[ ${QUIET_WAIT:-0} -gt 0 && -n $(busy_list) ]]; then
    log "waiting up to ${QUIET_WAIT}s for other builds to finish"
    deadline=$((SECONDS + QUIET_WAIT))
    while [[ -n $(busy_list) ]] && ((SECONDS < deadline)); do sleep 5; done
fi
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
NOISE=none
[[ -z $(busy_list) ]] || NOISE="WARNING, other CPU-heavy processes running: $(busy_list)"

# Runs a command under /usr/bin/time -v; sets WALL (s), CPU (user + system s) and RSS (MiB, peak).
measure() { # label command...
    local label=$1
    shift
    /usr/bin/time -v -o "$WORK/$label.time" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" ||
        { cat "$WORK/$label.err" >&2; die "$label failed"; }
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; printf "%.2f", s}' "$WORK/$label.time")
    CPU=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {printf "%.2f", s}' "$WORK/$label.time")
    RSS=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$WORK/$label.time")
}

# The process's own footprint on a one-row file, so growth with the input can be told apart.
printf 'orgFullName,emissionSourceName,v\nA,S,1\n' >"$WORK/tiny.csv"
measure idle "$BIN" bar-group "$WORK/tiny.csv" "$WORK/tiny-out"
IDLE_RSS=$RSS

ROWS_OUT=()
for sources in $SOURCES; do
    input="$WORK/bar-$sources.csv"
    log "generating $ROWS rows over $sources sources"
    python3 "$BENCH_DIR/bar/make_csv.py" "$ROWS" "$sources" >"$input"
    size=$(du -m "$input" | cut -f1)
    sync
    log "pandas baseline"
    measure "pandas-$sources" python3 "$BENCH_DIR/bar/pandas_baseline.py" "$input" "$WORK/pandas-$sources"
    p_wall=$WALL p_cpu=$CPU p_rss=$RSS
    log "etx bar-group"
    measure "etx-$sources" "$BIN" bar-group "$input" "$WORK/etx-$sources"
    e_wall=$WALL e_cpu=$CPU e_rss=$RSS
    log "$(cat "$WORK/etx-$sources.out")"
    python3 "$BENCH_DIR/bar/check_groups.py" "$input" "$WORK/etx-$sources" "$WORK/pandas-$sources" >&2 ||
        die "the two outputs disagree"
    groups=$(awk '{for (i = 1; i < NF; i++) if ($i == "groups") print $(i + 1)}' "$WORK/etx-$sources.out")
    ratio=$(awk -v p="$p_wall" -v e="$e_wall" 'BEGIN { printf "%.1f", p / (e > 0 ? e : 0.01) }')
    cpu_ratio=$(awk -v p="$p_cpu" -v e="$e_cpu" 'BEGIN { printf "%.1f", p / (e > 0 ? e : 0.01) }')
    grown=$(awk -v a="$e_rss" -v b="$IDLE_RSS" 'BEGIN { printf "%.1f", a - b }')
    ROWS_OUT+=("$(printf '| %s rows, %s sources (%s MB), %s groups | %s s (CPU %s s), %s MiB | %s s (CPU %s s), %s MiB (+%s over idle) | **%s ×** (CPU %s ×) |' \
        "$ROWS" "$sources" "$size" "$groups" "$p_wall" "$p_cpu" "$p_rss" "$e_wall" "$e_cpu" "$e_rss" \
        "$grown" "$ratio" "$cpu_ratio")")
    rm -rf "$WORK/pandas-$sources" "$WORK/etx-$sources"
    [[ $KEEP_WORK == 1 ]] || rm -f "$input"
done

echo
echo "BAR grouping, commit $GIT_REV, $(nproc) CPUs, load average at start: $LOAD0"
echo "concurrent load: $NOISE"
echo "etx idle peak RSS (one-row file): $IDLE_RSS MiB"
echo
echo "| file | pandas wall (CPU), peak RSS | etx bar-group wall (CPU), peak RSS | speed-up (wall, CPU) |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS_OUT[@]}"
