#!/usr/bin/env bash
# Fails when I/O (syscalls through libc, sockets, threads' queues, glommio) is named in the
# broker's library outside the layers allowed to do I/O: src/shard, src/mesh and
# src/main.rs. Everything else in src/ must stay testable without a socket (see
# src/lib.rs). The load generator, the bench harness and tests are not layered.
set -euo pipefail
cd "$(dirname "$0")/.."

allowed='^(src/shard/|src/mesh/|src/main\.rs$)'
# Code that names the crate or type (a path or a `use`), not prose in comments.
io='libc|socket2|crossbeam[a-z_]*|glommio|TcpStream|TcpListener|UdpSocket'
uses="(^|[^A-Za-z0-9_])($io)[[:space:]]*::|use[[:space:]]+($io)([^A-Za-z0-9_]|$)|std::net::($io)"
violations=$(git ls-files -- 'src/*.rs' 'src/**/*.rs' | sort -u | grep -Ev "$allowed" \
    | xargs -r grep -nE "$uses" \
    | grep -Ev '^[^:]+:[0-9]+:[[:space:]]*//' || true)

if [[ -n "$violations" ]]; then
    echo "check-layering: I/O named outside src/shard, src/mesh, src/main.rs:" >&2
    echo "$violations" >&2
    exit 1
fi
echo "check-layering: ok"
