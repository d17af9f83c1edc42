#!/usr/bin/env bash
# Installs the browser the end-to-end test drives (crate `etx-e2e`): Debian's Chromium and the
# matching chromedriver (plus a common font family so screenshots look like a real desktop).
# Does nothing when both are already present, so CI can call it each run.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    SUDO="sudo"
  else
    echo "ERROR: installing chromium needs root (or sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  chromium chromium-driver fonts-liberation

for bin in "$CHROMIUM" "$CHROMEDRIVER"; do
  if [ ! -x "$bin" ]; then
    echo "ERROR: $bin is still missing after installing chromium and chromium-driver" >&2
    exit 1
  fi
done
"$CHROMIUM" --version
"$CHROMEDRIVER" --version
