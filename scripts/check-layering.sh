#!/usr/bin/env bash
# Fails when glommio (the I/O runtime) is named outside the layers allowed to do I/O:
# src/shard, src/mesh, src/main.rs, the load generator and the bench harness. Everything
# else must stay testable without a socket (see src/lib.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

allowed='^(src/shard/|src/mesh/|src/main\.rs$|loadgen/|bench-harness/)'
# Code that names the crate (a path or a `use`), not prose in comments.
uses='(^|[^A-Za-z0-9_])glommio[[:space:]]*::|use[[:space:]]+glommio([^A-Za-z0-9_]|$)|extern[[:space:]]+crate[[:space:]]+glommio'
violations=$(git ls-files -- '*.rs' | grep -Ev "$allowed" \
    | xargs -r grep -nE "$uses" \
    | grep -Ev '^[^:]+:[0-9]+:[[:space:]]*//' || true)

if [[ -n "$violations" ]]; then
    echo "check-layering: glommio used outside src/shard, src/mesh, src/main.rs:" >&2
    echo "$violations" >&2
    exit 1
fi
echo "check-layering: ok"
