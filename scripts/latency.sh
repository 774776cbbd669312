#!/usr/bin/env bash
# Issue #5 latency target, Culex and Mosquitto side by side in one run:
# 100 publisher/subscriber pairs, QoS 0, 64 B, 20,000 msg/s in total (open loop), broker
# pinned to one core, loadgen to the other. Prints p50/p99/p99.9/max and broker CPU per
# message for each broker. Target: p99 <= 300 us, p99.9 <= 1 ms.
#
#   scripts/latency.sh [ROUNDS]      (CULEX, LOADGEN, MOSQUITTO override the binaries;
#                                     BROKER_CPU / LOAD_CPU the cores; DURATION seconds;
#                                     SPIN_US="0 50" runs Culex once per `spin_us` value;
#                                     FLOOR=1 also runs culex-floor, the do-nothing relay
#                                     whose tail is this machine's, not a broker's)
#
# NICE=1 runs broker and loadgen at nice -20: on a machine shared with compilers an ordinary
# thread waits for its core for milliseconds, and that wait, not the broker, becomes the
# tail. Both brokers get the same treatment. (SCHED_FIFO is worse: the kernel throttles
# real-time threads for 50 ms of every second once they use 95 % of a core.)
set -euo pipefail
ROUNDS=${1:-1}
TARGET=${CARGO_TARGET_DIR:-target}
CULEX=${CULEX:-$TARGET/release/culex}
LOADGEN=${LOADGEN:-$TARGET/release/culex-loadgen}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
FLOOR_BIN=${FLOOR_BIN:-$TARGET/release/culex-floor}
FLOOR=${FLOOR:-0}
BROKER_CPU=${BROKER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
DURATION=${DURATION:-10}
PAIRS=${PAIRS:-100}
RATE=${RATE:-20000}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
NICE=${NICE:-0}
# The loadgen polls this long before sleeping (--spin-us): see loadgen/README.md.
LOAD_SPIN_US=${LOAD_SPIN_US:-1000}
# Culex's own `spin_us` values to compare (empty: its default).
SPIN_US=${SPIN_US:-}
prio=()
[[ $NICE == 1 ]] && prio=(nice -n -20)
# shellcheck source=scripts/lib-broker.sh
source "$(dirname "$0")/lib-broker.sh"

cat >"$work/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
log_dest none
max_connections -1
set_tcp_nodelay true
CONF

run() { # name, command...
    local name=$1
    shift
    "${prio[@]}" taskset -c "$BROKER_CPU" "$@" >"$work/$name.log" 2>&1 &
    broker=$!
    wait_port "$PORT"
    "${prio[@]}" taskset -c "$LOAD_CPU" "$LOADGEN" pairs -n "$PAIRS" --total-rate "$RATE" --payload 64 \
        -q 0 --cpus "$LOAD_CPU" -p "$PORT" --spin-us "$LOAD_SPIN_US" -d "$DURATION" --warmup 2 --quiet \
        --broker-pid "$broker" --json "$work/$name.json" >"$work/$name.out" 2>&1 &
    local load=$!
    # The broker's syscalls and context switches over 3 s of the measured window: what each
    # message costs in wake-ups, which timing on a shared machine cannot show.
    : >"$work/$name.perf"
    if command -v perf >/dev/null && ((DURATION >= 4)); then
        sleep 3
        perf stat -x, -e context-switches,raw_syscalls:sys_enter -p "$broker" -- sleep 3 \
            2>"$work/$name.perf" >/dev/null || true
    fi
    wait "$load" || true
    kill "$broker"
    wait "$broker" 2>/dev/null || true
    broker=
    python3 - "$name" "$work/$name.json" "$work/$name.perf" <<'PY'
import json, sys
name, path, perf = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    j = json.load(open(path))
except Exception as e:
    print(f"  {name:10} no result ({e})")
    sys.exit(0)
lat, unc, cpu, w = j["latency_ns"], j["latency_uncorrected_ns"], j["cpu"], j["window"]
us = lambda v: f"{v / 1000:8.0f}"
b = cpu.get("broker_us_per_delivered_msg")
l = cpu.get("loadgen_us_per_msg")
print(f"  {name:10} p50 {us(lat['p50'])} p99 {us(lat['p99'])} p99.9 {us(lat['p99.9'])} "
      f"max {us(lat['max'])} us | uncorrected p99 {us(unc['p99'])} p99.9 {us(unc['p99.9'])} | "
      f"{w['received_per_s']:7.0f} msg/s, lost {j['messages']['lost']}, broker "
      f"{b if b is None else round(b, 2)} us/msg, loadgen {l if l is None else round(l, 2)} us/msg")
counts = {}
for line in open(perf):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        counts[f[2]] = float(f[0])
msgs = 3 * w["received_per_s"]
if counts and msgs:
    print(f"  {'':10} broker per message: "
          f"{counts.get('raw_syscalls:sys_enter', 0) / msgs:.2f} syscalls, "
          f"{counts.get('context-switches', 0) / msgs:.2f} context switches (perf stat, 3 s)")
PY
}

for round in $(seq "$ROUNDS"); do
    echo "round $round (pairs $PAIRS, $RATE msg/s, broker on CPU $BROKER_CPU, loadgen on $LOAD_CPU, NICE=$NICE)"
    if [[ -z $SPIN_US ]]; then
        run culex "$CULEX" --shards 1 --cpus "$BROKER_CPU" -p "$PORT"
    fi
    for spin in $SPIN_US; do
        printf 'listener %s 127.0.0.1\nallow_anonymous true\nspin_us %s\n' "$PORT" "$spin" \
            >"$work/culex-spin$spin.conf"
        run "culex-s$spin" "$CULEX" --shards 1 --cpus "$BROKER_CPU" -c "$work/culex-spin$spin.conf"
    done
    run mosquitto "$MOSQUITTO" -c "$work/mosquitto.conf"
    if [[ $FLOOR == 1 ]]; then
        run floor "$FLOOR_BIN" -p "$PORT"
    fi
done
