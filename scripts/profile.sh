#!/usr/bin/env bash
# Profiles one broker under one scenario of bench-harness/scenarios:
#   1. `perf stat` attached to the broker while culex-loadgen runs the scenario (--quick
#      durations): task clock, context switches, CPU migrations, syscalls, and cycles and
#      instructions where the machine has a PMU (a VM usually reports them "not supported").
#   2. `valgrind --tool=callgrind` running the broker under the same scenario paced at a fixed
#      rate and at twice it: the difference is the instructions per message, stable on a noisy
#      machine, so compare it across commits for hot-path changes.
# Output: results/profiles/<date>-<commit>-<scenario>-<broker>/profile.json (+ raw files).
#
# usage: scripts/profile.sh SCENARIO [BROKER] [extra culex-bench profile flags]
#   e.g. scripts/profile.sh pairs-qos0            # culex with one shard
#        scripts/profile.sh pairs-qos0 mosquitto  # the reference, same method
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
scenario="$1"; shift
broker="${1:-culex-1}"; [ $# -gt 0 ] && shift
cd "$(dirname "$0")/.."
for tool in perf valgrind taskset; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is not installed" >&2; exit 1; }
done
exec cargo run -q -p culex-bench -- profile "$scenario" --broker "$broker" "$@"
