#!/usr/bin/env bash
# Line coverage of the named workspace packages (default: etx-domain), measured with
# cargo-llvm-cov on their own tests (`cargo test -p PKG …` under instrumentation) and reported
# for their own src/ only: code of other crates that the tests happen to run is not counted.
#
#   scripts/coverage.sh                       # etx-domain
#   scripts/coverage.sh etx-domain etx-core   # several packages, one figure
#
# Installs what is missing: the llvm-tools component matching rustc's LLVM (rustup; if rustup
# cannot fetch it, Debian's llvm-N of the same major version) and cargo-llvm-cov (crates.io).
# Prints the per-file table with the uncovered line numbers, then one line:
#   line coverage (etx-domain): 88.75% (292/329 lines)
# Environment: CARGO_TARGET_DIR as usual (instrumented builds go to its llvm-cov-target/);
# COVERAGE_FAIL_UNDER=N exits 1 below N % of lines; COVERAGE_JOBS (default 2) build jobs;
# COVERAGE_LLVM=debian uses Debian's llvm-N even where the rustup component could be had.
set -euo pipefail

CARGO_LLVM_COV_VERSION=0.9.1
cd "$(dirname "$0")/.."

packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(etx-domain)

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
# Ignore every workspace member not asked for, and everything of the asked-for ones outside src/.
ignore=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, os, re, sys
wanted = set(sys.argv[1:])
meta = json.load(sys.stdin)
names = {p["name"] for p in meta["packages"]}
missing = wanted - names
if missing:
    sys.exit("coverage: no such workspace package: " + ", ".join(sorted(missing)))
parts = []
for p in meta["packages"]:
    d = re.escape(os.path.dirname(p["manifest_path"]))
    if p["name"] in wanted:
        parts.append(d + "/(tests|benches|examples|build\\.rs)")
    else:
        parts.append(d + "/")
print("^(" + "|".join(parts) + ")")
' "${packages[@]}")

pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done

# --- run ---------------------------------------------------------------------------------------
cargo llvm-cov clean --workspace >/dev/null 2>&1 || true
cargo llvm-cov --no-report -j "${COVERAGE_JOBS:-2}" "${pkg_args[@]}"

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
' "$(IFS=,; echo "${packages[*]}")" "${COVERAGE_FAIL_UNDER:-}"
