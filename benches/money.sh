#!/usr/bin/env bash
# Money benchmark on PostgreSQL (synchronous_commit as configured, on by default): P2P transfers
# per second next to pgbench running the equivalent SQL, market orders per second next to those
# transfers, transaction-list latency on a user with a
# long history, and CSV export throughput and memory. Loopback only; every run is bounded in time
# and every process started here is stopped on exit. See benches/README.md.
#
#   benches/money.sh                       # everything, defaults below
#   SKIP_BUILD=1 DURATION=10 benches/money.sh
#
# Tunables (environment):
#   DURATION=20        seconds per measured run (pgbench and wrk)
#   CLIENTS=64         concurrent clients for transfers (pgbench -c and wrk -c)
#   USERS=1000         users in the "many users" transfer scenario
#   HISTORY=1000000    transactions of the user whose history is listed and exported
#   LIST_CONNS=4       wrk connections for the list scenarios
#   SKIP_TRANSFERS=1   only the history scenarios (list and export)
#   SKIP_HISTORY=1     no history scenarios (transfers and market orders only)
#   PG_ADMIN_URL, BENCH_DB, KEEP_DB, KEEP_WORK, SKIP_BUILD, QUIET_WAIT: as in run.sh
# Any ETX__SECTION__KEY variable already set is passed through to the server (and printed).

set -euo pipefail

DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-64}
USERS=${USERS:-1000}
HISTORY=${HISTORY:-1000000}
LIST_CONNS=${LIST_CONNS:-4}
SKIP_TRANSFERS=${SKIP_TRANSFERS:-0}
SKIP_HISTORY=${SKIP_HISTORY:-0}
[[ $SKIP_TRANSFERS == 1 ]] && USERS=3

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v pgbench >/dev/null || die "pgbench is required (apt-get install -y postgresql-contrib)"

PASSWORD=Bench-Pass-2718
ADMIN=benchadmin
TOKEN=
sql() { psql "$BENCH_URL" -v ON_ERROR_STOP=1 -qAt "$@"; }

post_json() { # token path json [idempotency-key] -> body; fails on non-2xx
    local args=(-sS --fail-with-body --max-time 30 -X POST -H 'Content-Type: application/json' -d "$3")
    [[ -n $1 ]] && args+=(-H "Authorization: Bearer $1")
    [[ $# -ge 4 ]] && args+=(-H "Idempotency-Key: $4")
    curl "${args[@]}" "http://127.0.0.1:$SERVER_PORT$2"
}

login_token() { # login -> access token
    post_json "" /api/auth/login "{\"login\":\"$1\",\"password\":\"$PASSWORD\"}" | jq -er .access_token
}

# Registers bu0001..buNNNN (4 at a time: hashing runs on 2 threads), verifies them and writes
# "token username" lines to $WORK/users.txt.
make_users() {
    export -f post_json login_token
    export SERVER_PORT PASSWORD
    seq -f 'bu%04g' 1 "$USERS" | xargs -P4 -I{} bash -c \
        'post_json "" /api/auth/register "{\"username\":\"{}\",\"email\":\"{}@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null' \
        || die "registration failed"
    sql -c "UPDATE users SET is_verified = TRUE"
    seq -f 'bu%04g' 1 "$USERS" | xargs -P4 -I{} bash -c 'echo "$(login_token {}) {}"' >"$WORK/users.txt" \
        || die "login failed"
    [[ $(wc -l <"$WORK/users.txt") == "$USERS" ]] || die "expected $USERS tokens"
}

# Credits every bench user through the admin adjustment API (a journal entry each).
fund_users() { # amount
    local admin_token
    admin_token=$(login_token "$ADMIN") || die "admin login failed"
    export -f post_json
    export SERVER_PORT
    sql -c "SELECT id FROM users WHERE username LIKE 'bu%'" | xargs -P4 -I{} bash -c \
        "post_json '$admin_token' /api/admin/wallets/adjust '{\"user_id\":\"{}\",\"currency\":\"USD\",\"amount\":\"$1\",\"reason\":\"bench\"}' fund-{} >/dev/null" \
        || die "funding failed"
}

# pgbench's side: the same shape of transaction on mirror tables with the same columns and
# indexes: two conditional balance updates (lower id first), one entry, two postings.
pgbench_setup() {
    sql <<'SQL'
CREATE TABLE pgb_accounts (LIKE ledger_accounts INCLUDING ALL);
CREATE TABLE pgb_entries (LIKE journal_entries INCLUDING ALL);
CREATE TABLE pgb_postings (LIKE postings INCLUDING ALL,
    FOREIGN KEY (entry_id) REFERENCES pgb_entries (id),
    FOREIGN KEY (account_id) REFERENCES pgb_accounts (id));
INSERT INTO pgb_accounts (id, owner_id, kind, asset, balance, allow_negative, created_at, updated_at)
SELECT 'wallet-' || lpad(g::text, 36, '0') || '-USD', lpad(g::text, 36, '0'), 'wallet', 'USD',
       100000000000, FALSE, 0, 0
FROM generate_series(1, 1000) g;
SQL
    cat >"$WORK/transfer.sql" <<'SQL'
\set a random(1, :naccounts)
\set b random(1, :naccounts - 1)
\set b case when :b >= :a then :b + 1 else :b end
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set dlo case when :lo = :a then -100 else 100 end
\set dhi -:dlo
BEGIN;
UPDATE pgb_accounts SET balance = balance + :dlo::bigint, updated_at = 1 WHERE id = 'wallet-' || lpad(:lo::text, 36, '0') || '-USD' AND (allow_negative OR balance + :dlo::bigint >= 0);
UPDATE pgb_accounts SET balance = balance + :dhi::bigint, updated_at = 1 WHERE id = 'wallet-' || lpad(:hi::text, 36, '0') || '-USD' AND (allow_negative OR balance + :dhi::bigint >= 0);
INSERT INTO pgb_entries (id, kind, memo, created_by, created_at) VALUES (gen_random_uuid()::text, 'p2p', NULL, 'bench', 1) RETURNING id AS eid \gset
INSERT INTO pgb_postings (id, entry_id, account_id, asset, amount, created_at) VALUES (gen_random_uuid()::text, :eid::text, 'wallet-' || lpad(:lo::text, 36, '0') || '-USD', 'USD', :dlo::bigint, 1);
INSERT INTO pgb_postings (id, entry_id, account_id, asset, amount, created_at) VALUES (gen_random_uuid()::text, :eid::text, 'wallet-' || lpad(:hi::text, 36, '0') || '-USD', 'USD', :dhi::bigint, 1);
END;
SQL
}

run_pgbench() { # label naccounts -> tps
    timeout -k 5 $((DURATION + 60)) pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" \
        -D naccounts="$2" -f "$WORK/transfer.sql" "$BENCH_URL" >"$WORK/$1.pgbench" 2>&1 9>&- \
        || { cat "$WORK/$1.pgbench" >&2; die "pgbench $1 failed"; }
    awk '/^tps = / {print $3; exit}' "$WORK/$1.pgbench"
}

pgbench_latency() { awk '/^latency average/ {print $4; exit}' "$WORK/$1.pgbench"; }

run_transfers() { # label hot(0|1)
    ETX_USERS="$WORK/users.txt" ETX_HOT=$2 run_wrk "$1" transfer.lua "$CLIENTS" 2 "$DURATION"
}

# Max VmRSS (KiB) of $1 while $2.. runs; the command's own stdout goes to $WORK/peak.out.
with_peak_rss() {
    local pid=$1 peak=0 cmd_pid
    shift
    "$@" >"$WORK/peak.out" &
    cmd_pid=$!
    while kill -0 "$cmd_pid" 2>/dev/null; do
        status_kib "$pid" VmRSS
        ((REPLY > peak)) && peak=$REPLY
        nap 0.02
    done
    wait "$cmd_pid" || die "$* failed"
    echo "$peak"
}

# ---------------------------------------------------------------------------------------------

prepare_binary
fresh_database

log "starting the server on PostgreSQL"
start_server "$WORK/data" money DATABASE_URL="$BENCH_URL" \
    ETX__RATE_LIMIT__TRANSACTIONS_PER_USER_PER_MINUTE=1000000000 \
    ETX__TRANSFERS__DAILY_CAP_USD=1000000000 \
    ETX__AML__MAX_OPERATIONS_IN_WINDOW=0 \
    ETX__ADMIN__ADJUST_APPROVAL_FROM_USD=1000000000 \
    ETX__TRADING__MAX_EXPOSURE_CENTS=100000000000000 \
    ETX_BOOTSTRAP_ADMIN_USERNAME=$ADMIN ETX_BOOTSTRAP_ADMIN_EMAIL=admin@example.com \
    ETX_BOOTSTRAP_ADMIN_PASSWORD=$PASSWORD
SRV_PID=$SERVER_PID

log "registering $USERS users"
make_users
log "funding them"
fund_users 1000000.00

if [[ $SKIP_TRANSFERS != 1 ]]; then
    log "pgbench: equivalent SQL, $CLIENTS clients, ${DURATION}s, 1000 accounts then 2"
    pgbench_setup
    PGB_MANY=$(run_pgbench pgb_many 1000)
    PGB_HOT=$(run_pgbench pgb_hot 2)
    log "pgbench: $PGB_MANY tx/s (1000 accounts), $PGB_HOT tx/s (2 accounts)"

    log "transfers through the server: $CLIENTS clients, ${DURATION}s, $USERS users"
    s_t0=$(ticks_of "$SRV_PID") p_t0=$(pg_ticks)
    run_transfers p2p_many 0
    MANY_SRV_CPU=$(pct $(($(ticks_of "$SRV_PID") - s_t0)) "$DURATION")
    MANY_PG_CPU=$(pct $(($(pg_ticks) - p_t0)) "$DURATION")
    log "transfers through the server: 2 hot users"
    s_t0=$(ticks_of "$SRV_PID") p_t0=$(pg_ticks)
    run_transfers p2p_hot 1
    HOT_SRV_CPU=$(pct $(($(ticks_of "$SRV_PID") - s_t0)) "$DURATION")
    HOT_PG_CPU=$(pct $(($(pg_ticks) - p_t0)) "$DURATION")

    MOVED=$(sql -c "SELECT COUNT(*) FROM journal_entries WHERE kind = 'p2p'")
    OK_REQUESTS=$(($(field p2p_many requests) - $(field p2p_many non2xx) + $(field p2p_hot requests) - $(field p2p_hot non2xx)))

    log "market orders through the server: $CLIENTS clients, ${DURATION}s, $USERS users"
    s_t0=$(ticks_of "$SRV_PID") p_t0=$(pg_ticks)
    ETX_USERS="$WORK/users.txt" run_wrk orders_many order.lua "$CLIENTS" 2 "$DURATION"
    ORD_SRV_CPU=$(pct $(($(ticks_of "$SRV_PID") - s_t0)) "$DURATION")
    ORD_PG_CPU=$(pct $(($(pg_ticks) - p_t0)) "$DURATION")
    FILLED=$(sql -c "SELECT COUNT(*) FROM orders WHERE status = 'filled'")
    log "ledger verify"
    VERIFY=$(DATABASE_URL="$BENCH_URL" "$BIN" ledger verify 2>&1 | tail -1) || die "ledger verify failed: $VERIFY"
fi

# --- a long history -----------------------------------------------------------------------------
if [[ $SKIP_HISTORY != 1 ]]; then
log "seeding $HISTORY transactions for one user"
HIST_USER=$(sed -n 3p "$WORK/users.txt" | cut -d' ' -f2)
HIST_TOKEN=$(login_token "$HIST_USER")
# The per-user counter trigger would update one row a million times in one transaction; seed
# without it (replica role skips triggers) and count once instead.
sql <<SQL
SET session_replication_role = replica;
INSERT INTO transactions (id, user_id, type, direction, asset, amount, fee, status, counterparty_id,
                          note, entry_id, created_at)
SELECT gen_random_uuid()::text, h.id, 'p2p', CASE WHEN g % 2 = 0 THEN 'out' ELSE 'in' END, 'USD',
       100 + g % 9900, 0, 'completed', c.id, CASE WHEN g % 10 = 0 THEN 'rent, "split"' END, NULL,
       1600000000000000 + g::bigint * 1000
FROM generate_series(1, $HISTORY) g,
     (SELECT id FROM users WHERE username = '$HIST_USER') h,
     (SELECT id FROM users WHERE username = 'bu0001') c;
SET session_replication_role = origin;
BEGIN;
DELETE FROM transaction_count_deltas WHERE user_id = (SELECT id FROM users WHERE username = '$HIST_USER');
INSERT INTO transaction_counts (user_id, n)
SELECT u.id, (SELECT COUNT(*) FROM transactions t WHERE t.user_id = u.id) FROM users u WHERE u.username = '$HIST_USER'
ON CONFLICT (user_id) DO UPDATE SET n = excluded.n;
COMMIT;
VACUUM ANALYZE transactions;
SQL
HIST_TOTAL=$(sql -c "SELECT COUNT(*) FROM transactions t JOIN users u ON u.id = t.user_id WHERE u.username = '$HIST_USER'")
# The cursor of a page 90% deep: the row after which it starts.
DEEP_CURSOR=$(sql -c "SELECT t.created_at || '.' || t.id FROM transactions t JOIN users u ON u.id = t.user_id
    WHERE u.username = '$HIST_USER' ORDER BY t.created_at DESC, t.id DESC OFFSET $((HISTORY * 9 / 10)) LIMIT 1" \
    | tr -d '\n' | base64 -w0 | tr '+/' '-_' | tr -d '=')
curl -sS --fail-with-body -H "Authorization: Bearer $HIST_TOKEN" \
    "http://127.0.0.1:$SERVER_PORT/api/transactions?limit=20&cursor=$DEEP_CURSOR" | jq -e '.transactions | length == 20' >/dev/null \
    || die "deep cursor page is not a full page"

log "list: page 1 and a deep cursor page, $LIST_CONNS connections, ${DURATION}s each"
TOKEN=$HIST_TOKEN run_wrk list_warm list.lua "$LIST_CONNS" 1 3
TOKEN=$HIST_TOKEN run_wrk list_first list.lua "$LIST_CONNS" 1 "$DURATION"
TOKEN=$HIST_TOKEN ETX_CURSOR=$DEEP_CURSOR run_wrk list_deep list.lua "$LIST_CONNS" 1 "$DURATION"
TOKEN=$HIST_TOKEN run_wrk list_first_1 list.lua 1 1 "$DURATION"
TOKEN=$HIST_TOKEN ETX_CURSOR=$DEEP_CURSOR run_wrk list_deep_1 list.lua 1 1 "$DURATION"

log "export: $HIST_TOTAL rows as CSV"
export_csv() {
    curl -sS --fail --max-time 600 -H "Authorization: Bearer $HIST_TOKEN" \
        "http://127.0.0.1:$SERVER_PORT/api/transactions/export?format=csv" | wc -l
}
sleep 1
RSS_BEFORE=$(rss_kib "$SRV_PID")
t0=$EPOCHREALTIME
RSS_PEAK=$(with_peak_rss "$SRV_PID" export_csv)
t1=$EPOCHREALTIME
LINES=$(cat "$WORK/peak.out")
[[ $LINES == $((HIST_TOTAL + 1)) ]] || die "export returned $LINES lines for $HIST_TOTAL rows"
EXPORT_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
EXPORT_RPS=$(awk -v n="$HIST_TOTAL" -v s="$EXPORT_S" 'BEGIN { printf "%.0f", n / s }')
RSS_GROWTH=$((RSS_PEAK - RSS_BEFORE))
fi

# --- report -------------------------------------------------------------------------------------
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "MISSED" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
TRANSFER_ROWS=
if [[ $SKIP_TRANSFERS != 1 ]]; then
    M_RPS=$(field p2p_many rps) H_RPS=$(field p2p_hot rps)
    TRANSFER_ROWS=$(cat <<ROWS
| pgbench, equivalent SQL, $CLIENTS clients, 1000 accounts | $PGB_MANY tx/s (latency avg $(pgbench_latency pgb_many) ms) | (reference) | |
| pgbench, equivalent SQL, $CLIENTS clients, 2 accounts | $PGB_HOT tx/s (latency avg $(pgbench_latency pgb_hot) ms) | (reference) | |
| P2P transfers, $CLIENTS clients, $USERS users | $M_RPS/s, p50 $(field p2p_many p50_ms) ms, p99 $(field p2p_many p99_ms) ms; $(ratio "$M_RPS" "$PGB_MANY") × pgbench | ≥ 0.8 × pgbench | $(verdict "$(ratio "$M_RPS" "$PGB_MANY")" ">=" 0.8) |
| P2P transfers, $CLIENTS clients, 2 hot users | $H_RPS/s, p50 $(field p2p_hot p50_ms) ms, p99 $(field p2p_hot p99_ms) ms; $(ratio "$H_RPS" "$PGB_HOT") × pgbench | ≥ 0.8 × pgbench | $(verdict "$(ratio "$H_RPS" "$PGB_HOT")" ">=" 0.8) |
| market orders (buy 0.0001 BTC), $CLIENTS clients, $USERS users | $(field orders_many rps)/s, p50 $(field orders_many p50_ms) ms, p99 $(field orders_many p99_ms) ms; $(ratio "$(field orders_many rps)" "$M_RPS") × P2P transfers | ≥ 0.8 × P2P | $(verdict "$(ratio "$(field orders_many rps)" "$M_RPS")" ">=" 0.8) |
ROWS
)$'\n'
    TRANSFER_NOTES="CPU (100% = one core): transfers/many server $MANY_SRV_CPU, PostgreSQL $MANY_PG_CPU; transfers/hot server $HOT_SRV_CPU, PostgreSQL $HOT_PG_CPU; orders server $ORD_SRV_CPU, PostgreSQL $ORD_PG_CPU
orders acknowledged (2xx): $(($(field orders_many requests) - $(field orders_many non2xx))); filled orders in the database: $FILLED; non-2xx/socket errors $(field orders_many non2xx)/$(field orders_many socket_errors)
transfers acknowledged (2xx): $OK_REQUESTS; p2p journal entries in the database: $MOVED; ledger verify: $VERIFY
non-2xx / socket errors: many $(field p2p_many non2xx)/$(field p2p_many socket_errors), hot $(field p2p_hot non2xx)/$(field p2p_hot socket_errors)"
fi

if [[ $SKIP_HISTORY != 1 ]]; then
    HISTORY_ROWS=$(cat <<ROWS
| list page 1, $HIST_TOTAL-row history, $LIST_CONNS conns | $(field list_first rps) req/s, p50 $(field list_first p50_ms) ms, p99 $(field list_first p99_ms) ms | p99 ≤ 5 ms | $(verdict "$(field list_first p99_ms)" "<=" 5) |
| list page 1, 1 conn | $(field list_first_1 rps) req/s, p50 $(field list_first_1 p50_ms) ms, p99 $(field list_first_1 p99_ms) ms | p99 ≤ 5 ms | $(verdict "$(field list_first_1 p99_ms)" "<=" 5) |
| list, cursor 90 % deep, $LIST_CONNS conns | $(field list_deep rps) req/s, p50 $(field list_deep p50_ms) ms, p99 $(field list_deep p99_ms) ms | p99 ≤ 5 ms | $(verdict "$(field list_deep p99_ms)" "<=" 5) |
| list, cursor 90 % deep, 1 conn | $(field list_deep_1 rps) req/s, p50 $(field list_deep_1 p50_ms) ms, p99 $(field list_deep_1 p99_ms) ms | p99 ≤ 5 ms | $(verdict "$(field list_deep_1 p99_ms)" "<=" 5) |
| CSV export of $HIST_TOTAL rows | ${EXPORT_S} s = $EXPORT_RPS rows/s; RSS $(mib "$RSS_BEFORE") → peak $(mib "$RSS_PEAK") (+$(mib "$RSS_GROWTH")) | ≥ 200,000 rows/s, growth ≤ 30 MB | $(verdict "$EXPORT_RPS" ">=" 200000) / $(verdict "$RSS_GROWTH" "<=" 29297) |
ROWS
)$'\n'
fi

cat <<REPORT

ETX money benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))
binary: $BIN_SRC (rev $GIT_REV); PostgreSQL $(sql -c "SHOW server_version"), synchronous_commit=$(sql -c "SHOW synchronous_commit")
overrides: ${PASS_ENV[*]:-none} (plus throttles and the daily cap raised)
load average before start: $LOAD0; concurrent builds: $NOISE

| scenario | measured | target | |
|---|---|---|---|
${TRANSFER_ROWS}${HISTORY_ROWS:-}
${TRANSFER_NOTES:-}
$([[ $SKIP_HISTORY == 1 ]] || echo "non-2xx list: $(field list_first non2xx)/$(field list_deep non2xx)")
REPORT
