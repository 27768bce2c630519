#!/usr/bin/env bash
# Generates the Python gRPC stubs from protos/ into libs/common/gen (or into $1, for the drift check).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/libs/common/gen}
py=${PYTHON:-$root/.venv/bin/python}
PATH="$(dirname "$py"):$PATH"
export PATH
mkdir -p "$out"
rm -rf "$out/xrouter"
protos=$(cd "$root/protos" && find . -name '*.proto' | sort)
# shellcheck disable=SC2086
(cd "$root/protos" && "$py" -m grpc_tools.protoc -I . \
    --python_out="$out" --mypy_out="$out" --grpc_python_out="$out" --mypy_grpc_out="$out" $protos)
find "$out/xrouter" -type d -exec sh -c 'printf "%s\n" "\"\"\"Generated from protos/ by scripts/proto.sh: do not edit.\"\"\"" > "$1/__init__.py"' _ {} \;
touch "$out/xrouter/py.typed"
