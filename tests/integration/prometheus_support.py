"""The rig of tests/integration/test_prometheus_live.py: the gateway and the router as processes
in front of the fake OpenAI upstream, and a real Prometheus scraping them through
prometheus.yml's own relabelling (static targets carrying the labels Kubernetes discovery would
set) with alerts.yml loaded; and the Prometheus HTTP API calls the test makes."""

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

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.dashboard_render import render_dashboard
from tests.integration.dashboard_svg import Series, series_from_prometheus
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
    load_dashboards,
    scrape_config_copy,
    substitute,
    variable_values,
)

MASTER_KEY = "prometheus-live-master-key"
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
def running_stack(tmp: Path, prometheus_binary: str, router_env: dict[str, str]) -> Iterator[Stack]:
    """`router_env` chooses the router's stores (the data directory, a database, Redis)."""
    upstream = FakeOpenAI(drip_interval=0.05).start()
    started: list[Service] = []
    try:
        catalog = write_catalog(tmp, upstream.base_url)
        ports = Ports(free_port(), free_port(), free_port(), free_port())
        router = start_service("xrouter_router", {
            **UPSTREAM_ENV, "XROUTER_MASTER_KEY": MASTER_KEY, "XROUTER_CATALOG": str(catalog),
            "XROUTER_ROUTER_LISTEN": f"127.0.0.1:{ports.grpc}",
            "XROUTER_ROUTER_METRICS_PORT": str(ports.router_metrics),
            "XROUTER_SHUTDOWN_GRACE": "1", "XROUTER_ATTEMPT_TIMEOUT": "5", **router_env},
            tmp / "router.log")
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


def api(prom: str, path: str, **params: str) -> Any:
    resp = httpx.get(f"{prom}/api/v1/{path}", params=params, timeout=10)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


def has_data(prom: str, expr: str) -> tuple[bool, list[str]]:
    """Whether an instant query returns at least one number (not NaN or an infinity)."""
    values = [r["value"][1] for r in api(prom, "query", query=expr)["result"]]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values), values


def scraped_since(prom: str, moment: float) -> Callable[[], list[str]]:
    """A check for `eventually`: the tiers not scraped since `moment` (Unix time). Discovery
    hands Prometheus its first targets up to 5 s after it starts."""
    def check() -> list[str]:
        result = api(prom, "query", query='timestamp(up{job="xrouter"})')["result"]
        done = {r["metric"]["app"] for r in result if float(r["value"][1]) > moment}
        return sorted({"api-gateway", "router-service"} - done)
    return check


def eventually(check: Callable[[], list[str]], seconds: float) -> list[str]:
    """Re-run `check` (which returns what is still wrong) until it passes or time is up. The
    bounds are generous (a scrape or rule evaluation takes a second here): they only decide how
    long a failing test takes to report."""
    deadline = time.monotonic() + seconds
    problems = check()
    while problems and time.monotonic() < deadline:
        time.sleep(0.5)
        problems = check()
    return problems


def panel_series(prom: str, dashboard: dict[str, Any], builtins: dict[str, str], start: float,
                 end: float) -> dict[tuple[int, str], list[Series]]:
    """What Grafana would fetch for each panel target over [start, end]: a query_range (a step
    giving about 240 points, at least 1 s), or for an instant target a query at `end`;
    variables substituted as the tests do."""
    values = variable_values(dashboard, builtins)
    step = str(max(1, round((end - start) / 240)))
    data: dict[tuple[int, str], list[Series]] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = substitute(target["expr"], values)
            if target.get("instant"):
                result = api(prom, "query", query=expr, time=f"{end:.3f}")["result"]
            else:
                result = api(prom, "query_range", query=expr, start=f"{start:.3f}",
                             end=f"{end:.3f}", step=step)["result"]
            data[(int(panel["id"]), target["refId"])] = series_from_prometheus(result)
    return data


def render_dashboards(prom: str, out_dir: Path, builtins: dict[str, str], start: float,
                      end: float) -> list[Path]:
    """Every shipped dashboard drawn from this Prometheus over [start, end] as
    `<out_dir>/<uid>.svg` (`$__range` is that window)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    window = {**builtins, "__range": f"{max(1, round(end - start))}s"}
    written: list[Path] = []
    for dashboard in load_dashboards().values():
        svg = render_dashboard(dashboard, panel_series(prom, dashboard, window, start, end),
                               start, end)
        path = out_dir / f"{dashboard['uid']}.svg"
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written
