#!/usr/bin/env bash
# Installs the brokers culex-bench compares Culex against. Idempotent: a peer already present
# is left alone, so rerunning only fills in what is missing.
#
#   Mosquitto   Debian package `mosquitto` (+ clients)          -> /usr/sbin/mosquitto
#   NATS        Debian package `nats-server` (its MQTT listener) -> /usr/bin/nats-server
#   rumqttd     crates.io, `cargo install rumqttd --locked`      -> $CULEX_PEERS_DIR/bin/rumqttd
#   rsvg-convert (librsvg2-bin) to check the SVG charts render as PNG.
#
# CULEX_PEERS_DIR defaults to /opt/culex-peers; culex-bench looks there (and on PATH).
# A peer that fails to install is reported and skipped: the harness runs what it finds.
set -u

PEERS_DIR="${CULEX_PEERS_DIR:-/opt/culex-peers}"
RUMQTTD_VERSION="${RUMQTTD_VERSION:-}"   # empty: the newest on crates.io
failed=()

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_packages+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || apt_packages+=(mosquitto-clients)
command -v nats-server >/dev/null 2>&1 || apt_packages+=(nats-server)
command -v rsvg-convert >/dev/null 2>&1 || apt_packages+=(librsvg2-bin)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "install-peers: apt-get install ${apt_packages[*]}"
    as_root apt-get update -qq || true
    for p in "${apt_packages[@]}"; do
        # One at a time: a package missing from this release must not block the others.
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$p" \
            || failed+=("$p (apt)")
    done
fi
# Debian starts the packaged services on install; the harness starts its own copies on
# other ports, but a system broker on 1883 would confuse people, so stop those we just added.
for svc in mosquitto nats-server; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        as_root systemctl stop "$svc" || true
    fi
done

if [ -x "$PEERS_DIR/bin/rumqttd" ]; then
    echo "install-peers: rumqttd already in $PEERS_DIR/bin"
else
    echo "install-peers: cargo install rumqttd into $PEERS_DIR (a few minutes on 2 cores)"
    mkdir -p "$PEERS_DIR"
    version_arg=()
    [ -n "$RUMQTTD_VERSION" ] && version_arg=(--version "$RUMQTTD_VERSION")
    # Its own target dir: the rumqttd build must not churn the workspace's shared cache.
    install_rumqttd() {
        nice -n 10 cargo install rumqttd "$@" "${version_arg[@]}" --root "$PEERS_DIR" \
            --target-dir "${CARGO_TARGET_DIR:-/tmp}/peers-build" -j "${PEERS_BUILD_JOBS:-1}"
    }
    # rumqttd 0.20's lock file pins metrics 0.22.1, which newer rustc rejects (E0521, a
    # lifetime escaping through a raw-pointer cast). Without --locked cargo picks the newest
    # semver-compatible releases, which build; the version used is printed either way.
    install_rumqttd --locked || {
        echo "install-peers: rumqttd does not build with its lock file on $(rustc --version);"
        echo "install-peers: retrying without --locked (semver-compatible dependency updates)"
        install_rumqttd
    } || failed+=("rumqttd (cargo)")
fi

echo "install-peers: found:"
for b in /usr/sbin/mosquitto "$(command -v nats-server || echo /usr/bin/nats-server)" "$PEERS_DIR/bin/rumqttd"; do
    if [ -x "$b" ]; then echo "  ok       $b"; else echo "  missing  $b"; fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "install-peers: could not install: ${failed[*]} (the harness skips them with a note)"
    exit 1
fi
