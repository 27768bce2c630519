#!/usr/bin/env bash
# `make dashboards`: draws docs/dashboards/<uid>.svg, one picture per Grafana dashboard, from a
# real Prometheus scraping a real gateway and router (the cluster leg of
# tests/integration/test_prometheus_live.py: PostgreSQL and a Redis Cluster, test traffic).
# Not Grafana: tests/integration/dashboard_render.py draws the panels from the query results.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/apt-install.sh" redis-server prometheus postgresql
XROUTER_RENDER_DASHBOARDS="${1:-docs/dashboards}" exec "$root/.venv/bin/python" -m pytest -q \
    -p no:cacheprovider \
    "tests/integration/test_prometheus_live.py::test_dashboards_and_alerts_on_a_live_prometheus[cluster]"
