"""The chaos drill of docs/operations.md under load, through the gateway, on `make run-cluster`'s
topology: a router SIGKILLed under non-streaming and streaming load, then a Redis master
SIGKILLed (the one holding the paying account's credit keys), then the PostgreSQL primary stopped
and its standby promoted. After each, every answer is checked against the ledger in PostgreSQL:
each answered generation recorded once, at its answer's cost (a stream the killed router was
serving: once, as `router_lost`, charged for what it relayed), nothing recorded that was not
answered, and the account charged exactly the sum of its records."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from tests.e2e.run_cluster_support import Started, run_cluster
from tests.infra.postgres_ha import _as_postgres
from tests.infra.redis_cluster import AttachedCluster
from xrouter_router.domain.accounting import MESSAGE_OVERHEAD
from xrouter_router.storage.redis.link import VERSION

ACCOUNT = "drill"
FUNDS = Decimal(100)
MAX_TOKENS = 32
# RUB per million tokens: a worst case of 0.0074 RUB a request, so the outage allowance below
# (per replica) covers every request of a Redis failover with room to spare.
PRICES = ("100", "200")
ALLOWANCE = "50"
VAT = Decimal("1.22")  # prices are net; charges carry the default schedule's 22% (2026 on)
UNARY, STREAMS = 6, 4  # concurrent clients of each kind
# The demo quotes it back: a stream of MAX_TOKENS words, about a second long, so that streams are
# mid-answer on the router that is killed (those are cut, and charged for what they relayed).
PROMPT = " ".join(f"word{i}" for i in range(40))
# A request's reservation (billing.prompt_bound: one token a UTF-8 byte, and the role's).
WORST = (Decimal(PRICES[0]) * (len(PROMPT.encode()) + MESSAGE_OVERHEAD)
         + Decimal(PRICES[1]) * MAX_TOKENS) * VAT / 10**6
AFTER = 40  # answers to wait for after each fault (and before it)
CATALOG = f"""
[providers.demo]
type = "demo"
jurisdiction = "ru"
word_delay = 0.03

[[models]]
id = "xrouter/demo"
aliases = ["demo"]

  [[models.deployments]]
  provider = "demo"
  upstream_model = "demo"
  context_length = 8192
  max_completion_tokens = 1024
  capabilities = ["streaming"]
  price = {{ prompt = "{PRICES[0]}", completion = "{PRICES[1]}" }}
"""


@dataclass
class Answer:
    stream: bool
    status: int
    generation_id: str
    cost: Decimal | None = None  # from the usage the client got (None: a cut stream)
    tokens: tuple[int, int] = (0, 0)
    error: dict[str, Any] | None = None  # a stream's error chunk
    content: str = ""


@dataclass
class Load:
    """Closed-loop clients, unary and streaming, until stop(); `wait_for(n)` returns once n more
    answers than now have come."""

    base: str
    key: str
    answers: list[Answer] = field(default_factory=list)
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, more: int, bound: float = 120.0) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiters.append((len(self.answers) + more, done))
        await asyncio.wait_for(done, bound)

    def _answered(self, answer: Answer) -> None:
        self.answers.append(answer)
        for target, done in list(self._waiters):
            if len(self.answers) >= target and not done.done():
                done.set_result(None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        self._stop.clear()
        async with httpx.AsyncClient(timeout=60) as http:
            clients = [asyncio.ensure_future(self._client(http, stream=False))
                       for _ in range(UNARY)]
            clients += [asyncio.ensure_future(self._client(http, stream=True))
                        for _ in range(STREAMS)]
            try:
                yield self
            finally:
                self._stop.set()
                await asyncio.gather(*clients)

    async def _client(self, http: httpx.AsyncClient, *, stream: bool) -> None:
        body = {"model": "demo", "max_tokens": MAX_TOKENS, "stream": stream,
                "messages": [{"role": "user", "content": PROMPT}]}
        headers = {"Authorization": f"Bearer {self.key}"}
        while not self._stop.is_set():
            url = f"{self.base}/v1/chat/completions"
            if not stream:
                resp = await http.post(url, headers=headers, json=body)
                answer = Answer(False, resp.status_code, resp.headers.get("x-generation-id", ""))
                if resp.status_code == 200:
                    usage = resp.json()["usage"]
                    answer.cost = Decimal(str(usage["cost"]))
                    answer.tokens = (usage["prompt_tokens"], usage["completion_tokens"])
                self._answered(answer)
                continue
            async with http.stream("POST", url, headers=headers, json=body) as resp:
                answer = Answer(True, resp.status_code, resp.headers.get("x-generation-id", ""))
                async for line in resp.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        _read_chunk(answer, orjson.loads(line[6:]))
            self._answered(answer)


def _read_chunk(answer: Answer, chunk: dict[str, Any]) -> None:
    if "error" in chunk:
        answer.error = chunk["error"]
    for choice in chunk.get("choices") or []:
        answer.content += choice.get("delta", {}).get("content") or ""
    usage = chunk.get("usage")
    if usage and answer.error is None:
        answer.cost = Decimal(str(usage["cost"]))
        answer.tokens = (usage["prompt_tokens"], usage["completion_tokens"])


@dataclass
class Drill:
    started: Started
    http: httpx.AsyncClient
    key: str
    load: Load

    @property
    def state(self) -> dict[str, Any]:
        return self.started.state

    async def master(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, f"{self.state['base_url']}{path}", headers={
            "Authorization": f"Bearer {self.state['master_key']}"}, **kwargs)

    async def records(self) -> dict[str, tuple[str, Decimal, int, int]]:
        """id -> (status, cost, prompt tokens, completion tokens) of the account's records,
        failing on any id recorded twice."""
        async with await psycopg.AsyncConnection.connect(self.state["database_url"]) as conn:
            cur = await conn.execute(
                "SELECT id, status, cost, prompt_tokens, completion_tokens FROM generations "
                "WHERE account_id = %s", (ACCOUNT,))
            rows = await cur.fetchall()
        out = {row[0]: (row[1], Decimal(row[2]), int(row[3]), int(row[4])) for row in rows}
        assert len(out) == len(rows), "a generation recorded twice"
        return out

    async def settled(self, bound: float = 60.0) -> dict[str, tuple[str, Decimal, int, int]]:
        """The records once every answer's generation is in PostgreSQL (the consumers write
        them a moment after the answers; `bound` only fails the test if they never do)."""
        wanted = {a.generation_id for a in self.load.answers if a.status == 200}
        deadline = asyncio.get_running_loop().time() + bound
        while True:
            records = await self.records()
            if wanted <= records.keys() or asyncio.get_running_loop().time() > deadline:
                return records
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def drill_on(tmp_path: Path) -> AsyncIterator[Drill]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    with run_cluster(tmp_path, {"XROUTER_CATALOG": str(catalog),
                                "XROUTER_CREDITS_OUTAGE_ALLOWANCE": ALLOWANCE}) as started:
        async with httpx.AsyncClient(timeout=60) as http:
            drill = Drill(started, http, "", Load(started.state["base_url"], ""))
            topped = await drill.master("POST", "/v1/credits",
                                        json={"account_id": ACCOUNT, "amount": str(FUNDS)})
            assert topped.status_code == 200, topped.text
            made = await drill.master("POST", "/v1/keys", json={"account_id": ACCOUNT,
                                                                 "tier": "max"})
            assert made.status_code == 201, made.text
            drill.key = drill.load.key = made.json()["key"]
            yield drill


async def test_the_chaos_drill_under_load_loses_and_duplicates_no_charge(tmp_path: Path) -> None:
    async with drill_on(tmp_path) as drill:
        await _router_sigkill(drill)
        await _check_ledger(drill)
        await _redis_master_sigkill(drill)
        await _check_ledger(drill)
        await _postgres_failover(drill)
        await _check_ledger(drill)


async def _router_sigkill(drill: Drill) -> None:
    async with drill.load.running() as load:
        await load.wait_for(AFTER)
        os.kill(drill.state["routers"][0]["pid"], signal.SIGKILL)
        await load.wait_for(AFTER)
    # Every unary call was answered (retried on the other router when its own died).
    assert {a.status for a in drill.load.answers} == {200}


async def _redis_master_sigkill(drill: Drill) -> None:
    redis = AttachedCluster({int(port): pid for port, pid in
                             drill.state["redis"]["nodes"].items()})
    port = redis.master_of(f"xr:{VERSION}:cr:{{{ACCOUNT}}}")
    before = len(drill.load.answers)
    async with drill.load.running() as load:
        await load.wait_for(AFTER)
        redis.kill_master(port)
        await asyncio.to_thread(redis.wait_failover, 60.0)
        await load.wait_for(AFTER)
    # The account has an outage allowance: no request failed while its shard had no master.
    assert {a.status for a in drill.load.answers[before:]} == {200}
    assert all(a.error is None for a in drill.load.answers[before:])


async def _postgres_failover(drill: Drill) -> None:
    pg = drill.state["postgres"]
    before = len(drill.load.answers)
    async with drill.load.running() as load:
        await load.wait_for(AFTER)
        await asyncio.to_thread(_pg_ctl, pg, 0, "stop", "-m", "immediate")
        await load.wait_for(AFTER)  # answered while there is no primary
        await asyncio.to_thread(_pg_ctl, pg, 1, "promote", "-w")
        await load.wait_for(AFTER)
    assert {a.status for a in drill.load.answers[before:]} == {200}
    assert all(a.error is None for a in drill.load.answers[before:])


def _pg_ctl(pg: dict[str, Any], node: int, *args: str) -> None:
    subprocess.run([*_as_postgres(), pg["pg_ctl"], "-D", pg["data"][node], *args], check=True,
                   capture_output=True, timeout=120)


async def _check_ledger(drill: Drill) -> None:
    answers = drill.load.answers
    records = await drill.settled()
    answered = {a.generation_id: a for a in answers if a.status == 200}
    assert len(answered) == len(answers), "an answer without a generation id, or one twice"
    assert set(records) == set(answered), "recorded without an answer, or answered unrecorded"
    for gen_id, answer in answered.items():
        status, cost, prompt, completion = records[gen_id]
        if answer.error is not None:  # a stream its router was serving when it died
            assert answer.stream
            assert answer.error["code"] == "router_lost", answer.error
            # Charged for the prompt and the relayed text as our tokenizer counts them (none
            # when only the role chunk had come), at most the request's worst case: its
            # reservation, from the prompt's UTF-8 bound and max_tokens, VAT included.
            assert status == "router_lost" and prompt > 0 and (completion > 0) == (
                answer.content != "")
            assert Decimal(0) < cost <= WORST, (cost, WORST)
            continue
        assert (status, cost, (prompt, completion)) == ("success", answer.cost, answer.tokens)
    charged = sum((r[1] for r in records.values()), Decimal(0))
    deadline = asyncio.get_running_loop().time() + 60
    while True:  # the charges reach PostgreSQL with the records
        credits = (await drill.master("GET", "/v1/credits",
                                      params={"account_id": ACCOUNT})).json()["data"]
        if Decimal(str(credits["balance"])) == FUNDS - charged:
            break
        assert asyncio.get_running_loop().time() < deadline, (credits, charged)
        await asyncio.sleep(0.1)
    async with await psycopg.AsyncConnection.connect(drill.state["database_url"]) as conn:
        assert await (await conn.execute("SELECT * FROM xrouter_reconcile()")).fetchall() == []
