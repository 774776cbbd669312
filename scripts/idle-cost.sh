#!/usr/bin/env bash
# Idle-connection cost, Culex (1 shard) against Mosquitto in the same run (issue #5 targets):
#   RSS per connection = (RSS with N connections held - RSS before) / N
#   CPU per connect    = broker utime+stime (/proc/PID/stat) across the connect storm / N
# The broker is pinned to BROKER_CPU, the loadgen (kind `conn`, MQTT 3.1.1, keepalive 60 s)
# to LOAD_CPU. The RSS is read HOLD_SETTLE seconds after the last connection opened, so an
# allocator's delayed purge has run.
#
#   scripts/idle-cost.sh [N]      env: CULEX_BIN, LOADGEN_BIN, MOSQUITTO, FLOOR_BIN,
#                                 BROKERS="culex mosquitto" (add `floor`: culex-floor, the
#                                 do-nothing relay whose figures no broker can beat here)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-19500}
BROKER_CPU=${BROKER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
HOLD_SETTLE=${HOLD_SETTLE:-3}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
CULEX_BIN=${CULEX_BIN:-$TARGET/release/culex}
LOADGEN_BIN=${LOADGEN_BIN:-$TARGET/release/culex-loadgen}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
FLOOR_BIN=${FLOOR_BIN:-$TARGET/release/culex-floor}
BROKERS=${BROKERS:-"culex mosquitto"}
TICKS=$(getconf CLK_TCK)
scratch=$(mktemp -d)
broker_pid=""
load_pid=""

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    for log in "$scratch"/*.log "$scratch"/load.out; do
      [ -f "$log" ] && { echo "--- $log" >&2; tail -n 5 "$log" >&2; }
    done
  fi
  # Only the processes this script started, by PID.
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# utime + stime of every thread, in clock ticks (fields 14 and 15; the name may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
user_sys() { sed "s/^.*) //" "/proc/$1/stat" | awk "{print \$12, \$13}"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 10000))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

measure() {
  local name=$1 port
  port=$(free_port)
  case $name in
    culex)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\n' "$port" >"$scratch/culex.conf"
      taskset -c "$BROKER_CPU" "$CULEX_BIN" -c "$scratch/culex.conf" --shards 1 --cpus "$BROKER_CPU" \
        >"$scratch/culex.log" 2>&1 &
      ;;
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_dest none\n' \
        "$port" >"$scratch/mosquitto.conf"
      taskset -c "$BROKER_CPU" "$MOSQUITTO" -c "$scratch/mosquitto.conf" >"$scratch/mosquitto.log" 2>&1 &
      ;;
    floor)
      taskset -c "$BROKER_CPU" "$FLOOR_BIN" -p "$port" >"$scratch/floor.log" 2>&1 &
      ;;
  esac
  broker_pid=$!
  for _ in $(seq 100); do
    ss -Hltn "sport = :$port" | grep -q . && break
    sleep 0.1
  done
  sleep 1
  local rss0 cpu0 fd0 cpu1 rss1 held t0 t1
  rss0=$(rss_kib "$broker_pid")
  cpu0=$(cpu_ticks "$broker_pid")
  local u0 s0 u1 s1
  read -r u0 s0 < <(user_sys "$broker_pid")
  fd0=$(fd_count "$broker_pid")
  t0=$(date +%s.%N)
  # Fresh source addresses per run: the last run's (and other users') connections sit in
  # TIME_WAIT on 127.0.0.x, and a bind to a port in TIME_WAIT fails, stalling the storm.
  local net=$((10 + RANDOM % 240))
  taskset -c "$LOAD_CPU" "$LOADGEN_BIN" conn -n "$N" --cpus "$LOAD_CPU" -p "$port" \
    --source "127.$net.0.1-127.$net.0.4" --mqtt-version 4 --keepalive 60 \
    --warmup 0 -d $((HOLD_SETTLE + 120)) >"$scratch/load.out" 2>"$scratch/load.err" &
  load_pid=$!
  # The storm is over when the broker holds N more descriptors, or when the count has not
  # moved for 3 s (a few connects time out when a listen backlog overflows; Mosquitto's
  # is 100), or after 90 s.
  local last=-1 still=0
  for _ in $(seq 900); do
    held=$(($(fd_count "$broker_pid") - fd0))
    [ "$held" -ge "$N" ] && break
    if [ "$held" -eq "$last" ] && [ "$held" -gt 0 ]; then
      still=$((still + 1))
      [ "$still" -ge 30 ] && break
    else
      still=0
      last=$held
    fi
    sleep 0.1
  done
  cpu1=$(cpu_ticks "$broker_pid")
  read -r u1 s1 < <(user_sys "$broker_pid")
  t1=$(date +%s.%N)
  sleep "$HOLD_SETTLE"
  rss1=$(rss_kib "$broker_pid")
  held=$(($(fd_count "$broker_pid") - fd0))
  if [ "$held" -lt "$N" ]; then
    echo "$name: only $held of $N connections held; the loadgen said:" >&2
    tail -n 5 "$scratch/load.err" >&2
  fi
  kill "$load_pid" 2>/dev/null || true
  wait "$load_pid" 2>/dev/null || true
  load_pid=""
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
  awk -v n="$name" -v held="$held" -v r0="$rss0" -v r1="$rss1" -v c0="$cpu0" -v c1="$cpu1" \
    -v hz="$TICKS" -v t0="$t0" -v t1="$t1" -v us="$((u1 - u0))" -v sy="$((s1 - s0))" 'BEGIN {
      printf "%-10s held %6d  RSS %5.1f -> %5.1f MiB  %5.0f B/conn  connect CPU %5.2f s  %5.1f us/conn (user %4.1f, sys %4.1f)  storm %4.1f s\n",
        n, held, r0 / 1024, r1 / 1024, (r1 - r0) * 1024 / held, (c1 - c0) / hz,
        (c1 - c0) / hz * 1e6 / held, us / hz * 1e6 / held, sy / hz * 1e6 / held, t1 - t0 }'
}

ulimit -n "$(ulimit -Hn)"
echo "N=$N broker on cpu $BROKER_CPU, loadgen on cpu $LOAD_CPU, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
for b in $BROKERS; do measure "$b"; done
