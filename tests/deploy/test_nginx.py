"""deploy/nginx/api.xrouter.ru.conf, run by the real nginx over TLS in front of a real gateway and
router (processes, the demo model): completions, unbuffered SSE, the body limit, /metrics kept
local, the HTTP side. Plus the values that must agree with the services' own settings."""

from __future__ import annotations

import gzip
import json
import shutil
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from tests.deploy.nginx_site import NGINX, Nginx, prepare, seconds, site_directive
from tests.e2e.conftest import router_env
from tests.support import (
    MASTER_KEY,
    free_port,
    services,
    start_service,
    wait_http,
    wait_port,
)
from xrouter_gateway.errors import APIError
from xrouter_gateway.settings import GatewaySettings

WORD_DELAY = 0.05
CATALOG = f"""
[providers.demo]
type = "demo"
word_delay = {WORD_DELAY}

[[models]]
id = "xrouter/demo"
name = "Demo"
aliases = ["demo"]

  [[models.deployments]]
  provider = "demo"
  upstream_model = "demo"
  capabilities = ["streaming"]
  price = {{ prompt = "0", completion = "0" }}
  context_length = 8192
"""
TWENTY = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen twenty")
TEN_MIB = 10 * 1024 * 1024


# ---- the values that must match the services ----------------------------------------------------

def test_timeouts_and_limits_agree_with_the_gateway_defaults() -> None:
    defaults = GatewaySettings.from_env({})
    assert site_directive("client_max_body_size") == ["10m"]
    assert defaults.max_body_bytes == 10 * 1024 * 1024  # nginx's 10m
    assert [seconds(v) for v in site_directive("proxy_read_timeout")] == [620.0]
    assert seconds(site_directive("proxy_read_timeout")[0]) > defaults.request_timeout
    assert seconds(site_directive("proxy_send_timeout")[0]) > defaults.request_timeout
    # nginx must drop idle upstream connections before uvicorn does, or requests race a close.
    uvicorn_keepalive = uvicorn.Config(app="unused:app").timeout_keep_alive
    assert seconds(site_directive("keepalive_timeout")[0]) < uvicorn_keepalive


def test_streaming_directives() -> None:
    assert site_directive("proxy_buffering") == ["off"]
    assert site_directive("proxy_cache") == ["off"]
    assert site_directive("proxy_http_version") == ["1.1"]
    assert 'Connection ""' in site_directive("proxy_set_header")
    assert site_directive("proxy_ignore_headers") == []  # X-Accel-Buffering stays honoured
    assert site_directive("gzip_types") == ["application/json"]


# ---- the running stack ---------------------------------------------------------------------------

@dataclass
class Stack:
    nginx: Nginx
    gateway: str
    tls: ssl.SSLContext

    def client(self, local_address: str = "127.0.0.1") -> httpx.Client:
        transport = httpx.HTTPTransport(verify=self.tls, local_address=local_address)
        return httpx.Client(base_url=self.nginx.https, transport=transport, timeout=20.0,
                            headers={"Authorization": f"Bearer {MASTER_KEY}"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not NGINX.exists():
        pytest.skip("nginx is not installed (scripts/apt-install.sh nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed for the test certificate)")
    tmp = tmp_path_factory.mktemp("nginx-stack")
    catalog = tmp / "catalog.toml"
    catalog.write_text(CATALOG, encoding="utf-8")
    router_port, gateway_port = free_port(), free_port()
    router = start_service("xrouter_router", {**router_env(catalog, router_port),
                                              "XROUTER_DATA_DIR": str(tmp / "data")}, tmp / "router.log")
    # The gateway's own limit is far above nginx's, so a 413 below can only come from nginx.
    gateway = start_service("xrouter_gateway", {
        "XROUTER_GATEWAY_PORT": str(gateway_port), "XROUTER_ROUTER_TARGET": f"127.0.0.1:{router_port}",
        "XROUTER_MAX_BODY_BYTES": str(8 * TEN_MIB), "XROUTER_SSE_COMMIT_AFTER": "0.3",
        "XROUTER_ACCESS_LOG": "false"}, tmp / "gateway.log")
    with services(gateway, router):
        wait_port(router_port, service=router)
        base = f"http://127.0.0.1:{gateway_port}"
        wait_http(f"{base}/readyz", service=gateway)
        nginx = prepare(gateway_port)
        try:
            nginx.start()
            wait_port(nginx.https_port)
            tls = ssl.create_default_context(cafile=str(nginx.prefix / "tls" / "fullchain.pem"))
            yield Stack(nginx, base, tls)
        finally:
            nginx.stop()


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": "demo", "messages": [{"role": "user", "content": content}], **extra}


def test_nginx_accepts_the_rendered_config(stack: Stack) -> None:
    done = stack.nginx.check()
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    assert [line for line in done.stderr.splitlines() if "[warn]" in line or "[emerg]" in line] == []


def test_completion_through_nginx_matches_the_gateway(stack: Stack) -> None:
    with stack.client() as client:
        proxied = client.post("/v1/chat/completions", json=chat("Привет!"))
    direct = httpx.post(f"{stack.gateway}/v1/chat/completions", json=chat("Привет!"), timeout=20.0,
                        headers={"Authorization": f"Bearer {MASTER_KEY}"})
    assert proxied.status_code == 200, proxied.text
    body = proxied.json()
    assert body["choices"][0]["message"]["content"] == (
        "Hello from the XRouter demo model! You said: «Привет!»")
    assert sorted(body) == sorted(direct.json())
    assert proxied.headers["x-generation-id"] == body["id"]
    assert proxied.headers["strict-transport-security"] == "max-age=63072000"


def test_stream_arrives_event_by_event(stack: Stack) -> None:
    arrivals: list[tuple[float, str]] = []
    with stack.client() as client, client.stream(
            "POST", "/v1/chat/completions", json=chat(TWENTY, stream=True),
            headers={"Accept-Encoding": "gzip"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in response.headers  # gzip would buffer the events
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line.removeprefix("data: ")))
    assert arrivals[-1][1] == "[DONE]"
    events = [json.loads(data) for _, data in arrivals[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])
    assert text == f"Hello from the XRouter demo model! You said: «{TWENTY}»"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 28
    # 28 words, 27 pauses of WORD_DELAY: buffered, every event would arrive at the same instant.
    content_times = [t for (t, _), c in zip(arrivals, events, strict=False) if c["choices"]]
    assert content_times[-1] - content_times[0] >= 27 * WORD_DELAY * 0.75


def test_json_is_compressed(stack: Stack) -> None:
    with stack.client() as client, client.stream(
            "GET", "/openapi.json", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["openapi"].startswith("3.1")


def test_body_over_the_limit_gets_the_api_error_shape(stack: Stack) -> None:
    payload = json.dumps(chat("big")).encode()
    with stack.client() as client:
        too_big = client.post("/v1/chat/completions", content=payload + b" " * (TEN_MIB + 1 - len(payload)),
                              headers={"Content-Type": "application/json"})
        just_fits = client.post("/v1/chat/completions", content=payload + b" " * (TEN_MIB - len(payload)),
                                headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == "application/json"
    expected = APIError(413, f"Request body is larger than {TEN_MIB} bytes")
    assert too_big.json() == {"error": expected.body()}
    assert just_fits.status_code == 200, just_fits.text
    assert just_fits.json()["choices"][0]["message"]["content"].endswith("«big»")


def test_metrics_only_from_this_host(stack: Stack) -> None:
    with stack.client() as local:
        assert local.get("/metrics").status_code == 200
    with stack.client(local_address="127.0.0.2") as remote:
        assert remote.get("/metrics").status_code == 403
        assert remote.get("/v1/models").status_code == 200


def test_port_80_redirects_and_serves_acme_challenges(stack: Stack) -> None:
    token = stack.nginx.prefix / "www" / ".well-known" / "acme-challenge" / "tok3n"
    token.write_text("tok3n.thumbprint")
    token.chmod(0o644)
    plain = httpx.Client(base_url=stack.nginx.http, headers={"Host": "api.xrouter.ru"})
    with plain:
        redirect = plain.get("/v1/models?x=1")
        challenge = plain.get("/.well-known/acme-challenge/tok3n")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "https://api.xrouter.ru/v1/models?x=1"
    assert challenge.status_code == 200 and challenge.text == "tok3n.thumbprint"

