#!/usr/bin/env bash
# Line coverage of the named workspace packages (default: etx-domain), measured with
# cargo-llvm-cov and reported for their own src/ only: code of other crates is not counted.
# Which tests run under instrumentation is COVERAGE_TESTS (default: the reported packages);
# naming etx-server adds the HTTP integration suite, which drives etx-core end to end.
#
#   scripts/coverage.sh                       # etx-domain, by its own tests
#   scripts/coverage.sh etx-domain etx-core   # several packages, one figure
#   COVERAGE_TESTS="etx-domain etx-core etx-server" scripts/coverage.sh etx-domain etx-core
#                                             # domain + core, counting the server suite too
#
# The tests run on SQLite (TEST_DATABASE_URL is unset). When COVERAGE_TESTS names etx-server,
# the services its suite needs are started or installed first, as scripts/test.sh does
# (scripts/services.sh: Redis, moto's S3 server, oathtool, aiosmtpd, python-socketio).
# Installs what is missing: the llvm-tools component matching rustc's LLVM (rustup; if rustup
# cannot fetch it, Debian's llvm-N of the same major version) and cargo-llvm-cov (crates.io).
# Prints the per-file table with the uncovered line numbers, then one line:
#   line coverage (etx-domain): 88.75% (292/329 lines)
# Failing tests: every test runs (--no-fail-fast), the report is printed from what ran, and the
# tests that failed are listed after the figure. Instrumented builds are slower, so a test with a
# wall-clock bound can fail here that passes in scripts/test.sh; the run still exits 1 then,
# because the figure was measured on a suite that did not pass. Exit status: 0 when every test
# passed and the figure is not below COVERAGE_FAIL_UNDER, 1 otherwise.
# Environment: CARGO_TARGET_DIR as usual (instrumented builds go to its llvm-cov-target/);
# COVERAGE_TESTS as above; COVERAGE_FAIL_UNDER=N exits 1 below N % of lines; COVERAGE_JOBS
# (default 2) build jobs; COVERAGE_LLVM=debian uses Debian's llvm-N even where the rustup
# component could be had.
set -euo pipefail

CARGO_LLVM_COV_VERSION=0.9.1
cd "$(dirname "$0")/.."

packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(etx-domain)
read -r -a test_packages <<<"${COVERAGE_TESTS:-${packages[*]}}"
[ ${#test_packages[@]} -gt 0 ] || test_packages=("${packages[@]}")

# --- tools -------------------------------------------------------------------------------------
host=$(rustc -vV | sed -n 's/^host: //p')
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
tool_bin="$(rustc --print sysroot)/lib/rustlib/$host/bin"
have_rustup_tools() { [ -x "$tool_bin/llvm-profdata" ] && [ -x "$tool_bin/llvm-cov" ]; }
if [ "${COVERAGE_LLVM:-}" != debian ] && ! have_rustup_tools; then
    echo "coverage: installing the llvm-tools component (LLVM $llvm_major)" >&2
    timeout 300 rustup component add llvm-tools >&2 || true
fi
if [ "${COVERAGE_LLVM:-}" = debian ] || ! have_rustup_tools; then
    # No rustup component: Debian's build of the same LLVM major reads rustc's profiles.
    deb_bin="/usr/lib/llvm-$llvm_major/bin"
    if [ ! -x "$deb_bin/llvm-profdata" ]; then
        echo "coverage: installing Debian's llvm-$llvm_major" >&2
        if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
        $sudo apt-get install -y --no-install-recommends "llvm-$llvm_major" >&2 || {
            $sudo apt-get update >&2
            $sudo apt-get install -y --no-install-recommends "llvm-$llvm_major" >&2
        }
    fi
    export LLVM_COV="$deb_bin/llvm-cov" LLVM_PROFDATA="$deb_bin/llvm-profdata"
fi
if ! cargo llvm-cov --version >/dev/null 2>&1; then
    echo "coverage: installing cargo-llvm-cov $CARGO_LLVM_COV_VERSION (builds from source, ~2 min)" >&2
    cargo install cargo-llvm-cov --version "$CARGO_LLVM_COV_VERSION" --locked >&2
fi

# --- which files count ---------------------------------------------------------------------------
# Ignore every workspace member not asked for, and everything of the asked-for ones outside src/,
# and the unit-test files inside src/ (`src/**/tests.rs`, `src/**/tests/`): test code is not
# what is measured. (Inline `#[cfg(test)] mod tests { … }` blocks cannot be told apart by file
# and are counted with their module.)
ignore=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, os, re, sys
sep = sys.argv.index("--")
wanted, tested = set(sys.argv[1:sep]), set(sys.argv[sep + 1:])
meta = json.load(sys.stdin)
names = {p["name"] for p in meta["packages"]}
missing = (wanted | tested) - names
if missing:
    sys.exit("coverage: no such workspace package: " + ", ".join(sorted(missing)))
parts = []
for p in meta["packages"]:
    d = re.escape(os.path.dirname(p["manifest_path"]))
    if p["name"] in wanted:
        parts.append(d + "/(tests|benches|examples|build\\.rs)")
        parts.append(d + "/src/(.*/)?tests(\\.rs|/)")
    else:
        parts.append(d + "/")
print("^(" + "|".join(parts) + ")")
' "${packages[@]}" -- "${test_packages[@]}")
# (the test packages are checked too: a misspelt name fails here, not after a long build)

pkg_args=()
for p in "${test_packages[@]}"; do pkg_args+=(-p "$p"); done

# --- services ----------------------------------------------------------------------------------
if [[ " ${test_packages[*]} " == *" etx-server "* ]]; then
    # shellcheck source=scripts/services.sh
    source scripts/services.sh
    export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
    ensure_redis
    ensure_moto
    ensure_oathtool
    ensure_aiosmtpd
    ensure_socketio_client
fi

# --- run ---------------------------------------------------------------------------------------
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo llvm-cov clean --workspace >/dev/null 2>&1 || true
echo "coverage: running the tests of ${test_packages[*]} (SQLite)" >&2
status=0
env -u TEST_DATABASE_URL cargo llvm-cov --no-report --no-fail-fast -j "${COVERAGE_JOBS:-2}" \
    "${pkg_args[@]}" 2>&1 | tee "$log" || status=$?
failed=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$log" | sort -u)

echo
cargo llvm-cov report --summary-only --show-missing-lines --ignore-filename-regex "$ignore"

cargo llvm-cov report --json --summary-only --ignore-filename-regex "$ignore" |
    python3 -c '
import json, sys
label, fail_under = sys.argv[1], sys.argv[2]
lines = json.load(sys.stdin)["data"][0]["totals"]["lines"]
covered, count = lines["covered"], lines["count"]
pct = 100.0 * covered / count if count else 100.0
print(f"\nline coverage ({label}): {pct:.2f}% ({covered}/{count} lines)")
if fail_under and pct < float(fail_under):
    sys.exit(f"coverage: below COVERAGE_FAIL_UNDER={fail_under}%")
' "$(IFS=,; echo "${packages[*]}")${COVERAGE_TESTS:+, tests of ${test_packages[*]}}" \
    "${COVERAGE_FAIL_UNDER:-}" || status=1

if [ -n "$failed" ]; then
    echo "coverage: tests that failed under instrumentation (the figure includes what they ran):" >&2
    printf '  %s\n' $failed >&2
    status=1
elif [ "$status" -ne 0 ]; then
    echo "coverage: the test run failed (see above); the figure may be incomplete" >&2
fi
exit "$status"
