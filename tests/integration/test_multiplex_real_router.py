"""Multiplex streams on the real router (issue 16): a call the gateway cancels on its lane gives
its concurrency slot back, and a router told to stop ends its idle lanes at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support import (
    MASTER_KEY,
    gateway_settings,
    router_settings,
    running_gateway,
    running_router,
    until,
)
from xrouter.v1 import router_pb2 as pb
from xrouter_common.wire import AUTHORIZATION_KEY
from xrouter_gateway.router_client import RouterClient


async def test_the_real_router_frees_a_cancelled_calls_concurrency_slot(
        tmp_path: Path, catalog: Path, upstream: FakeOpenAI) -> None:
    """A key allowed one call at a time: its held call, cancelled by the gateway's client, gives
    its slot back on the router (the next call is admitted, not refused 429)."""
    async with running_router(router_settings(catalog)) as router:
        target = f"127.0.0.1:{router.server.port}"
        async with running_gateway(gateway_settings(target)) as url, \
                httpx.AsyncClient(timeout=15.0) as http:
            auth = {"Authorization": f"Bearer {MASTER_KEY}"}
            topped = await http.post(f"{url}/v1/credits", headers=auth,
                                     json={"account_id": "acct-1", "amount": "10"})
            assert topped.status_code == 200, topped.text
            made = await http.post(f"{url}/v1/keys", headers=auth,
                                   json={"account_id": "acct-1", "tier": "pro", "concurrent": 1})
            assert made.status_code == 201, made.text
            key = made.json()["key"]
        client = RouterClient(target, retries=0, lanes=1)
        meta = ((AUTHORIZATION_KEY, f"Bearer {key}"),)
        request = pb.ChatRequest(model="test/held", generation_id="gen-held-1",
                                 messages=[pb.Message(role="user", content="hi")])
        upstream.holding = "first"
        try:
            held = asyncio.ensure_future(client.chat(request, meta, 10))
            assert await asyncio.to_thread(upstream.held.wait, 10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.chat(pb.ChatRequest(model="test/echo", generation_id="gen-2",
                                                 messages=request.messages), meta, 10)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            held.cancel()

            async def admitted() -> bool:
                try:
                    reply = await client.chat(pb.ChatRequest(
                        model="test/echo", generation_id="gen-3", messages=request.messages),
                        meta, 10)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    return False
                return reply.id == "gen-3"
            await until(admitted, 10, "the cancelled call's slot given back")
        finally:
            upstream.holding = ""
            upstream.release()
            await client.close()


async def test_the_real_router_stopping_ends_its_idle_lanes_at_once(catalog: Path) -> None:
    """The router's composition root hands its Multiplexer to the server: a router told to stop
    with a minute's grace ends an idle lane at once, instead of holding the stop for a minute."""
    async with running_router(router_settings(catalog)) as router:
        client = RouterClient(f"127.0.0.1:{router.server.port}", retries=0, lanes=1)
        try:
            reply = await client.chat(pb.ChatRequest(
                model="test/echo", generation_id="gen-stop-1",
                messages=[pb.Message(role="user", content="hi")]),
                ((AUTHORIZATION_KEY, f"Bearer {MASTER_KEY}"),), 10)
            assert reply.id == "gen-stop-1"
            async with asyncio.timeout(10):
                await router.server.stop(60)
        finally:
            await client.close()
