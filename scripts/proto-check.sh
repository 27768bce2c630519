#!/usr/bin/env bash
# Fails when the committed stubs in libs/common/gen differ from what protos/ generates now.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/scripts/proto.sh" "$tmp"
if ! diff -r -x __pycache__ "$tmp/xrouter" "$root/libs/common/gen/xrouter"; then
    echo "proto-check: generated code drifted from protos/; run 'make proto' and commit" >&2
    exit 1
fi
echo "proto-check: generated code matches protos/"
