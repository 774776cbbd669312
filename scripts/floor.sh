#!/usr/bin/env bash
# The floor under issue #5's throughput rows: culex-floor (a do-nothing MQTT relay: one
# thread, one epoll, no sessions, no checks; bench-harness/src/bin/culex-floor.rs), Culex
# (1 shard) and Mosquitto, alternating in one run, the broker pinned to BROKER_CPU and the
# loadgen to LOAD_CPU. The floor's CPU per message is the kernel's and the VM's share that no
# broker can avoid for this traffic; a target below it is out of reach on this machine.
# The other rows: `BROKERS="floor culex mosquitto" scripts/idle-cost.sh` (connect CPU) and
# `FLOOR=1 scripts/latency.sh` (the 20k msg/s tail).
#
#   scripts/floor.sh [ROUNDS]     env: CULEX, LOADGEN, FLOOR_BIN, MOSQUITTO, SCENARIOS, DURATION
set -euo pipefail
ROUNDS=${1:-1}
TARGET=${CARGO_TARGET_DIR:-target}
CULEX=${CULEX:-$TARGET/release/culex}
LOADGEN=${LOADGEN:-$TARGET/release/culex-loadgen}
FLOOR_BIN=${FLOOR_BIN:-$TARGET/release/culex-floor}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BROKER_CPU=${BROKER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"pairs-qos0 fan-in fan-out pairs-qos1"}
# shellcheck source=scripts/lib-broker.sh
source "$(dirname "$0")/lib-broker.sh"

# The loadgen arguments of bench-harness/scenarios/ (64-B payloads, 1 s warm-up).
load_args() {
    case $1 in
        pairs-qos0) echo "pairs -n 500 -q 0" ;;
        fan-in) echo "fan-in -P 50 -S 1 -q 0" ;;
        fan-out) echo "fan-out -S 500 -q 0" ;;
        pairs-qos1) echo "pairs -n 100 -q 1 --max-inflight 10" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

start() { # name port
    # `exec`: the background job is the broker itself, so $! is the broker's PID.
    case $1 in
        floor) exec taskset -c "$BROKER_CPU" "$FLOOR_BIN" -p "$2" ;;
        culex) exec taskset -c "$BROKER_CPU" "$CULEX" --shards 1 --cpus "$BROKER_CPU" -p "$2" ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nlog_dest none\nmax_connections -1\nset_tcp_nodelay true\nmax_queued_messages 0\n' \
                "$2" >"$work/mosquitto.conf"
            exec taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$work/mosquitto.conf"
            ;;
    esac >"$work/$1.log" 2>&1 &
    broker=$!
    wait_port "$2"
}

echo "broker on CPU $BROKER_CPU, loadgen on CPU $LOAD_CPU, ${DURATION} s per run, $(date -u +%FT%TZ)"
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for name in floor culex mosquitto; do
            port=$((20000 + RANDOM % 20000))
            start "$name" "$port"
            # shellcheck disable=SC2046 # the scenario's arguments are words
            taskset -c "$LOAD_CPU" "$LOADGEN" $(load_args "$scenario") --payload 64 --cpus "$LOAD_CPU" \
                -p "$port" --warmup 1 -d "$DURATION" --drain 1 --quiet --broker-pid "$broker" \
                --json "$work/run.json" >"$work/run.out" 2>&1 || true
            kill "$broker"
            wait "$broker" 2>/dev/null || true
            broker=
            python3 - "$round" "$scenario" "$name" "$work/run.json" <<'PY'
import json, sys
rnd, scenario, name, path = sys.argv[1:5]
try:
    j = json.load(open(path))
except Exception as e:
    print(f"{rnd} {scenario:11} {name:10} no result ({e})")
    sys.exit(0)
w, cpu = j["window"], j["cpu"]
b = cpu.get("broker_us_per_delivered_msg")
print(f"{rnd} {scenario:11} {name:10} {w['received_per_s'] / 1e3:9.1f} k msg/s delivered  "
      f"broker {'-' if b is None else f'{b:6.3f}'} us/msg  lost {j['messages']['lost']}")
PY
            rm -f "$work/run.json"
        done
    done
done
