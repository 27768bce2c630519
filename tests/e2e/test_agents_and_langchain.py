"""The clients people build with, unmodified, against both services as processes and the demo
model: the OpenAI Agents SDK (Responses API, a function tool round trip) and LangChain's
ChatOpenAI with structured output."""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.e2e.conftest import Deployment
from tests.support import MASTER_KEY

pytestmark = pytest.mark.e2e

called: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    called.append(city)
    return f"sunny in {city}"


def test_an_agent_with_a_function_tool_runs_to_completion(deployment: Deployment) -> None:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI's servers

    async def run() -> str:
        async with AsyncOpenAI(base_url=deployment.base_url, api_key=MASTER_KEY,
                               max_retries=0) as client:
            agent = Agent(name="forecaster", instructions="Answer with the tool's words.",
                          tools=[get_weather],
                          model=OpenAIResponsesModel(model="demo", openai_client=client))
            result = await Runner.run(agent, "What is the weather in Moscow?")
            return str(result.final_output)

    called.clear()
    assert asyncio.run(run()) == "The tool get_weather answered: sunny in demo"
    assert called == ["demo"]


class Rating(BaseModel):
    answer: str
    score: int
    certain: bool


def test_langchain_structured_output(deployment: Deployment) -> None:
    llm = ChatOpenAI(model="demo", base_url=deployment.base_url, api_key=MASTER_KEY,  # type: ignore[arg-type]
                     max_retries=0, timeout=20)
    rating = llm.with_structured_output(Rating).invoke("Rate XRouter")
    assert rating == Rating(answer="demo", score=1, certain=True)
    reply = llm.invoke("Привет!")
    assert reply.content == "Hello from the XRouter demo model! You said: \u00abПривет!\u00bb"
