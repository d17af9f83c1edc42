#!/usr/bin/env bash
# Live prices over WebSocket: how many concurrent `GET /ws/prices` clients one server holds, its
# RSS at that count, and tick-to-client delivery latency across all clients, measured by the
# load client in benches/wsload (a standalone crate) on loopback. Every run is bounded in time
# and every process started here is stopped on exit. See benches/README.md.
#
#   benches/ws.sh                            # 10,000 clients, 30 s of measurement
#   CLIENTS=2000 MEASURE_SECS=10 RUNS=2 SKIP_BUILD=1 benches/ws.sh
#
# Tunables (environment):
#   CLIENTS=10000      WebSocket clients to open
#   MEASURE_SECS=30    measuring window, after every client has connected (or given up)
#   RAMP=1000          new connections per second
#   TICK_MS=1000       the simulated feed's interval (ETX__MARKET__TICK_MS)
#   LOAD_THREADS=2     tokio worker threads of the load client (the machine has 2 cores)
#   LOAD_SCHED=batch   the load client's scheduling policy (chrt: batch or other). Batch, so
#                      that its wake-ups do not preempt the server in the middle of a tick's
#                      writes: remote clients would not share the server's cores at all.
#   SOURCE_IPS=1       spread client source addresses over 127.0.0.1..N (needed past the
#                      ephemeral port range, ~28k connections per source address)
#   RUNS=1             load runs, each against a freshly started server
#   KEEP_WORK, SKIP_BUILD, QUIET_WAIT: as in run.sh
# The release build goes to CARGO_TARGET_DIR, /var/tmp/etx-bench-target unless set, so it does
# not wait for (or block) builds in target/. Any ETX__SECTION__KEY variable already set is
# passed through to the server (and printed).

set -euo pipefail

CLIENTS=${CLIENTS:-10000}
MEASURE_SECS=${MEASURE_SECS:-30}
RAMP=${RAMP:-1000}
TICK_MS=${TICK_MS:-1000}
LOAD_THREADS=${LOAD_THREADS:-2}
LOAD_SCHED=${LOAD_SCHED:-batch}
[[ $LOAD_SCHED == batch || $LOAD_SCHED == other ]] || { echo "LOAD_SCHED must be batch or other" >&2; exit 2; }
SOURCE_IPS=${SOURCE_IPS:-1}
RUNS=${RUNS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/etx-bench-target}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- limits that can stop 10k loopback connections -----------------------------------------------
# Each side holds one descriptor per connection, so the server and the load client each need
# CLIENTS + a few hundred. The soft limit is raised to the hard one for both (inherited).
HARD_NOFILE=$(ulimit -Hn)
[[ $HARD_NOFILE == unlimited ]] && HARD_NOFILE=1048576
ulimit -n "$HARD_NOFILE"
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range
EPHEMERAL=$((PORT_HI - PORT_LO + 1))
SOMAXCONN=$(cat /proc/sys/net/core/somaxconn)
SYN_BACKLOG=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog)
FILE_MAX=$(cat /proc/sys/fs/file-max)
LIMITS="nofile $(ulimit -n) (hard $(ulimit -Hn)); ephemeral ports $PORT_LO-$PORT_HI ($EPHEMERAL per source address); somaxconn $SOMAXCONN; tcp_max_syn_backlog $SYN_BACKLOG; fs.file-max $FILE_MAX"
log "limits: $LIMITS"
if ((CLIENTS + 256 > $(ulimit -n))); then
    log "WARNING: $CLIENTS clients need more than nofile $(ulimit -n) allows per process; expect EMFILE"
fi
if ((CLIENTS > EPHEMERAL * SOURCE_IPS)); then
    log "WARNING: $CLIENTS clients > $EPHEMERAL ephemeral ports x $SOURCE_IPS source addresses; raise SOURCE_IPS"
fi
if ((FILE_MAX < 2 * CLIENTS + 10000)); then
    log "WARNING: fs.file-max $FILE_MAX is low for 2 x $CLIENTS sockets"
fi

# --- binaries -------------------------------------------------------------------------------------
prepare_binary
if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --manifest-path benches/wsload/Cargo.toml"
    cargo build --release --manifest-path "$BENCH_DIR/wsload/Cargo.toml"
fi
WSLOAD_SRC=$(cargo metadata --format-version 1 --no-deps --manifest-path "$BENCH_DIR/wsload/Cargo.toml" \
    | jq -r .target_directory)/release/wsload
[[ -x $WSLOAD_SRC ]] || die "$WSLOAD_SRC not found (run without SKIP_BUILD=1)"
cp "$WSLOAD_SRC" "$WORK/wsload"
WSLOAD="$WORK/wsload"

server_clients() { # the server's own gauge of open /ws/prices sockets
    curl -sS --max-time 10 "http://127.0.0.1:$SERVER_PORT/metrics" 2>/dev/null \
        | awk '/^etx_ws_price_clients / {print $2; found = 1} END {if (!found) print "?"}'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# Busy CPU ticks of the whole machine (all cores), to tell how much of it other processes took.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# One load run against a fresh server; appends a table row to $WORK/rows and notes to $WORK/notes.
one_run() { # run number
    local n=$1 pid out err t_end peak=0 s_t0=0 l_t0=0 s_t1=0 l_t1=0 m_t0=0 m_t1=0 window=0 rss0 rss_start=0 gauge=? t_win=1 rc=0
    rm -rf "$WORK/data"
    log "run $n: starting the server (SQLite, tick ${TICK_MS} ms)"
    start_server "$WORK/data" "server$n" ETX__MARKET__PROVIDER=simulated ETX__MARKET__TICK_MS="$TICK_MS"
    pid=$SERVER_PID
    sleep 1
    rss0=$(rss_kib "$pid")
    out="$WORK/wsload$n.json" err="$WORK/wsload$n.err"
    log "run $n: $CLIENTS clients at $RAMP/s, then ${MEASURE_SECS}s of measurement (idle server RSS $(mib "$rss0") MiB)"
    # wsload bounds itself (and has a watchdog); timeout is the backstop.
    t_end=$((CLIENTS / RAMP + MEASURE_SECS + 6 * 14 + 60))
    timeout -k 5 "$t_end" chrt "--$LOAD_SCHED" 0 "$WSLOAD" --url "ws://127.0.0.1:$SERVER_PORT/ws/prices" --clients "$CLIENTS" \
        --ramp-per-sec "$RAMP" --measure-secs "$MEASURE_SECS" --threads "$LOAD_THREADS" \
        --source-ips "$SOURCE_IPS" >"$out" 2>"$err" 9>&- &
    local load_pid=$! wsload_pid
    PIDS+=("$load_pid")
    sleep 0.2
    wsload_pid=$(pgrep -P "$load_pid" -x wsload || echo "$load_pid") # timeout's child
    # Server RSS every 100 ms: the peak over the measuring window (wsload says when it opens and
    # closes on stderr), CPU of both over the window, and the server's client gauge mid-window.
    # wsload exits right after closing its window, so its CPU ticks are the last ones sampled.
    # The loop starts no process (lib.sh's fork-free readers): it runs during the measurement.
    local l_last=0
    close_window() {
        window=2 s_t1=$(ticks_of "$pid") l_t1=$l_last m_t1=$(machine_ticks)
        t_win=$(awk -v a="$t_win" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
    }
    while kill -0 "$load_pid" 2>/dev/null; do
        if ((window == 0)) && has_line "$err" '[wsload] window open'; then
            window=1 s_t0=$(ticks_of "$pid") l_t0=$(ticks_of "$wsload_pid") m_t0=$(machine_ticks) rss_start=$(rss_kib "$pid")
            t_win=$EPOCHREALTIME l_last=$l_t0
        elif ((window == 1)) && has_line "$err" '[wsload] window closed'; then
            close_window
        fi
        if ((window == 1)); then
            ticks_into "$wsload_pid"
            ((REPLY > 0)) && l_last=$REPLY
            status_kib "$pid" VmRSS
            ((REPLY > peak)) && peak=$REPLY
            if [[ $gauge == "?" ]] && has_line "$err" '[wsload] measuring'; then
                gauge=$(server_clients)
            fi
        fi
        nap 0.1
    done
    wait "$load_pid" || rc=$?
    ((rc == 0)) || { cat "$err" >&2; die "wsload failed (exit $rc)"; }
    forget_pid "$load_pid"
    ((window == 1)) && grep -q '^\[wsload\] window closed' "$err" && close_window
    ((window == 2)) || { cat "$err" >&2; die "wsload never reported its measuring window"; }
    jq -e .clients_target "$out" >/dev/null || { cat "$out" "$err" >&2; die "wsload printed no summary"; }
    kill -0 "$pid" 2>/dev/null || die "the server died during the run (see $WORK/server$n.err)"
    sleep 2
    local rss_after hwm
    rss_after=$(rss_kib "$pid") hwm=$(hwm_kib "$pid")
    stop_pid "$pid"

    j() { jq -r ".$1" "$out"; }
    local held per_conn verdict
    held=$(j clients_held)
    per_conn=$(awk -v p="$peak" -v i="$rss0" -v h="$held" 'BEGIN { printf "%.1f", h ? (p - i) / h : 0 }')
    verdict=$(awk -v h="$held" -v r="$peak" -v p="$(j p99_ms)" \
        'BEGIN { print (h >= 10000 ? "met" : "MISSED") " / " (r <= 300000000 / 1024 ? "met" : "MISSED") " / " (p <= 100 ? "met" : "MISSED") }')
    printf '| %s | %s / %s | %s MiB (%s KiB/conn) | %s ms | %s ms | %s ms | %s |\n' "$n" \
        "$held" "$CLIENTS" "$(mib "$peak")" "$per_conn" "$(j p50_ms)" "$(j p99_ms)" "$(j max_ms)" "$verdict" \
        >>"$WORK/rows"
    cat >>"$WORK/notes" <<NOTES
run $n: held $(j clients_held_at_start) at window start, $held at end (server gauge mid-window: $gauge); failed $(j clients_failed), connect errors $(j connect_errors) $(jq -c .errors "$out"), disconnects $(j disconnects); ramp $(j ramp_secs) s
  updates $(j messages) over $(j ticks) ticks to $(j clients_receiving) clients (missed $(j messages_missed), fewest per client $(j min_per_client)); latency min $(j min_ms) / mean $(j mean_ms) / p90 $(j p90_ms) / p99.9 $(j p999_ms) ms
  server RSS idle $(mib "$rss0") MiB, window start $(mib "$rss_start"), peak $(mib "$peak"), 2 s after the clients left $(mib "$rss_after"), VmHWM $(mib "$hwm"); CPU over the ${t_win%.*} s window: server $(pct $((s_t1 - s_t0)) "$t_win"), wsload $(pct $((l_t1 - l_t0)) "$t_win"), everything else $(pct $((m_t1 - m_t0 - (s_t1 - s_t0) - (l_t1 - l_t0))) "$t_win") (of $(nproc)00%)
NOTES
}

: >"$WORK/rows"
: >"$WORK/notes"
for i in $(seq "$RUNS"); do
    one_run "$i"
done

cat <<REPORT

ETX live prices benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))
binary: $BIN_SRC (rev $GIT_REV); SQLite; tick ${TICK_MS} ms; wsload: $CLIENTS clients at $RAMP/s, ${MEASURE_SECS} s window, $LOAD_THREADS threads, SCHED_${LOAD_SCHED^^}
limits: $LIMITS
overrides: ${PASS_ENV[*]:-none}
load average before start: $LOAD0; concurrent builds: $NOISE

| run | clients held / target | server RSS, peak in window (per conn. over idle) | p50 | p99 | max | ≥ 10k / ≤ 300 MB / p99 ≤ 100 ms |
|---|---|---|---|---|---|---|
$(cat "$WORK/rows")

$(cat "$WORK/notes")
REPORT
