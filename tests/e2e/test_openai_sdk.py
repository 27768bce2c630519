"""Both services as processes, driven by the official `openai` SDK, as a user would."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterable
from typing import cast

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from tests.e2e.conftest import Deployment
from tests.fakes.openai_upstream import TOOL_ARGS
from tests.support import MASTER_KEY

pytestmark = pytest.mark.e2e


def client(dep: Deployment, key: str = MASTER_KEY) -> OpenAI:
    return OpenAI(base_url=dep.base_url, api_key=key, max_retries=0, timeout=20)


def test_non_streaming_demo_and_upstream(deployment: Deployment) -> None:
    c = client(deployment)
    reply = c.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Привет!"}])
    assert reply.choices[0].message.content == "Hello from the XRouter demo model! You said: «Привет!»"
    assert reply.model == "xrouter/demo"
    assert reply.usage is not None and reply.usage.completion_tokens == 9
    reply = c.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "ok"}])
    assert reply.choices[0].message.content == "echo: ok"
    assert reply.id.startswith("gen-")


def test_streaming_with_usage(deployment: Deployment) -> None:
    c = client(deployment)
    stream = c.chat.completions.create(model="demo", stream=True,
                                       messages=[{"role": "user", "content": "stream please"}])
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from the XRouter demo model! You said: «stream please»"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10
    assert len({ch.id for ch in chunks}) == 1


def test_tool_call_round_trip(deployment: Deployment) -> None:
    c = client(deployment)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Moscow?"}]
    reply = c.chat.completions.create(model="test/tools", messages=messages, tools=tools)  # type: ignore[arg-type]
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Moscow", "unit": "celsius"}  # type: ignore[union-attr]
    stream = c.chat.completions.create(model="test/tools", messages=messages,  # type: ignore[arg-type]
                                       tools=tools, stream=True)  # type: ignore[arg-type]
    args = "".join(tc.function.arguments or "" for ch in cast(Iterable[ChatCompletionChunk], stream)
                   if ch.choices
                   for tc in (ch.choices[0].delta.tool_calls or []) if tc.function)
    assert args == TOOL_ARGS
    messages += [reply.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp": -3}'}]
    final = c.chat.completions.create(model="test/echo", messages=messages)  # type: ignore[arg-type]
    assert final.choices[0].message.content == "echo: Weather in Moscow?"


def test_sdk_sees_documented_errors(deployment: Deployment) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client(deployment).chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert nf.value.status_code == 404
    with pytest.raises(openai.AuthenticationError):
        client(deployment, key="wrong").chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as bad:
        client(deployment).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], temperature=9)
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]


def test_router_sigkill_mid_run_loses_no_request(fresh_deployment: Deployment) -> None:
    dep = fresh_deployment
    c = OpenAI(base_url=dep.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    failures: list[str] = []
    done = [0]
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                r = c.chat.completions.create(model="test/delay",
                                              messages=[{"role": "user", "content": "x"}])
                assert r.choices[0].message.content == "echo: x"
                done[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                failures.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    def until_done(count: int) -> None:
        deadline = time.monotonic() + 60
        while done[0] < count and not failures:
            assert time.monotonic() < deadline, f"{done[0]} of {count} requests after 60 s"
            time.sleep(0.01)

    try:
        until_done(20)  # the load runs through both routers
        before = done[0]
        dep.routers[0].kill(signal.SIGKILL)
        until_done(before + 20)  # and goes on through the survivor
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert before >= 20 and done[0] >= before + 20


def test_sigterm_lets_an_inflight_stream_finish(fresh_deployment: Deployment) -> None:
    dep = fresh_deployment
    dep.routers[1].kill(signal.SIGKILL)  # one replica left: the stream must be on router 0
    c = client(dep)
    stream = c.chat.completions.create(model="test/drip-short", stream=True,
                                       messages=[{"role": "user", "content": "x"}])
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    dep.routers[0].proc.send_signal(signal.SIGTERM)
    rest = list(chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in rest if ch.choices)
    assert text == "".join(f" t{i}" for i in range(20)) + "echo: x"
    assert rest[-1].usage is not None
    assert dep.routers[0].proc.wait(15) == 0
    with pytest.raises(openai.APIStatusError) as gone:
        c.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    assert gone.value.status_code == 503
