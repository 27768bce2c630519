#!/usr/bin/env bash
# `make bench`: installs nginx and wrk when missing, then runs scripts/bench/run.py
# (BENCH_MODE=embedded, the default, or cluster), or compare.py (BENCH_MODE=compare).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! { command -v wrk && command -v nginx; } >/dev/null; then
    "$root/scripts/apt-install.sh" nginx-light wrk
fi
if [[ "${BENCH_MODE:-}" == "compare" ]]; then
    # Both modes at once, alternating rounds: what the cluster mode adds (scripts/bench/compare.py).
    exec "$root/.venv/bin/python" "$root/scripts/bench/compare.py" "$@"
fi
exec "$root/.venv/bin/python" "$root/scripts/bench/run.py" "$@"
