#!/usr/bin/env bash
# `make bench`: installs nginx and wrk when missing, then runs scripts/bench/run.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null && command -v nginx >/dev/null || "$root/scripts/apt-install.sh" nginx-light wrk
exec "$root/.venv/bin/python" "$root/scripts/bench/run.py" "$@"
