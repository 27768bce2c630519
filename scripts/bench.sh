#!/usr/bin/env bash
# `make bench`: installs nginx and wrk when missing, then runs scripts/bench/run.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! { command -v wrk && command -v nginx; } >/dev/null; then
    "$root/scripts/apt-install.sh" nginx-light wrk
fi
exec "$root/.venv/bin/python" "$root/scripts/bench/run.py" "$@"
