"""Usage that cannot be gamed: the reservation's prompt bound holds for any script, streamed
reasoning counts like content, and provider counts that cannot be true are recognised."""

from __future__ import annotations

import pytest

from tests.unit.builders import request
from xrouter_router.domain.accounting import (
    PROMPT_SLACK,
    StreamAccumulator,
    implausible,
    utf8_bound,
)
from xrouter_router.domain.billing import prompt_bound
from xrouter_router.domain.types import ChatRequest, Delta, Message, TokenCounts, Tool, ToolCall
from xrouter_router.providers.tokenizer import Cl100kCounter

# The same request in several scripts: chat templates, emoji and CJK are where a character
# ratio undercounts (cl100k: ~2.2 characters a token in Russian, under 1 in Chinese and emoji).
TEXTS = {
    "english": "Hello! Please tell me how request caching works and why it lowers the cost.",
    "russian": "Привет! Расскажи, как работает кэширование запросов и почему оно дешевле.",
    "chinese": "你好！请告诉我大型语言模型中的请求缓存是如何工作的，以及为什么它能降低成本。",
    "emoji": "😀🎉🚀🔥✨" * 12,
    "mixed": "ёжик 刺猬 hedgehog 🦔 " * 8,
}


def _chat(text: str) -> ChatRequest:
    return request("m", text=text)


@pytest.mark.parametrize("script", sorted(TEXTS))
async def test_the_prompt_bound_is_never_below_the_tokenizers_count(script: str) -> None:
    text = TEXTS[script]
    counted = await Cl100kCounter().count([text])
    assert prompt_bound(_chat(text)) >= counted + 4  # the message's framing on top


def test_the_prompt_bound_counts_bytes_framing_tools_calls_and_images() -> None:
    tool = Tool(name="get", description="Погода", parameters_json=b'{"type":"object"}')
    base = ChatRequest(
        generation_id="g", model="m",
        messages=(Message(role="user", content="ёж"),  # 4 bytes
                  Message(role="assistant", tool_calls=(ToolCall(0, "c1", "get", '{"a":1}'),))),
        tools=(tool,), response_format_json=b'{"type":"json_object"}')
    # 4 + (3 + 7) + (3 + 12 + 17) + 22 bytes, and 4 of framing for each of the 2 messages
    assert prompt_bound(base) == 4 + 10 + 32 + 22 + 8


async def test_the_utf8_bound_of_any_script_is_at_least_its_tokens() -> None:
    counter = Cl100kCounter()
    for text in TEXTS.values():
        assert utf8_bound(text) >= await counter.count([text])


@pytest.mark.parametrize(("tokens", "reason"), [
    (TokenCounts(prompt=10, completion=-50), "negative count"),
    (TokenCounts(prompt=-1, completion=5), "negative count"),
    (TokenCounts(prompt=10, completion=5, cached=-3), "negative count"),
    (TokenCounts(prompt=10, completion=5, cached=6, cache_write=5),
     "cache buckets exceed the prompt"),
    (TokenCounts(prompt=10, completion=5, reasoning=6), "reasoning exceeds the completion"),
    (TokenCounts(prompt=10, completion=101), "completion beyond the deployment's max_completion_tokens"),
    (TokenCounts(prompt=10 * 20 + PROMPT_SLACK + 1, completion=5),
     "prompt beyond ten times its byte bound"),
    (TokenCounts(prompt=10 * 20 + PROMPT_SLACK, completion=100, cached=100, cache_write=100,
                 reasoning=100), ""),
    (TokenCounts(), ""),
])
def test_implausible_counts_are_named(tokens: TokenCounts, reason: str) -> None:
    assert implausible(tokens, prompt_bound=20, max_completion=100) == reason


def test_the_accumulator_counts_reasoning_content_and_arguments_in_bytes() -> None:
    acc = StreamAccumulator()
    acc.add(Delta(reasoning="думаю"))  # 10 bytes
    acc.add(Delta(content="ok", tool_calls=(ToolCall(0, "c", "f", '{"x":1}'),)))  # 2 + 7
    acc.add(Delta(index=1, reasoning="hm"))
    assert acc.bytes == 10 + 9 + 2
    assert acc.completion_text() == "думаюhmok{\"x\":1}"
    # Reasoning is not part of the message.
    assert acc.message() == Message(role="assistant", content="ok",
                                    tool_calls=(ToolCall(0, "c", "f", '{"x":1}'),))
