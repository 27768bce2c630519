#!/usr/bin/env bash
# `make run`: one router and the gateway on 127.0.0.1 in the embedded mode with the demo model.
# Ctrl-C stops both. Ports and the key can be overridden through the environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
data="${XROUTER_DATA_DIR:-$root/.xrouter}"
mkdir -p "$data"
chmod 700 "$data"
if [ -z "${XROUTER_MASTER_KEY:-}" ]; then
    if [ ! -s "$data/master.key" ]; then
        (umask 077; printf 'xr-dev-%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" > "$data/master.key")
    fi
    XROUTER_MASTER_KEY=$(cat "$data/master.key")
fi
export XROUTER_MASTER_KEY
gw_port=${XROUTER_GATEWAY_PORT:-8000}
router_port=${XROUTER_ROUTER_PORT:-50051}
export XROUTER_GATEWAY_PORT=$gw_port
export XROUTER_ROUTER_LISTEN=${XROUTER_ROUTER_LISTEN:-127.0.0.1:$router_port}
export XROUTER_ROUTER_TARGET=${XROUTER_ROUTER_TARGET:-127.0.0.1:$router_port}
export XROUTER_ROUTER_METRICS_PORT=${XROUTER_ROUTER_METRICS_PORT:-9100}
export XROUTER_DATA_DIR=$data

pids=()
# shellcheck disable=SC2329  # invoked by the trap on the next line
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

.venv/bin/python -m xrouter_router > "$data/router.log" 2>&1 &
pids+=($!)
.venv/bin/python -m xrouter_gateway > "$data/gateway.log" 2>&1 &
pids+=($!)

base="http://127.0.0.1:$gw_port"
for _ in $(seq 1 100); do
    if curl -fs "$base/readyz" > /dev/null 2>&1; then break; fi
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "xrouter: a service failed to start; logs:" >&2
            tail -n 20 "$data/router.log" "$data/gateway.log" >&2
            exit 1
        fi
    done
    sleep 0.1
done
curl -fs "$base/readyz" > /dev/null || { echo "xrouter: not ready after 10s" >&2; exit 1; }

# First start: a demo account with credits and a key for it (shown here, stored owner-only).
if [ ! -s "$data/demo.key" ]; then
    .venv/bin/xrouter credits add demo 1000 --url "$base" --key "$XROUTER_MASTER_KEY" \
        --reference "make run: demo credits" > /dev/null
    .venv/bin/xrouter keys create --account demo --tier pro --name "demo key" \
        --url "$base" --key "$XROUTER_MASTER_KEY" > "$data/demo.json"
    (umask 077; .venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' \
        "$data/demo.json" > "$data/demo.key")
    rm -f "$data/demo.json"
fi
demo_key=$(cat "$data/demo.key")

cat <<TXT

  XRouter is up (embedded mode, demo model).

  Base URL   : $base/v1
  Console    : $base/console   (sign in with the API key below, or the master key)
  API key    : $demo_key   (account "demo", 1000 RUB of credits)
  Master key : $XROUTER_MASTER_KEY (management: .venv/bin/xrouter keys, credits, usage)
  Logs       : $data/router.log, $data/gateway.log

  curl $base/v1/chat/completions \\
    -H "Authorization: Bearer $demo_key" -H "Content-Type: application/json" \\
    -d '{"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}'

  Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
echo "xrouter: a service exited; see $data/*.log" >&2
exit 1
