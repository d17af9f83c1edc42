#!/usr/bin/env bash
# Checks the OpenAPI document against a generated Python client: starts the given server
# binary in dev mode (SQLite, temporary data dir, free loopback port, no config file or
# environment of the caller), downloads /api/openapi.json, generates a client from it with
# openapi-python-client and runs scripts/openapi_client_test.py through that client
# (register → verify → login → deposit → P2P transfer → history → export). Builds nothing.
#
#   scripts/openapi-client.sh target/debug/etx
#
# Environment: OPENAPI_PYTHON_CLIENT_VERSION (default 0.29.1; installed with pip when
# missing), KEEP=1 keeps the temporary directory (document, client, data dir, server log).
set -euo pipefail

bin=${1:?usage: scripts/openapi-client.sh PATH/TO/etx}
bin=$(realpath "$bin")
[ -x "$bin" ] || { echo "openapi-client: $bin is not an executable" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
version=${OPENAPI_PYTHON_CLIENT_VERSION:-0.29.1}

if ! command -v openapi-python-client >/dev/null ||
    [ "$(openapi-python-client --version | awk '{print $NF}')" != "$version" ]; then
    echo "openapi-client: installing openapi-python-client $version" >&2
    python3 -m pip install --quiet "openapi-python-client==$version" >&2
fi
# What the generated package imports (httpx comes with the generator).
python3 -c 'import httpx, attrs, dateutil' 2>/dev/null ||
    python3 -m pip install --quiet attrs python-dateutil >&2

tmp=$(mktemp -d /tmp/etx-openapi-client.XXXXXX)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    if [ "${KEEP:-}" = 1 ]; then echo "openapi-client: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# A free port below the ephemeral range (a TIME-WAIT socket there can hold a port).
port=$(python3 - <<'EOF'
import random, socket
ports = list(range(18000, 19000))
random.shuffle(ports)
for p in ports:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        print(p)
        break
else:
    raise SystemExit("no free port in 18000-18999")
EOF
)
base="http://127.0.0.1:$port"

# Embedded defaults only: empty environment, no etx.toml in the working directory.
(cd "$tmp" && exec env -i PATH="$PATH" HOME="$tmp" RUST_LOG=warn \
    ETX_ENV=dev ETX_BIND="127.0.0.1:$port" ETX_DATA_DIR="$tmp/data" \
    "$bin" serve >"$tmp/server.log" 2>&1) &
server=$!

python3 - "$base" "$tmp/openapi.json" <<'EOF'
import sys, time, urllib.request
base, out = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(base + "/api/openapi.json", timeout=5) as r:
            open(out, "wb").write(r.read())
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("openapi-client: the server did not answer within 60 s")
        time.sleep(0.2)
EOF
kill -0 "$server" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }

(cd "$tmp" && openapi-python-client generate --path openapi.json --output-path client >"$tmp/generate.log" 2>&1) || {
    cat "$tmp/generate.log" >&2
    exit 1
}
grep '^WARNING' "$tmp/generate.log" >&2 || true

status=0
python3 "$here/openapi_client_test.py" --base-url "$base" --data-dir "$tmp/data" \
    --client-dir "$tmp/client" || status=$?
if [ "$status" != 0 ]; then
    echo "--- server log (last 40 lines)" >&2
    tail -n 40 "$tmp/server.log" >&2
fi
exit "$status"
