"""e2e fixtures: both services as real processes (two router replicas behind one gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support import (
    MASTER_KEY,
    UPSTREAM_ENV,
    Service,
    free_port,
    start_service,
    wait_http,
    wait_port,
    write_catalog,
)


@dataclass
class Deployment:
    base_url: str
    routers: list[Service]
    gateway: Service
    upstream: FakeOpenAI


def router_env(catalog: Path, port: int) -> dict[str, str]:
    return {**UPSTREAM_ENV, "XROUTER_MASTER_KEY": MASTER_KEY, "XROUTER_CATALOG": str(catalog),
            "XROUTER_ROUTER_LISTEN": f"127.0.0.1:{port}", "XROUTER_ROUTER_METRICS_PORT": "0",
            "XROUTER_SHUTDOWN_GRACE": "10", "XROUTER_ATTEMPT_TIMEOUT": "5"}


def launch(tmp: Path, upstream: FakeOpenAI, replicas: int) -> Deployment:
    catalog = write_catalog(tmp, upstream.base_url)
    routers: list[Service] = []
    ports = []
    for i in range(replicas):
        port = free_port()
        ports.append(port)
        routers.append(start_service("xrouter_router", router_env(catalog, port),
                                     tmp / f"router{i}.log"))
    for port, service in zip(ports, routers, strict=True):
        wait_port(port, service=service)
    base, gateway = start_gateway(tmp, ports)
    return Deployment(base + "/v1", routers, gateway, upstream)


def start_gateway(tmp: Path, ports: list[int]) -> tuple[str, Service]:
    """A gateway process over the routers on `ports`, ready: its base URL and its process."""
    gw_port = free_port()
    gateway = start_service("xrouter_gateway", {
        "XROUTER_GATEWAY_PORT": str(gw_port),
        "XROUTER_ROUTER_TARGET": ",".join(f"127.0.0.1:{p}" for p in ports),
        # Errors before the first token are plain HTTP errors even on a loaded machine.
        "XROUTER_SSE_COMMIT_AFTER": "5", "XROUTER_SSE_KEEPALIVE": "0.5",
    }, tmp / "gateway.log")
    base = f"http://127.0.0.1:{gw_port}"
    wait_http(f"{base}/readyz", service=gateway)
    return base, gateway


def shutdown(dep: Deployment) -> None:
    for service in [dep.gateway, *dep.routers]:
        service.kill(15)


@pytest.fixture(scope="module")
def module_upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory,
               module_upstream: FakeOpenAI) -> Iterator[Deployment]:
    dep = launch(tmp_path_factory.mktemp("e2e"), module_upstream, replicas=2)
    yield dep
    shutdown(dep)


@pytest.fixture
def fresh_deployment(tmp_path: Path, upstream: FakeOpenAI) -> Iterator[Deployment]:
    """A deployment of its own, for tests that kill parts of it."""
    dep = launch(tmp_path, upstream, replicas=2)
    yield dep
    shutdown(dep)
