#!/usr/bin/env bash
# Runs the codec's fuzz target `decode` (fuzz/fuzz_targets/decode.rs) for SECONDS seconds
# (default 60) and fails if libFuzzer finds a crash; its reproducer lands in
# fuzz/artifacts/decode/. Installs cargo-fuzz if it is missing.
#
# This machine has the stable toolchain only. cargo-fuzz passes nightly flags
# (-Zsanitizer=address, -Cpasses=sancov-module, ...): RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them. The sanitizer runtimes ship with x86_64-unknown-linux-gnu's std.
#
# Usage: scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]
set -euo pipefail

seconds="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1

# The working corpus grows as libFuzzer finds new paths; the committed seeds are captured
# packets from real clients and brokers (see tests/codec_fixtures.rs), read but never written.
mkdir -p "$root/fuzz/corpus/decode"
cd "$root/fuzz"
exec cargo fuzz run decode \
    --target-dir "$target_dir" \
    "$root/fuzz/corpus/decode" "$root/fuzz/seeds/decode" \
    -- -max_total_time="$seconds" -max_len=4096 -timeout=10 "$@"
