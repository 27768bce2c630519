"""The shipped monitoring against a real Prometheus: both services as processes in front of the
fake OpenAI upstream, scraped through prometheus.yml's own relabelling (static targets carrying
the labels Kubernetes discovery would set) with alerts.yml loaded. After real traffic every
panel of every dashboard returns data and every rule evaluates cleanly."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support import (
    UPSTREAM_ENV,
    Service,
    free_port,
    start_service,
    wait_http,
    wait_port,
    write_catalog,
)
from tests.unit.test_observability_files import (
    PROMETHEUS_DIR,
    alert_names,
    dashboard_queries,
    find_tool,
    scrape_config_copy,
    variable_queries,
)

pytestmark = pytest.mark.slow
MASTER_KEY = "prometheus-live-master-key"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "hello there"}]
# Grafana computes $__rate_interval from the scrape interval (1 s here) and the panel width;
# 30 s keeps every window within the test's data.
BUILTINS = {"__rate_interval": "30s", "__range": "5m"}
POD = "__meta_kubernetes_pod_"


@dataclass(frozen=True)
class Ports:
    grpc: int
    router_metrics: int
    gateway: int
    prometheus: int


@dataclass
class Stack:
    gateway: str
    router_metrics: str
    prometheus: str


def pod(address: str, app: str, **extra: str) -> dict[str, Any]:
    """A static target labelled like a pod found by Kubernetes discovery."""
    labels = {f"{POD}label_app_kubernetes_io_part_of": "xrouter", f"{POD}label_app": app,
              f"{POD}name": f"{app}-0", f"{POD}phase": "Running",
              "__meta_kubernetes_namespace": "xrouter"}
    labels.update({POD + k: v for k, v in extra.items()})
    return {"targets": [address], "labels": labels}


def start_prometheus(binary: str, tmp: Path, ports: Ports) -> Service:
    targets = [
        pod(f"127.0.0.1:{ports.gateway}", "api-gateway"),
        # Discovered on its gRPC port; the annotation moves the scrape to the metrics port.
        pod(f"127.0.0.1:{ports.grpc}", "router-service",
            annotation_prometheus_io_port=str(ports.router_metrics)),
        # Pods Prometheus must leave alone: not part of XRouter, finished, opted out.
        {"targets": ["127.0.0.1:1"], "labels": {f"{POD}label_app": "redis"}},
        pod("127.0.0.1:2", "router-service", phase="Succeeded"),
        pod("127.0.0.1:3", "api-gateway", annotation_prometheus_io_scrape="false"),
    ]
    config = tmp / "prometheus.yml"
    config.write_text(scrape_config_copy(targets, PROMETHEUS_DIR / "alerts.yml", interval="1s"),
                      encoding="utf-8")
    log = tmp / "prometheus.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports.prometheus}", "--log.level=warn"],
            stdout=handle, stderr=subprocess.STDOUT)
    return Service("prometheus", proc, log)


def stop(service: Service) -> None:
    try:
        service.kill(signal.SIGTERM)
    except subprocess.TimeoutExpired:
        service.kill(signal.SIGKILL)


@contextlib.contextmanager
def running_stack(tmp: Path, prometheus_binary: str) -> Iterator[Stack]:
    upstream = FakeOpenAI(drip_interval=0.05).start()
    started: list[Service] = []
    try:
        catalog = write_catalog(tmp, upstream.base_url)
        ports = Ports(free_port(), free_port(), free_port(), free_port())
        router = start_service("xrouter_router", {
            **UPSTREAM_ENV, "XROUTER_MASTER_KEY": MASTER_KEY, "XROUTER_CATALOG": str(catalog),
            "XROUTER_ROUTER_LISTEN": f"127.0.0.1:{ports.grpc}",
            "XROUTER_ROUTER_METRICS_PORT": str(ports.router_metrics),
            "XROUTER_SHUTDOWN_GRACE": "1", "XROUTER_ATTEMPT_TIMEOUT": "5"}, tmp / "router.log")
        started.append(router)
        prometheus = start_prometheus(prometheus_binary, tmp, ports)
        started.append(prometheus)
        wait_port(ports.grpc, service=router)
        gateway = start_service("xrouter_gateway", {
            "XROUTER_GATEWAY_PORT": str(ports.gateway),
            "XROUTER_ROUTER_TARGET": f"127.0.0.1:{ports.grpc}",
            "XROUTER_SSE_COMMIT_AFTER": "0.2", "XROUTER_SSE_KEEPALIVE": "0.5"}, tmp / "gateway.log")
        started.append(gateway)
        base = f"http://127.0.0.1:{ports.gateway}"
        wait_http(f"{base}/readyz", service=gateway)
        prom = f"http://127.0.0.1:{ports.prometheus}"
        wait_http(f"{prom}/-/ready", service=prometheus)
        yield Stack(base, f"127.0.0.1:{ports.router_metrics}", prom)
    finally:
        for service in reversed(started):
            stop(service)
        upstream.stop()


def send_traffic(base: str) -> None:
    """Successes, streams, failovers, failures, an estimate, a disconnect, a 404 and a 401."""
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


def scraped_since(prom: str, moment: float) -> Callable[[], list[str]]:
    """A check for `eventually`: the tiers not scraped since `moment` (Unix time). Discovery
    hands Prometheus its first targets up to 5 s after it starts."""
    def check() -> list[str]:
        result = api(prom, "query", query='timestamp(up{job="xrouter"})')["result"]
        done = {r["metric"]["app"] for r in result if float(r["value"][1]) > moment}
        return sorted({"api-gateway", "router-service"} - done)
    return check


def api(prom: str, path: str, **params: str) -> Any:
    resp = httpx.get(f"{prom}/api/v1/{path}", params=params, timeout=10)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


def eventually(check: Callable[[], list[str]], seconds: float) -> list[str]:
    """Re-run `check` (which returns what is still wrong) until it passes or time is up."""
    deadline = time.monotonic() + seconds
    problems = check()
    while problems and time.monotonic() < deadline:
        time.sleep(0.5)
        problems = check()
    return problems


def test_dashboards_and_alerts_on_a_live_prometheus(tmp_path: Path) -> None:
    with running_stack(tmp_path, find_tool("prometheus")) as stack:
        # Two rounds with a scrape between them, so that counters born in the first round
        # have a rate in the second: every panel should show a number, not just a series.
        send_traffic(stack.gateway)
        assert not eventually(scraped_since(stack.prometheus, time.time()), 10)
        send_traffic(stack.gateway)
        queries = list(dashboard_queries(BUILTINS))

        def empty_panels() -> list[str]:
            empty = []
            for q in queries:
                values = [r["value"][1] for r in api(stack.prometheus, "query", query=q.expr)["result"]]
                if not any(v not in ("NaN", "+Inf", "-Inf") for v in values):
                    empty.append(f"{q.label()}: {values or 'no series'}: {q.expr}")
            return empty

        empty = eventually(empty_panels, 20)
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

        unhealthy = eventually(unhealthy_rules, 10)
        assert not unhealthy, "rules not evaluating cleanly:\n" + "\n".join(unhealthy)

        targets = api(stack.prometheus, "targets")
        active = {t["labels"]["app"]: t for t in targets["activeTargets"]}
        assert sorted(active) == ["api-gateway", "router-service"]
        assert active["router-service"]["labels"]["instance"] == stack.router_metrics
        assert all(t["health"] == "up" for t in active.values()), active
        assert len(targets["droppedTargets"]) == 3

        # The traffic earns some alerts (pending: they all have a `for`), and only those: both
        # breakers of test/all-fail are open, a fifth of the /v1 requests end in 502, and the
        # providers may or may not have made the 10 attempts their error-rate alert needs.
        required = {"XRouterModelAllDeploymentsDown test/all-fail", "XRouterGateway5xxRateHigh"}
        allowed = required | {"XRouterProviderErrorRateHigh"}

        def unexpected_alerts() -> list[str]:
            found = {f"{a['labels']['alertname']} {a['labels'].get('model', '')}".strip()
                     for a in api(stack.prometheus, "alerts")["alerts"]}
            return sorted((required - found) | (found - allowed))

        assert not eventually(unexpected_alerts, 5)
