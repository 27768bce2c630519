"""POST /v1/responses through a real gateway and router, driven by the official `openai` SDK,
against the demo model (tools, reasoning, structured output) and the fake OpenAI upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI

from tests.integration.conftest import AUTH, Stack
from tests.support import MASTER_KEY

WEATHER: Any = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {
               "city": {"type": "string"}, "days": {"type": "integer"},
               "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
               "required": ["city"]}}
DEEP: dict[str, Any] = {}
for _ in range(100):
    DEEP = {"a": DEEP}
GREETING = "Hello from the XRouter demo model! You said: \u00abПривет!\u00bb"


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{stack.url}/v1", api_key=MASTER_KEY, max_retries=0) as sdk:
        yield sdk


async def test_a_whole_response(stack: Stack, client: AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(model="demo", input="Привет!",
                                                          instructions="Be brief.",
                                                          metadata={"ticket": "42"})
    response = raw.parse()
    assert response.id == raw.headers["x-generation-id"]
    assert raw.headers["x-xrouter-route"].startswith("xrouter/demo@demo")
    assert response.status == "completed" and response.object == "response"
    assert response.output_text == GREETING
    assert [item.type for item in response.output] == ["message"]
    assert response.model == "xrouter/demo" and response.metadata == {"ticket": "42"}
    assert response.instructions == "Be brief."
    usage = response.usage
    assert usage is not None
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (9, 0)
    assert usage.input_tokens > 0 and usage.total_tokens == usage.input_tokens + 9
    generation = (await stack.http.get(f"{stack.url}/v1/generation", headers=AUTH,
                                       params={"id": response.id})).json()["data"]
    assert (generation["model"], generation["tokens_completion"]) == ("xrouter/demo", 9)


async def test_a_streamed_response_is_the_typed_event_sequence(client: AsyncOpenAI) -> None:
    events: list[Any] = [e async for e in await client.responses.create(model="demo", input="Привет!",
                                                                stream=True)]
    kinds = [e.type for e in events]
    words = len(GREETING.split(" "))
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * words,
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == GREETING
    final = events[-1].response
    assert final.output_text == GREETING and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == words
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
    assert item_ids == {final.output[0].id}


async def test_the_sdk_stream_helper_gets_the_final_response(client: AsyncOpenAI) -> None:
    async with client.responses.stream(model="demo", input="Привет!") as stream:
        texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(texts) == final.output_text == GREETING


async def test_a_function_tool_round_trip(client: AsyncOpenAI) -> None:
    asked = "What is the weather in Moscow?"
    first = await client.responses.create(model="demo", input=asked, tools=[WEATHER])
    assert [item.type for item in first.output] == ["function_call"]
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "demo", "days": 1, "unit": "celsius"}
    replay: Any = [
        {"role": "user", "content": asked},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, +3"}]
    second = await client.responses.create(model="demo", tools=[WEATHER], input=replay)
    assert second.output_text == "The tool get_weather answered: sunny, +3"


async def test_a_streamed_function_call(client: AsyncOpenAI) -> None:
    events: list[Any] = [e async for e in await client.responses.create(
        model="demo", input="weather?", tools=[WEATHER], stream=True,
        tool_choice={"type": "function", "name": "get_weather"})]
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    done = events[-2].item
    assert done.type == "function_call" and done.name == "get_weather"
    assert orjson.loads(done.arguments)["city"] == "demo"
    assert events[-1].response.output[0].call_id == done.call_id


async def test_reasoning_comes_back_as_a_reasoning_item(client: AsyncOpenAI) -> None:
    whole = await client.responses.create(model="demo", input="Привет!",
                                          reasoning={"effort": "low"})
    assert [item.type for item in whole.output] == ["reasoning", "message"]
    reasoning = whole.output[0]
    assert reasoning.type == "reasoning" and reasoning.content is not None
    assert reasoning.content[0].text == "The user said \u00abПривет!\u00bb. I will answer in kind."
    assert whole.usage is not None and whole.usage.output_tokens_details.reasoning_tokens == 9
    events: list[Any] = [e async for e in await client.responses.create(
        model="demo", input="Привет!", reasoning={"effort": "low"}, stream=True)]
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == reasoning.content[0].text
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == GREETING


async def test_a_json_schema_answer_conforms(client: AsyncOpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"},
                                               "score": {"type": "number"}},
              "required": ["answer", "score"], "additionalProperties": False}
    response = await client.responses.create(
        model="demo", input="rate it", text={"format": {"type": "json_schema", "name": "rating",
                                                        "schema": schema, "strict": True}})
    assert orjson.loads(response.output_text) == {"answer": "demo", "score": 1}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


@pytest.mark.parametrize(("body", "param", "says"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id", "stateless"),
    ({"store": True}, "store", "stateless"),
    ({"background": True}, "background", "Background"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
    ({"input": None}, "input", "'input' is required"),
    ({"temperature": 3}, "temperature", "<= 2.0"),
    ({"provider": {"max_price": {"prompt": "NaN"}}}, "provider.max_price.prompt", "finite"),
    ({"tools": [{"type": "function", "name": "f", "parameters": DEEP}]}, "tools", "nested"),
    ({"metadata": {"k": "v" * 513}}, "metadata[...]", "length"),
])
async def test_what_the_stateless_api_refuses(stack: Stack, body: dict[str, Any], param: str,
                                              says: str) -> None:
    resp = await stack.http.post(f"{stack.url}/v1/responses", headers=AUTH,
                                 json={"model": "demo", "input": "hi", **body})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert says in error["message"]


async def test_router_errors_reach_the_sdk_as_its_exceptions(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.responses.create(model="ghost/model", input="hi")
    assert missing.value.body["param"] == "model"  # type: ignore[index]
    async with AsyncOpenAI(base_url=str(client.base_url), api_key="sk-wrong",
                           max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.responses.create(model="demo", input="hi")


async def test_an_upstream_model_serves_responses_too(client: AsyncOpenAI) -> None:
    response = await client.responses.create(model="test/echo", input="hello",
                                             max_output_tokens=64)
    assert response.output_text == "echo: hello"
    assert response.usage is not None and response.usage.input_tokens > 0
    events: list[Any] = [e async for e in await client.responses.create(model="test/echo", input="hello",
                                                                stream=True)]
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "echo: hello"


async def test_a_stream_failing_midway_ends_with_response_failed(stack: Stack) -> None:
    async with stack.http.stream("POST", f"{stack.url}/v1/responses", headers=AUTH,
                                 json={"model": "test/cut", "input": "hello",
                                       "stream": True}) as resp:
        assert resp.status_code == 200
        lines = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
    last = orjson.loads(lines[-1][6:])
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "upstream_error"
    assert last["response"]["usage"]["output_tokens"] > 0  # what was streamed is billed


async def test_models_retrieve_takes_ids_with_slashes_and_aliases(client: AsyncOpenAI) -> None:
    assert (await client.models.retrieve("test/echo")).id == "test/echo"
    demo = await client.models.retrieve("demo")
    assert (demo.id, demo.object, demo.owned_by) == ("xrouter/demo", "model", "demo")
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no/such-model")
    listed = [m.id async for m in client.models.list()]
    assert "test/echo" in listed and "xrouter/demo" in listed


async def test_legacy_completions(stack: Stack, client: AsyncOpenAI) -> None:
    whole = await client.completions.create(model="demo", prompt="Привет!")
    assert whole.object == "text_completion"
    assert whole.choices[0].text == GREETING and whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None and whole.usage.completion_tokens == 9
    echoed = await client.completions.create(model="test/echo", prompt="hello", echo=True)
    assert echoed.choices[0].text == "helloecho: hello"
    chunks = [c async for c in await client.completions.create(model="demo", prompt="Привет!",
                                                                 stream=True)]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == GREETING
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    resp = await stack.http.post(f"{stack.url}/v1/completions", headers=AUTH,
                                 json={"model": "demo", "prompt": "x", "suffix": "y"})
    assert (resp.status_code, resp.json()["error"]["param"]) == (400, "suffix")


async def test_chat_completions_show_the_demo_reasoning(stack: Stack) -> None:
    body = {"model": "demo", "messages": [{"role": "user", "content": "Привет!"}],
            "reasoning": {"effort": "high"}}
    whole = (await stack.chat(body)).json()
    message = whole["choices"][0]["message"]
    assert message["reasoning"] == "The user said \u00abПривет!\u00bb. I will answer in kind."
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 9
    hidden = (await stack.chat({**body, "reasoning": {"effort": "high", "exclude": True}})).json()
    assert "reasoning" not in hidden["choices"][0]["message"]
    resp, lines = await stack.stream(body)
    assert resp.status_code == 200
    chunks = [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]
    thought = "".join(c["choices"][0]["delta"].get("reasoning") or "" for c in chunks
                      if c["choices"])
    assert thought == message["reasoning"]


async def test_the_gateway_refuses_an_unknown_route_in_the_shape(stack: Stack) -> None:
    resp = await stack.http.post(f"{stack.url}/v1/responses/resp_1/cancel", headers=AUTH)
    assert resp.status_code in (404, 405)
    assert resp.json()["error"]["code"] == resp.status_code
