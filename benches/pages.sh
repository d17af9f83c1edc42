#!/usr/bin/env bash
# Page benchmark on PostgreSQL: for every signed-in page, what a first visit transfers (the
# page, its stylesheet, script, icon and manifest; nothing cached) and the server's time to
# first byte at 16 connections, p50 and p99, next to GET /api/auth/me on the same connections
# as the reference. A user with a funded wallet and some history is made first, so pages show
# real rows. Loopback only; every process started here is stopped on exit.
#
#   benches/pages.sh
#   SKIP_BUILD=1 DURATION=5 benches/pages.sh
#
# Tunables (environment):
#   DURATION=5         seconds of load per page
#   CONNS=16           wrk connections (one thread)
#   PG_ADMIN_URL, BENCH_DB, KEEP_DB, KEEP_WORK, SKIP_BUILD, QUIET_WAIT: as in run.sh

set -euo pipefail

DURATION=${DURATION:-5}
CONNS=${CONNS:-16}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PASSWORD=Bench-Pass-2718
ADMIN=benchadmin
USER_PAGES=(/ /markets /markets/BTC /trade /portfolio /alerts /wallet /deposit /withdraw
    /transactions /files /jobs /etx /profile /security /profile/sessions /notifications /leaderboard)
STAFF_PAGES=(/admin/users /admin/stats /admin/withdrawals /admin/aml /admin/trading
    /admin/audit /admin/mail)
ASSETS=(/static/app.css /static/app.js /static/favicon.svg /manifest.webmanifest)

post_json() { # token path json [idempotency-key] -> body; fails on non-2xx
    local args=(-sS --fail-with-body --max-time 30 -X POST -H 'Content-Type: application/json' -d "$3")
    [[ -n $1 ]] && args+=(-H "Authorization: Bearer $1")
    [[ $# -ge 4 ]] && args+=(-H "Idempotency-Key: $4")
    curl "${args[@]}" "http://127.0.0.1:$SERVER_PORT$2"
}

# Signs in through the API and prints the session cookies as one Cookie header value.
cookies_of() { # login
    local jar="$WORK/$1.jar"
    curl -sS --fail-with-body --max-time 30 -c "$jar" -o /dev/null -H 'Content-Type: application/json' \
        -d "{\"login\":\"$1\",\"password\":\"$PASSWORD\"}" "http://127.0.0.1:$SERVER_PORT/api/auth/login" \
        || die "login of $1 failed"
    awk '!/^#/ || /^#HttpOnly_/ { if (NF >= 7) printf "%s%s=%s", (n++ ? "; " : ""), $6, $7 }' "$jar"
}

bytes() { # cookie path -> bytes of the body
    curl -sS --max-time 30 -o /dev/null -w '%{size_download}' -H "Cookie: $1" "http://127.0.0.1:$SERVER_PORT$2"
}

prepare_binary
fresh_database
start_server "$WORK/data" pages DATABASE_URL="$BENCH_URL" \
    ETX__ADMIN__ADJUST_APPROVAL_FROM_USD=1000000000 \
    ETX__RATE_LIMIT__TRANSACTIONS_PER_USER_PER_MINUTE=100000000 \
    ETX_BOOTSTRAP_ADMIN_USERNAME=$ADMIN ETX_BOOTSTRAP_ADMIN_EMAIL=admin@example.com \
    ETX_BOOTSTRAP_ADMIN_PASSWORD=$PASSWORD
log "server on port $SERVER_PORT (PostgreSQL)"

# A user with money and a history: funded, 40 transfers out to a friend.
for u in pageuser friend; do
    post_json "" /api/auth/register "{\"username\":\"$u\",\"email\":\"$u@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null \
        || die "registration of $u failed"
done
psql "$BENCH_URL" -qAtc "UPDATE users SET is_verified = TRUE" >/dev/null
admin_token=$(post_json "" /api/auth/login "{\"login\":\"$ADMIN\",\"password\":\"$PASSWORD\"}" | jq -er .access_token)
user_id=$(psql "$BENCH_URL" -qAtc "SELECT id FROM users WHERE username = 'pageuser'")
for a in USD:25000.00 BTC:0.50000000 ETH:3.00000000; do
    post_json "$admin_token" /api/admin/wallets/adjust \
        "{\"user_id\":\"$user_id\",\"currency\":\"${a%%:*}\",\"amount\":\"${a#*:}\",\"reason\":\"bench\"}" "fund-${a%%:*}" >/dev/null \
        || die "funding failed"
done
user_token=$(post_json "" /api/auth/login "{\"login\":\"pageuser\",\"password\":\"$PASSWORD\"}" | jq -er .access_token)
for i in $(seq 1 40); do
    post_json "$user_token" /api/transfers/p2p "{\"recipient\":\"friend\",\"amount\":\"$i.25\",\"currency\":\"USD\",\"note\":\"bench $i\"}" "p2p-$i" >/dev/null \
        || die "transfer $i failed"
done

USER_COOKIE=$(cookies_of pageuser)
STAFF_COOKIE=$(cookies_of "$ADMIN")
TOKEN=$user_token
ASSET_BYTES=0
for a in "${ASSETS[@]}"; do ASSET_BYTES=$((ASSET_BYTES + $(bytes "$USER_COOKIE" "$a"))); done

run_page() { # label cookie path
    ETX_LABEL=$1 ETX_COOKIE=$2 ETX_PATH=$3 \
        timeout -k 5 $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
        -s "$BENCH_DIR/page.lua" "http://127.0.0.1:$SERVER_PORT" >"$WORK/$1.wrk" 2>&1 9>&- || true
}

log "warm-up and reference: GET /api/auth/me at $CONNS connections"
run_wrk warmup me.lua "$CONNS" 1 2
run_wrk me me.lua "$CONNS" 1 "$DURATION"
REF_P99=$(field me p99_ms)

ROWS=()
n=0
measure() { # cookie path...
    local cookie=$1 path status html total p50 p99 label
    shift
    for path in "$@"; do
        n=$((n + 1))
        label="page$n"
        status=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://127.0.0.1:$SERVER_PORT$path")
        [[ $status == 200 ]] || die "GET $path answered $status"
        html=$(bytes "$cookie" "$path")
        total=$((html + ASSET_BYTES))
        run_page "$label" "$cookie" "$path"
        [[ $(field "$label" non2xx) == 0 ]] || die "GET $path failed under load"
        p50=$(field "$label" p50_ms)
        p99=$(field "$label" p99_ms)
        ROWS+=("$(printf '| `%s` | %s | %s | %s | %s | %s | %.2f |' "$path" "$(field "$label" rps)" \
            "$html" "$total" "$p50" "$p99" "$(awk -v a="$p99" -v b="$REF_P99" 'BEGIN { print a / b }')")")
        log "$path: $total bytes, p99 ${p99} ms"
    done
}
measure "$USER_COOKIE" "${USER_PAGES[@]}"
measure "$STAFF_COOKIE" "${STAFF_PAGES[@]}"

echo
echo "## Pages: bytes on first load and time to first byte at $CONNS connections (PostgreSQL)"
echo
echo "rev $GIT_REV; load average at start $LOAD0; other load: $NOISE"
echo "Reference GET /api/auth/me at $CONNS connections: $(field me rps) req/s, p50 $(field me p50_ms) ms, p99 $REF_P99 ms."
echo "First load = the page + ${ASSET_BYTES} bytes of stylesheet, script, icon and manifest (uncompressed)."
echo
echo "| Page | req/s | HTML bytes | first load bytes | p50 ms | p99 ms | p99 / reference |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
