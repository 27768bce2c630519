"""A router SIGKILLed under a request, in the cluster mode (PostgreSQL HA + Redis Cluster): two
router processes behind one gateway process. Each router reaches its own fake upstream (the
same deployment, priced the same), so the fake that holds a request names the router serving
it; the fake holds on an event (fake-hold) until the test has killed that router.

In the embedded mode there is one router (SQLite per process): nothing can conclude its
streams for it, so a stream it dies in ends with the same error chunk and, if it had not
recorded the generation, no record (docs/accounts.md)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from tests.e2e.conftest import router_env, start_gateway
from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.conftest import AUTH
from tests.support import Service, catalog_toml, free_port, start_service, wait_port
from xrouter_router.storage.sql.migrate import migrate

PROMPT = "tell me about the weather in Moscow today"
MAX_TOKENS = 64
# The hold model's price (RUB per million tokens) and the VAT on top of it.
PROMPT_PRICE, COMPLETION_PRICE, VAT = Decimal(1000), Decimal(2000), Decimal("0.22")
# The generation's record and its charge reach PostgreSQL through the ledger consumer; bound
# on a loaded 2-core machine, not a speed expectation.
SETTLED_BOUND = 30.0
LOST = {"code": "router_lost", "metadata": {},
        "message": "The router serving this stream failed; the answer may be incomplete"}
HOLD_MODEL = f"""
[[models]]
id = "test/hold"
name = "test/hold"
  [[models.deployments]]
  provider = "fake"
  upstream_model = "fake-hold"
  capabilities = ["streaming"]
  price = {{ prompt = "{PROMPT_PRICE}", completion = "{COMPLETION_PRICE}" }}
  context_length = 16000
"""


@dataclass
class Rig:
    url: str
    fakes: list[FakeOpenAI]
    routers: list[Service]
    database: str
    account: str
    key: str

    def served_by(self) -> int:
        """The replica whose fake got the hold model (each router has a fake of its own)."""
        got = [i for i, f in enumerate(self.fakes) if "fake-hold" in f.models_called()]
        assert len(got) == 1, got
        return got[0]

    def records(self, generation_id: str) -> list[tuple[str, Decimal, int, str]]:
        with psycopg.connect(self.database, autocommit=True) as conn:
            return list(conn.execute(
                "SELECT status, cost, completion_tokens, finish_reason FROM generations"
                " WHERE id = %s", (generation_id,)))

    def balance(self, http: httpx.Client) -> Decimal:
        resp = http.get(f"{self.url}/v1/credits", headers=AUTH,
                        params={"account_id": self.account})
        return Decimal(str(resp.json()["data"]["balance"]))

    def settled(self, http: httpx.Client, generation_id: str, *, expect: bool = True,
                ) -> tuple[list[tuple[str, Decimal, int, str]], Decimal]:
        """The generation's records and the balance, once a record is there and the balance
        shows its charge (or SETTLED_BOUND has passed; at once when none is expected)."""
        deadline = time.monotonic() + SETTLED_BOUND
        while True:
            rows = self.records(generation_id)
            balance = self.balance(http)
            if not expect or (rows and balance == Decimal(100) - rows[0][1]) \
                    or time.monotonic() > deadline:
                return rows, balance
            time.sleep(0.05)


def worst_case() -> Decimal:
    """The request's worst case on the hold deployment: its prompt's UTF-8 bound (with a
    message's overhead) and MAX_TOKENS, at its prices, with VAT."""
    net = ((len(PROMPT.encode()) + 4) * PROMPT_PRICE + MAX_TOKENS * COMPLETION_PRICE) \
        / Decimal(1_000_000)
    return net * (1 + VAT)


@contextlib.contextmanager
def _running(tmp_path: Path, account: str, envs: list[dict[str, str]],
             ) -> Iterator[tuple[str, str, list[FakeOpenAI], list[Service]]]:
    """Router processes (one per env, each with a fake upstream of its own) behind a gateway
    process, and a key of `account` with 100 RUB: the gateway's URL, the key, the fakes and the
    routers."""
    fakes = [FakeOpenAI().start() for _ in envs]
    for fake in fakes[1:]:
        fake.held = fakes[0].held  # set when any holds a request
    services: list[Service] = []
    try:
        ports = [free_port() for _ in envs]
        for i, (fake, port, env) in enumerate(zip(fakes, ports, envs, strict=True)):
            catalog = tmp_path / f"catalog{i}.toml"
            catalog.write_text(catalog_toml(fake.base_url) + HOLD_MODEL, encoding="utf-8")
            services.append(start_service("xrouter_router", {
                **router_env(catalog, port), "XROUTER_DATA_DIR": str(tmp_path / f"r{i}"),
                **env}, tmp_path / f"router{i}.log"))
        for port, service in zip(ports, services, strict=True):
            wait_port(port, service=service)
        url, gateway = start_gateway(tmp_path, ports)
        services.append(gateway)
        with httpx.Client(timeout=30) as http:
            resp = http.post(f"{url}/v1/keys", headers=AUTH,
                             json={"account_id": account, "tier": "pro"})
            assert resp.status_code == 201, resp.text
            key = resp.json()["key"]
            resp = http.post(f"{url}/v1/credits", headers=AUTH,
                             json={"account_id": account, "amount": "100"})
            assert resp.status_code == 200, resp.text
        yield url, key, fakes, services[:-1]
    finally:
        for service in services:
            service.kill(15)
        for fake in fakes:
            fake.stop()


@pytest.fixture
def rig(tmp_path: Path, postgres_ha: PostgresHA,  # noqa: F811 - the fixture
        redis_cluster: RedisCluster) -> Iterator[Rig]:  # noqa: F811
    name = "x" + uuid.uuid4().hex[:12]
    postgres_ha.create_database(name)
    database = postgres_ha.multi_host(name)
    asyncio.run(migrate(database, wait=10))
    env = {"XROUTER_DATABASE_URL": database, "XROUTER_REDIS_URL": redis_cluster.url,
           "XROUTER_KEY_SECRET": "crash-secret"}
    with _running(tmp_path, name, [env, env]) as (url, key, fakes, routers):
        yield Rig(url, fakes, routers, database, name, key)


def _cut_after_the_answer(url: str, key: str, kill: Callable[[], None],
                          ) -> tuple[str, list[dict[str, object]]]:
    """Streams the hold model until its whole answer came (its upstream then holds), calls
    `kill`, and reads the rest: the generation id and the events after the answer."""
    with httpx.Client(timeout=30) as http, http.stream(
            "POST", f"{url}/v1/chat/completions", json=_body(True),
            headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status_code == 200
        events = _events(resp.iter_lines())
        content = ""
        while content != "echo: " + PROMPT:
            chunk = next(events)
            content += chunk["choices"][0]["delta"].get("content") or ""  # type: ignore[index]
        kill()
        return resp.headers["x-generation-id"], list(events)


def _body(stream: bool) -> dict[str, object]:
    return {"model": "test/hold", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS, "stream": stream}


def _events(lines: Iterator[str]) -> Iterator[dict[str, object]]:
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            yield orjson.loads(line[6:])


def test_a_stream_whose_router_dies_after_some_chunks_is_charged_for_them(rig: Rig) -> None:
    for fake in rig.fakes:
        fake.holding = "finish"

    def kill_the_serving_router() -> None:  # known once the request reached an upstream
        rig.routers[rig.served_by()].kill()

    generation_id, rest = _cut_after_the_answer(rig.url, rig.key, kill_the_serving_router)
    assert rest[0]["error"] == LOST
    with httpx.Client(timeout=30) as http:
        rows, balance = rig.settled(http, generation_id)
    assert len(rows) == 1
    status, cost, completion, finish = rows[0]
    assert (status, finish) == ("router_lost", "")
    assert completion > 0 and Decimal(0) < cost <= worst_case()
    assert balance == Decimal(100) - cost


def test_a_stream_whose_router_dies_before_its_first_chunk_is_retried_and_charged_once(
        rig: Rig) -> None:
    resp = _killed_before_answering(rig, stream=True)
    assert resp.status_code == 200
    chunks = list(_events(iter(resp.text.splitlines())))
    assert "".join(c["choices"][0]["delta"].get("content") or ""  # type: ignore[index]
                   for c in chunks if c["choices"]) == "echo: " + PROMPT
    cost = Decimal(str(chunks[-1]["usage"]["cost"]))  # type: ignore[index]
    with httpx.Client(timeout=30) as http:
        rows, balance = rig.settled(http, resp.headers["x-generation-id"])
    assert [(r[0], r[1]) for r in rows] == [("success", cost)]
    assert balance == Decimal(100) - cost


def test_a_unary_call_whose_router_dies_is_charged_at_most_once(rig: Rig) -> None:
    resp = _killed_before_answering(rig, stream=False)
    with httpx.Client(timeout=30) as http:
        rows, balance = rig.settled(http, resp.headers["x-generation-id"],
                                    expect=resp.status_code == 200)
    if resp.status_code == 200:  # retried on the other replica, with the same generation id
        cost = Decimal(str(resp.json()["usage"]["cost"]))
        assert [(r[0], r[1]) for r in rows] == [("success", cost)]
        assert balance == Decimal(100) - cost
    else:  # failed: the dead router never recorded it (it was waiting for the upstream)
        assert rows == [] and balance == Decimal(100)


def _killed_before_answering(rig: Rig, *, stream: bool) -> httpx.Response:
    """The answer to a request whose router was SIGKILLed while its upstream held the request
    (before any answer); the other replica's upstream answers at once."""
    for fake in rig.fakes:
        fake.holding = "first"
    answer: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(timeout=30) as http:
            answer.append(http.post(f"{rig.url}/v1/chat/completions", json=_body(stream),
                                    headers={"Authorization": f"Bearer {rig.key}"}))

    asking = threading.Thread(target=ask)
    asking.start()
    assert rig.fakes[0].held.wait(30)
    dying = rig.served_by()
    rig.fakes[1 - dying].holding = ""  # a retry is answered
    rig.routers[dying].kill()
    asking.join(30)
    return answer[0]


def test_in_the_embedded_mode_a_stream_whose_router_dies_ends_with_the_same_error(
        tmp_path: Path) -> None:
    """One router: nothing concludes its streams; it had not recorded this one (it was waiting
    for the upstream), so the generation has no record and costs nothing."""
    with _running(tmp_path, "embedded", [{}]) as (url, key, fakes, routers):
        fakes[0].holding = "finish"
        generation_id, rest = _cut_after_the_answer(url, key, routers[0].kill)
    assert rest[0]["error"] == LOST
    # The gateway asked for a conclusion, found no router and said so (read once it stopped).
    log = (tmp_path / "gateway.log").read_text()
    assert "a lost stream's generation could not be concluded" in log
    assert "Traceback" not in log
    with contextlib.closing(sqlite3.connect(tmp_path / "r0" / "xrouter.sqlite3")) as db:
        assert db.execute("SELECT count(*) FROM generations WHERE id = ?",
                          (generation_id,)).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM credit_entries").fetchone() == (1,)  # the top-up
