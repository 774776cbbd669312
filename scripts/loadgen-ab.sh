#!/usr/bin/env bash
# Two loadgen binaries against the same broker binaries, alternated within each round, so a
# change in how the loadgen waits for its sockets shows as broker CPU per message (on
# loopback the loadgen's socket wake-ups run in the sending broker's context).
# Broker pinned to BROKER_CPU (Culex with 1 shard), loadgen to LOAD_CPU.
#
#   scripts/loadgen-ab.sh SCENARIO [ROUNDS]
#     SCENARIO: q1 (100 pairs QoS 1, 10 in flight), q0 (500 pairs QoS 0), fanin (50 -> 1)
#     env: LOADGEN_A, LOADGEN_B (the two loadgens), CULEX, MOSQUITTO, BROKERS, DURATION,
#          NODELAY=1 (Mosquitto with `set_tcp_nodelay true`: with Nagle on, its small writes
#          wait for the client's ACK and are then sent from the client's context)
set -euo pipefail
SCENARIO=${1:?q1, q0 or fanin}
ROUNDS=${2:-3}
TARGET=${CARGO_TARGET_DIR:-target}
LOADGEN_A=${LOADGEN_A:?the "before" loadgen}
LOADGEN_B=${LOADGEN_B:-$TARGET/release/culex-loadgen}
CULEX=${CULEX:-$TARGET/release/culex}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BROKERS=${BROKERS:-"culex mosquitto"}
BROKER_CPU=${BROKER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
DURATION=${DURATION:-5}
NODELAY=${NODELAY:-0}
case $SCENARIO in
    q1) args=(pairs -n 100 -q 1 --max-inflight 10) ;;
    q0) args=(pairs -n 500 -q 0) ;;
    fanin) args=(fan-in -P 50 -S 1 -q 0) ;;
    *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;;
esac
# shellcheck source=scripts/lib-broker.sh
source "$(dirname "$0")/lib-broker.sh"

one() { # broker name, loadgen label, loadgen binary
    local name=$1 label=$2 lg=$3 port=$((20000 + RANDOM % 20000))
    case $name in
        culex) taskset -c "$BROKER_CPU" "$CULEX" --shards 1 --cpus "$BROKER_CPU" -p "$port" \
            >"$work/broker.log" 2>&1 & ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nlog_dest none\n' "$port" \
                >"$work/mosquitto.conf"
            ((NODELAY)) && echo "set_tcp_nodelay true" >>"$work/mosquitto.conf"
            taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/broker.log" 2>&1 &
            ;;
    esac
    broker=$!
    wait_port "$port"
    taskset -c "$LOAD_CPU" "$lg" "${args[@]}" --payload 64 --warmup 1 -d "$DURATION" \
        --cpus "$LOAD_CPU" -p "$port" --broker-pid "$broker" --quiet --json "$work/out.json" \
        >"$work/load.out" 2>&1 || true
    kill "$broker"
    wait "$broker" 2>/dev/null || true
    broker=
    python3 - "$name" "$label" "$work/out.json" <<'PY'
import json, sys
name, label, path = sys.argv[1:4]
try:
    j = json.load(open(path))
except Exception as e:
    print(f"{name:10} {label}  no result ({e})")
    sys.exit(0)
c, w, m = j["cpu"], j["window"], j["messages"]
b, l = c.get("broker_us_per_delivered_msg"), c.get("loadgen_us_per_msg")
f = lambda v: "   -" if v is None else f"{v:6.2f}"
con = j["connections"]["connect_latency_ns"]
print(f"{name:10} {label}  broker {f(b)} us/msg  {w['received_per_s']:9.0f} msg/s  "
      f"loadgen {f(l)} us/msg  lost {m['lost']}  connect p50 {con.get('p50', 0) / 1000:.0f} us")
PY
    rm -f "$work/out.json"
}

echo "$SCENARIO: ${args[*]}, A=$LOADGEN_A B=$LOADGEN_B, broker on CPU $BROKER_CPU," \
    "loadgen on $LOAD_CPU, $(date -u +%FT%TZ)"
for round in $(seq "$ROUNDS"); do
    for name in $BROKERS; do
        # Alternate which loadgen goes first, so a drift in machine load splits evenly.
        if ((round % 2)); then order=(A B); else order=(B A); fi
        for label in "${order[@]}"; do
            if [[ $label == A ]]; then one "$name" A "$LOADGEN_A"; else one "$name" B "$LOADGEN_B"; fi
        done
    done
done
