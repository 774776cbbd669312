#!/usr/bin/env bash
# Instructions per message of Culex's hot path, by function, under a saturating load:
# the broker (1 shard, CPU 1) runs under callgrind with instrumentation off; the loadgen
# (CPU 0, unpaced, so reads batch as they do at full speed) runs 100 QoS 1 pairs; after the
# connects, 6 s of the steady phase are recorded. The message count is the number of calls
# to `route_inbound` (one per PUBLISH received), so the figures need no timing at all.
# `scripts/profile.sh` paces the load instead, which at callgrind's speed leaves one message
# per read: fine for comparing commits, not for the per-read costs a busy broker amortizes.
#
# usage: scripts/callgrind-steady.sh OUT_DIR [PORT]   (release binaries of CARGO_TARGET_DIR)
# then:  callgrind_annotate --inclusive=yes OUT_DIR/callgrind.out.1
set -euo pipefail
out="${1:?usage: $0 OUT_DIR [PORT]}"
port="${2:-28831}"
bin="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release"
for tool in valgrind callgrind_control callgrind_annotate taskset; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$out"
rm -f "$out"/callgrind.out*
taskset -c 1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$out/callgrind.out" \
    "$bin/culex" --shards 1 --cpus 1 -p "$port" >"$out/broker.log" 2>&1 &
broker=$!
sleep 6
taskset -c 0 "$bin/culex-loadgen" pairs -p "$port" -n 100 -q 1 --max-inflight 10 \
    --payload 64 --warmup 3 -d 10 --drain 2 --cpus 0 --quiet --json "$out/loadgen.json" \
    >"$out/loadgen.log" 2>&1 &
loadgen=$!
sleep 6
callgrind_control -i on "$broker" >/dev/null 2>&1
sleep 6
callgrind_control -d "$broker" >/dev/null 2>&1
callgrind_control -i off "$broker" >/dev/null 2>&1
wait "$loadgen" || true
# Under valgrind the broker does not act on SIGTERM; the dump above is all we need.
kill -KILL "$broker"
wait "$broker" 2>/dev/null || true
# Annotated from outside the source tree: run inside it, callgrind_annotate merges and
# splits functions by the source files it finds, and the per-function totals change.
out="$(cd "$out" && pwd)"
cd /
# `route_inbound` may be inlined into `on_publish` (also one call per PUBLISH): the first
# of the two found as a function of its own.
calls() {
    callgrind_annotate --inclusive=yes --tree=caller "$out/callgrind.out.1" 2>/dev/null |
        grep -B1 "\\*  .*::$1 \\[" | head -1 | grep -o '([0-9,]*x)' | tr -d '(),x' || true
}
messages=$(calls route_inbound)
[ -n "$messages" ] || messages=$(calls on_publish)
echo "messages in the window: $messages"
# Inclusive instructions per message; a function appears once per source file its inlined
# code came from, the line with `[binary]` being the function's own total.
callgrind_annotate --inclusive=yes "$out/callgrind.out.1" 2>/dev/null |
    grep -E 'PROGRAM TOTALS|::(received|handle|on_publish|on_puback|on_session_puback|route_inbound|publish_message|deliver_to|deliver|write_delivery|encode_with|insert_get|walk|take_outgoing) \[' |
    awk -v n="$messages" '{v=$1; gsub(",","",v); sub(/^[^%]*%\) +/,""); printf "%8.1f  %s\n", v/n, $0}' |
    sed -E 's#/[^ ]*/src/#src/#; s# \[[^]]*\]$##'
