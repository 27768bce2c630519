"""Helpers shared by the test suites: catalogs, in-process servers, service processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from tests.fakes.openai_upstream import API_KEY
from tests.infra import ports as port_registry
from xrouter_gateway.__main__ import client_options
from xrouter_gateway.app import build_app
from xrouter_gateway.settings import GatewaySettings
from xrouter_router.bootstrap import RouterApp, build
from xrouter_router.domain.vat import DEFAULT_VAT
from xrouter_router.settings import RouterSettings

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "xr-test-master-key"
UPSTREAM_ENV = {"FAKE_UPSTREAM_KEY": API_KEY, "FAKE_WRONG_KEY": "sk-wrong"}


class Clock:
    """A router's wall clock (running_router's `wall`), set by the test: it dates generations
    and so chooses their VAT rate."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gross(net: str | Decimal, at: float | None = None) -> Decimal:
    """What a generation whose catalog (net) price is `net` is charged: with the VAT of the
    default schedule (the tests' routers run on it) at `at` (now). Normalized (no trailing
    zeros), so that it compares equal to a JSON number's text as Decimal."""
    return DEFAULT_VAT.gross(Decimal(net), time.time() if at is None else at).normalize()


def catalog_toml(upstream: str) -> str:
    """The test catalog: every scenario of the fake upstream as a model."""
    def model(mid: str, *deps: tuple[str, str], caps: str = '"streaming"',
              price: str = '{ prompt = "100", completion = "200" }', aliases: str = "",
              price_list: tuple[str, ...] = ()) -> str:
        out = f'\n[[models]]\nid = "{mid}"\nname = "{mid}"\naliases = [{aliases}]\n'
        for i, (provider, upstream_model) in enumerate(deps):
            out += (f'  [[models.deployments]]\n  provider = "{provider}"\n'
                    f'  upstream_model = "{upstream_model}"\n  capabilities = [{caps}]\n'
                    f'  price = {price_list[i] if price_list else price}\n'
                    f'  context_length = 16000\n')
        return out

    text = f"""
[providers.fake]
type = "openai"
base_url = "{upstream}"
api_key_env = "FAKE_UPSTREAM_KEY"

[providers.fake2]
type = "openai"
base_url = "{upstream}"
api_key_env = "FAKE_UPSTREAM_KEY"

[providers.fakebad]
type = "openai"
base_url = "{upstream}"
api_key_env = "FAKE_WRONG_KEY"

[providers.demo]
type = "demo"
word_delay = 0.001
"""
    text += model("xrouter/demo", ("demo", "demo"), price='{ prompt = "0", completion = "0" }',
                  aliases='"demo"', caps='"streaming", "tools", "json_mode"')
    text += model("test/echo", ("fake", "fake-echo"))
    text += model("test/failover", ("fake", "fake-500"), ("fake2", "fake-echo"))
    text += model("test/all-fail", ("fake", "fake-500"), ("fake2", "fake-429"))
    text += model("test/badkey", ("fakebad", "fake-echo"), ("fake2", "fake-echo"))
    text += model("test/rejected", ("fake", "fake-400"), ("fake2", "fake-echo"))
    text += model("test/garbage", ("fake", "fake-garbage"), ("fake2", "fake-echo"))
    text += model("test/tools", ("fake", "fake-tools"), caps='"streaming", "tools"')
    text += model("test/slow", ("fake", "fake-slow"), ("fake2", "fake-echo"))
    text += model("test/slow-only", ("fake", "fake-slow"))
    text += model("test/cut", ("fake", "fake-cut"))
    text += model("test/drip", ("fake", "fake-drip"))
    text += model("test/drip-short", ("fake", "fake-drip-short"))
    text += model("test/delay", ("fake", "fake-delay"))
    # Held upstream (FakeOpenAI.holding = "first") until the test releases it.
    text += model("test/held", ("fake", "fake-hold"))
    text += model("test/no-usage", ("fake", "fake-no-usage"))
    text += model("test/chunks22", ("fake", "fake-chunks-22"))
    text += model("test/json-stream", ("fake", "fake-json-stream"))
    text += model("test/openrouter", ("fake", "fake-openrouter"))
    text += model("test/stream-error", ("fake", "fake-stream-error"))
    text += model("test/buckets", ("fake", "fake-buckets"),
                  price='{ prompt = "100", completion = "200", cache_read = "10", '
                        'cache_write = "125", reasoning = "300" }')
    text += model("test/negative", ("fake", "fake-negative"))
    text += model("test/reasoning", ("fake", "fake-reasoning"))
    text += model("test/drip-reasoning", ("fake", "fake-drip-reasoning"))
    text += model("test/leak-400", ("fake", "fake-leak-400"))
    text += model("test/leak-500", ("fake", "fake-leak-500"), ("fake2", "fake-leak-500"))
    text += model("test/embed", ("fake", "fake-500"), ("fake2", "text-embedding-fake"),
                  caps='"embeddings"', price='{ prompt = "10", completion = "0" }')
    text += model("test/cheap-and-dear", ("fake", "fake-echo"), ("fake2", "fake-echo"),
                  price_list=('{ prompt = "100", completion = "100" }',
                              '{ prompt = "200", completion = "200" }'))
    return text


def extended_catalog(directory: Path, upstream: str, extra: str) -> Path:
    """The test catalog plus `extra` (TOML in which {url} is the upstream's), written to
    directory/catalog.toml."""
    path = directory / "catalog.toml"
    path.write_text(catalog_toml(upstream) + extra.format(url=upstream), encoding="utf-8")
    return path


def write_catalog(directory: Path, upstream: str) -> Path:
    path = directory / "catalog.toml"
    path.write_text(catalog_toml(upstream), encoding="utf-8")
    return path


def minute_margin(margin: float = 15.0) -> float:
    """How long to wait until at least `margin` seconds remain in the current UTC minute. Rate
    windows are calendar minutes: a burst that straddles two gets two windows' worth, so a test
    of an exact per-minute limit starts its burst clear of the boundary."""
    left = 60.0 - time.time() % 60.0
    return 0.0 if left >= margin else left + 0.05


async def clear_of_minute_boundary(margin: float = 15.0) -> None:
    await asyncio.sleep(minute_margin(margin))


def free_port() -> int:
    return port_registry.free_port()  # tests/infra/ports.py: why not the kernel's port 0


def router_settings(catalog: Path, **overrides: object) -> RouterSettings:
    values: dict[str, object] = dict(listen="127.0.0.1:0", catalog_path=catalog,
                                     data_dir=catalog.parent / "data", key_secret="test-secret",
                                     master_key=MASTER_KEY,
                  attempt_timeout=2.0, stream_idle_timeout=5.0, connect_timeout=1.0,
                  max_attempts=5, pool_size=32, shutdown_grace=1.0, metrics_port=0)
    values.update(overrides)
    return RouterSettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_router(settings: RouterSettings, tracer: object = None,
                         wall: Callable[[], float] = time.time) -> AsyncIterator[RouterApp]:
    previous = {k: os.environ.get(k) for k in UPSTREAM_ENV}
    os.environ.update(UPSTREAM_ENV)
    try:
        app = build(settings, registry=CollectorRegistry(), tracer=tracer, wall=wall)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    await app.start()
    try:
        yield app
    finally:
        await app.stop(0.5)


def gateway_settings(router_target: str, **overrides: object) -> GatewaySettings:
    # A stream that fails before its first token must fail within the commit window to be a
    # plain HTTP error, and one that answers must not see keep-alives, however loaded the
    # machine: the window is 5 s here. Tests of the keep-alives set a short one.
    values: dict[str, object] = dict(host="127.0.0.1", port=0, router_target=router_target,
                                     router_retries=2, max_body_bytes=64 * 1024,
                                     request_timeout=10.0, sse_commit_after=5.0,
                                     sse_keepalive=0.2)
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_gateway(settings: GatewaySettings, tracer: object = None) -> AsyncIterator[str]:
    """A real uvicorn server in this loop; yields its base URL."""
    app = build_app(settings, registry=CollectorRegistry(), tracer=tracer)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, loop="none", lifespan="on",
                            access_log=False, log_level="warning", **client_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# ---- processes (e2e) ----------------------------------------------------------------------

@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_service(module: str, env: dict[str, str], log: Path) -> Service:
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    handle = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", module], env=full, stdout=handle,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    return Service(module, proc, log)


def wait_http(url: str, timeout: float = 20.0, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited:\n{service.output()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def wait_port(port: int, timeout: float = 20.0, service: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited:\n{service.output()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout}s")


@contextlib.contextmanager
def services(*items: Service) -> Iterator[None]:
    try:
        yield
    finally:
        for item in items:
            item.kill(signal.SIGTERM)


async def until(check: Callable[[], Awaitable[bool]], bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not await check():
        assert time.monotonic() < deadline, f"no {what} after {bound}s"
        await asyncio.sleep(0.05)
