"""The shipped monitoring against a real Prometheus: both services as processes in front of the
fake OpenAI upstream, scraped through prometheus.yml's own relabelling (static targets carrying
the labels Kubernetes discovery would set) with alerts.yml loaded. After real traffic every
panel of every dashboard returns data and every rule evaluates cleanly.

Two legs: the router in the embedded mode (SQLite, in-process limits), and in the cluster mode
(the session's PostgreSQL primary + standby and 3 + 3 Redis Cluster). The panels of metrics only
the cluster mode exports are named in CLUSTER_ONLY: the embedded leg must find exactly those
empty, the cluster leg must find every panel with data."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.prometheus_support import (
    MASTER_KEY,
    api,
    eventually,
    has_data,
    render_dashboards,
    running_stack,
    scraped_since,
)
from tests.support import minute_margin
from tests.unit.test_observability_files import (
    TITLES,
    Query,
    alert_names,
    dashboard_queries,
    find_tool,
    variable_queries,
)
from xrouter_router.storage.sql.migrate import migrate

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello there"}]
# Grafana computes $__rate_interval from the scrape interval (1 s here) and the panel width;
# 30 s keeps every window within the test's data.
BUILTINS = {"__rate_interval": "30s", "__range": "5m"}
# A directory: the cluster leg then draws every dashboard there as <uid>.svg (`make dashboards`).
RENDER_ENV = "XROUTER_RENDER_DASHBOARDS"
RENDER_ROUNDS = 4
# (dashboard, panel) of the series only a router on PostgreSQL and the Redis Cluster exports:
# the database probe, the Redis-backed limiter and credit guard, the stream ledger, and the
# timings of Redis and PostgreSQL calls.
CLUSTER_ONLY = frozenset(("credits-and-limits.json", panel) for panel in (
    "Database up", "Redis errors by component", "Degraded decisions by component",
    "Redis call latency p50 / p99", "Database call latency p50 / p99", "Ledger backlog",
    "Ledger backlog over time", "Ledger flush time"))


@dataclass(frozen=True)
class Backend:
    """The router's stores, as its environment; `cluster`: PostgreSQL and the Redis Cluster."""

    cluster: bool
    env: dict[str, str]


@pytest.fixture(params=["embedded", "cluster"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    env = {"XROUTER_DATA_DIR": str(tmp_path / "data")}
    if request.param == "embedded":
        return Backend(False, env)
    # Only this leg starts PostgreSQL and the Redis Cluster (session fixtures, shared).
    postgres: PostgresHA = request.getfixturevalue("postgres_ha")
    redis: RedisCluster = request.getfixturevalue("redis_cluster")
    name = "p" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    database = postgres.multi_host(name)
    assert asyncio.run(migrate(database, wait=10))
    return Backend(True, {**env, "XROUTER_DATABASE_URL": database, "XROUTER_REDIS_URL": redis.url,
                          "XROUTER_KEY_SECRET": "prometheus-live-key-secret"})


def send_accounting_traffic(http: httpx.Client, base: str) -> None:
    """Real keys (not the master key): a first use (a key cache miss) and more (hits), a 429 from
    a tiny rate limit and a 402 from an account without credits. Fresh accounts every round: the
    Redis Cluster outlives a test, and the limited key gets one request per minute."""
    account = "prom-" + uuid.uuid4().hex[:12]

    def key(account_id: str, **limits: int) -> dict[str, str]:
        resp = http.post(f"{base}/v1/keys", headers=AUTH,
                         json={"account_id": account_id, "tier": "pro", **limits})
        assert resp.status_code == 201, resp.text
        return {"Authorization": f"Bearer {resp.json()['key']}"}

    def post(headers: dict[str, str]) -> int:
        return http.post(f"{base}/v1/chat/completions", headers=headers,
                         json={"model": "test/echo", "messages": HELLO}).status_code

    resp = http.post(f"{base}/v1/credits", headers=AUTH, json={"account_id": account, "amount": "10"})
    assert resp.status_code == 200, resp.text
    paying, limited, broke = key(account), key(account, requests_per_minute=1), key(account + "-0")
    assert [post(paying) for _ in range(3)] == [200] * 3
    time.sleep(minute_margin())  # both requests in one minute's window
    assert [post(limited) for _ in range(2)] == [200, 429]
    assert post(broke) == 402


def send_traffic(base: str) -> None:
    """Successes, streams, failovers, failures, an estimate, a disconnect, a 404, a 401, and the
    accounting's answers (a 402 and a 429)."""
    chat = f"{base}/v1/chat/completions"
    with httpx.Client(timeout=15) as http:
        def post(model: str) -> int:
            return http.post(chat, headers=AUTH, json={"model": model, "messages": HELLO}).status_code

        def stream(model: str) -> None:
            body = {"model": model, "messages": HELLO, "stream": True,
                    "stream_options": {"include_usage": True}}
            with http.stream("POST", chat, headers=AUTH, json=body) as resp:
                assert resp.status_code == 200
                resp.read()

        assert [post("test/echo") for _ in range(3)] == [200] * 3
        assert [post("test/failover") for _ in range(2)] == [200] * 2
        # Three rounds open the breakers of both deployments (3 failures each).
        assert [post("test/all-fail") for _ in range(3)] == [502] * 3
        # Both deployments cost the same: the balancer alternates the refusing one and the other.
        assert sorted(post("test/rejected") for _ in range(2)) == [200, 400]
        assert post("ghost") == 404
        assert http.post(chat, json={"model": "test/echo", "messages": HELLO},
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        for model in ("test/echo", "test/echo", "test/no-usage"):
            stream(model)
        # A client that goes away in the middle of a stream.
        with http.stream("POST", chat, headers=AUTH, json={
                "model": "test/drip", "messages": HELLO, "stream": True}) as resp:
            lines = resp.iter_lines()
            for _ in range(3):
                next(lines)
        assert http.post(f"{base}/v1/embeddings", headers=AUTH, json={
            "model": "test/embed", "input": "hi"}).status_code == 200
        send_accounting_traffic(http, base)


def panel_problems(prom: str, queries: list[Query], exempt: frozenset[tuple[str, str]]) -> list[str]:
    """Queries without data outside `exempt` panels, and `exempt` panels with any data."""
    problems: list[str] = []
    with_data: set[tuple[str, str]] = set()
    for q in queries:
        ok, values = has_data(prom, q.expr)
        if ok:
            with_data.add((q.dashboard, q.panel))
        elif (q.dashboard, q.panel) not in exempt:
            problems.append(f"{q.label()}: {values or 'no series'}: {q.expr}")
    problems += [f"{d} / {p}: listed in CLUSTER_ONLY but has data in the embedded mode"
                 for d, p in sorted(exempt & with_data)]
    return problems


def test_dashboards_and_alerts_on_a_live_prometheus(tmp_path: Path, backend: Backend) -> None:
    queries = list(dashboard_queries(BUILTINS))
    unknown = CLUSTER_ONLY - {(q.dashboard, q.panel) for q in queries}
    assert not unknown, f"CLUSTER_ONLY names panels that do not exist: {sorted(unknown)}"
    with running_stack(tmp_path, find_tool("prometheus"), backend.env) as stack:
        started = time.time()
        # Two rounds with a scrape between them, so that counters born in the first round
        # have a rate in the second: every panel should show a number, not just a series.
        send_traffic(stack.gateway)
        assert not eventually(scraped_since(stack.prometheus, time.time()), 60)
        send_traffic(stack.gateway)

        # The cluster leg exempts nothing: the cluster-only panels must have data there.
        exempt = frozenset[tuple[str, str]]() if backend.cluster else CLUSTER_ONLY
        empty = eventually(lambda: panel_problems(stack.prometheus, queries, exempt), 60)
        assert not empty, "panels without data:\n" + "\n".join(empty)

        for dashboard, var, selector, label in variable_queries(BUILTINS):
            values = api(stack.prometheus, f"label/{label}/values", **{"match[]": selector})
            assert values, f"{dashboard}: ${var} has no values"

        def unhealthy_rules() -> list[str]:
            groups = api(stack.prometheus, "rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            seen = {r["name"] for r in rules if r["type"] == "alerting"}
            return ([f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules
                     if r["health"] != "ok"]
                    + [f"{name}: not loaded" for name in set(alert_names()) - seen])

        unhealthy = eventually(unhealthy_rules, 60)
        assert not unhealthy, "rules not evaluating cleanly:\n" + "\n".join(unhealthy)

        targets = api(stack.prometheus, "targets")
        active = {t["labels"]["app"]: t for t in targets["activeTargets"]}
        assert sorted(active) == ["api-gateway", "router-service"]
        assert active["router-service"]["labels"]["instance"] == stack.router_metrics
        assert all(t["health"] == "up" for t in active.values()), active
        assert len(targets["droppedTargets"]) == 3

        # The traffic earns some alerts (pending: they all have a `for`), and only those: both
        # breakers of test/all-fail are open, a tenth of the /v1 requests end in 502, and the
        # providers may or may not have made the 10 attempts their error-rate alert needs.
        required = {"XRouterModelAllDeploymentsDown test/all-fail", "XRouterGateway5xxRateHigh"}
        allowed = required | {"XRouterProviderErrorRateHigh"}

        def unexpected_alerts() -> list[str]:
            found = {f"{a['labels']['alertname']} {a['labels'].get('model', '')}".strip()
                     for a in api(stack.prometheus, "alerts")["alerts"]}
            return sorted((required - found) | (found - allowed))

        assert not eventually(unexpected_alerts, 30)

        # `make dashboards`: pictures of every dashboard over this test's traffic (docs/).
        out_dir = os.environ.get(RENDER_ENV)
        if out_dir and backend.cluster:
            # More rounds a few seconds apart, then a quiet spell: pictures of rates that rise
            # and fall, not only of the first seconds of a step.
            for _ in range(RENDER_ROUNDS):
                time.sleep(4)
                send_traffic(stack.gateway)
            time.sleep(10)
            written = render_dashboards(stack.prometheus, Path(out_dir), BUILTINS, started,
                                        time.time())
            assert len(written) == len(TITLES), written
