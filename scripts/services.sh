# Sourced by scripts/test.sh and scripts/coverage.sh: the ensure_* functions that start or install
# what the integration tests need (PostgreSQL, Redis, moto's S3 server, oathtool, aiosmtpd,
# python-socketio). Each returns at once when the service is up or the tool is present, and
# exits the calling script with an error when it cannot be provided.

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return; fi
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && return
    sleep 1
  done
  echo "ERROR: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
  exit 1
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  if command -v redis-server >/dev/null; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  for _ in $(seq 1 30); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return
    sleep 1
  done
  echo "ERROR: Redis is not reachable on 127.0.0.1:6379" >&2
  exit 1
}

ensure_moto() {
  command -v moto_server >/dev/null && return
  echo "installing moto's S3 server (PyPI)"
  python3 -m pip install --quiet 'moto[server]'
  if command -v pyenv >/dev/null; then pyenv rehash; fi
  command -v moto_server >/dev/null || { echo "ERROR: moto_server not on PATH after install" >&2; exit 1; }
}

# oathtool (Debian) computes the 2FA codes in the tests; aiosmtpd (PyPI) is the SMTP server
# the mail tests send to.
ensure_oathtool() {
  command -v oathtool >/dev/null && return
  echo "installing oathtool (Debian)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends oathtool
  command -v oathtool >/dev/null || { echo "ERROR: oathtool not on PATH after install" >&2; exit 1; }
}

ensure_aiosmtpd() {
  python3 -c "import aiosmtpd" 2>/dev/null && return
  echo "installing aiosmtpd (PyPI)"
  python3 -m pip install --quiet aiosmtpd
  python3 -c "import aiosmtpd" || { echo "ERROR: aiosmtpd cannot be imported after install" >&2; exit 1; }
}

# The Socket.IO tests drive a stock client: python-socketio (PyPI).
ensure_socketio_client() {
  python3 -c "import socketio, websocket" 2>/dev/null && return
  echo "installing python-socketio[client] (PyPI)"
  python3 -m pip install --quiet "python-socketio[client]"
  python3 -c "import socketio, websocket" || { echo "ERROR: python-socketio cannot be imported after install" >&2; exit 1; }
}

# Debian's nginx balances the local cluster (scripts/cluster.sh) the scale-out tests run on.
# Only the binary is used: the package's own site is not started.
ensure_nginx() {
  { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } && return
  echo "installing nginx (Debian)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
  # The package starts its default site on port 80 where it can; nothing here needs it.
  $sudo service nginx stop >/dev/null 2>&1 || $sudo pkill -x nginx 2>/dev/null || true
  { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || { echo "ERROR: nginx not installed" >&2; exit 1; }
}
