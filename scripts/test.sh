#!/usr/bin/env bash
# `make test`: static checks, then the unit, integration and e2e suites in one pytest run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv/bin"
# Servers the integration tests start themselves (a Redis Cluster from the Debian binaries).
scripts/apt-install.sh redis-server prometheus
scripts/apt-install.sh postgresql
# The deployment checks run the real nginx (TLS with a throw-away certificate) and systemd-analyze.
scripts/apt-install.sh nginx systemd openssl
# The console's browser tests (tests/browser) drive Debian's Chromium through Playwright.
scripts/apt-install.sh chromium
echo "== static checks"
"$venv/ruff" check .
"$venv/mypy"
"$venv/lint-imports" --no-cache > /tmp/xrouter-lint-imports.log || { cat /tmp/xrouter-lint-imports.log; exit 1; }
echo "import boundaries: kept"
scripts/proto-check.sh
echo "== tests"
exec "$venv/python" -m pytest tests -q -p no:cacheprovider "$@"
