"""The router's request line is made once the task that answers ends, so that making it never
delays the answer (Multiplexer._run queues the answer's frame before its task ends)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast

import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_router.domain.service import ChatService
from xrouter_router.transport.servicer import RouterServicer, _Meta

pytestmark = pytest.mark.asyncio


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records  # type: ignore[attr-defined]
            if r.name == "xrouter.router" and r.getMessage() == "rpc"]


def log_one(servicer: RouterServicer) -> None:
    servicer._log("Chat", _Meta(request_id="req-1"),
                  pb.ChatRequest(model="test/echo", generation_id="gen-1"),
                  started=time.perf_counter(), outcome="success",
                  served=("test/echo", "fake", 1))


async def test_the_line_is_made_when_the_answering_task_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xrouter.router")
    servicer = RouterServicer(cast(ChatService, None), [])
    seen_in_task: list[int] = []
    ended = asyncio.Event()

    async def answer() -> None:
        log_one(servicer)
        # A task's done callbacks run in the order they were added: this one after the line.
        current = asyncio.current_task()
        assert current is not None
        current.add_done_callback(lambda _: ended.set())
        await asyncio.sleep(0)  # the task goes on: still no line
        seen_in_task.append(len(request_lines(caplog)))

    asyncio.create_task(answer())  # noqa: RUF006 - awaited through `ended`
    await ended.wait()
    assert seen_in_task == [0]
    lines = request_lines(caplog)
    assert len(lines) == 1
    assert {k: lines[0][k] for k in ("rpc", "generation_id", "request_id", "model", "provider",
                                     "attempts", "outcome")} == {
        "rpc": "Chat", "generation_id": "gen-1", "request_id": "req-1", "model": "test/echo",
        "provider": "fake", "attempts": 1, "outcome": "success"}


async def test_outside_a_task_the_line_is_made_at_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="xrouter.router")
    loop = asyncio.get_running_loop()
    counted: asyncio.Future[list[int]] = loop.create_future()

    def callback() -> None:  # a plain callback of the loop: no current task
        log_one(RouterServicer(cast(ChatService, None), []))
        log_one(RouterServicer(cast(ChatService, None), [], request_log=False))
        counted.set_result([len(request_lines(caplog))])
    loop.call_soon(callback)
    assert await counted == [1]
