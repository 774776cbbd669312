#!/usr/bin/env bash
# The test command of the README: installs what the tests need (Mosquitto's clients and broker,
# used as independent peers), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]} (Debian packages the tests use as independent MQTT peers)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's package may start a system broker on 1883; the tests use their own ports, but a
  # newcomer's `culex` wants 1883, so stop it again where a service manager started it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
    $sudo systemctl stop mosquitto || true
  fi
fi

# The loadgen's tests also drive the real broker: build it first and tell them where it is.
cargo build --bin culex
export CULEX_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/culex"

cargo test --workspace "$@"
