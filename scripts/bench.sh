#!/usr/bin/env bash
# `make bench`: installs nginx and wrk when missing, prints the personal-data guard's CPU
# (scripts/bench/pii.py), then runs scripts/bench/run.py (both modes, the default; or
# BENCH_MODE=embedded or cluster), or compare.py (BENCH_MODE=compare).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! { command -v wrk && command -v nginx; } >/dev/null; then
    "$root/scripts/apt-install.sh" nginx-light wrk
fi
if [[ "${BENCH_MODE:-both}" != "embedded" ]]; then
    # The cluster mode's PostgreSQL pair and Redis Cluster (the tests' own, tests/infra).
    "$root/scripts/apt-install.sh" redis-server postgresql
fi
if [[ "${BENCH_MODE:-}" == "compare" ]]; then
    # Both modes at once, alternating rounds: what the cluster mode adds (scripts/bench/compare.py).
    exec "$root/.venv/bin/python" "$root/scripts/bench/compare.py" "$@"
fi
# The personal-data guard's CPU per 2 KB Russian prompt (pure CPU, no server: docs/compliance.md).
"$root/.venv/bin/python" "$root/scripts/bench/pii.py"
exec "$root/.venv/bin/python" "$root/scripts/bench/run.py" "$@"
