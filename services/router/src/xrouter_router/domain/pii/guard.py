"""The guard applied to one request (chat or embeddings): its texts read in a fixed order, the
policy of the key decided against the plan's candidates (block: a 400 before any provider call;
mask: the masked request for each attempt whose provider the policy covers), and a chat answer
restored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from xrouter_router.domain.pii.block import blocked
from xrouter_router.domain.pii.detectors import REGEX_DETECTOR, Detector
from xrouter_router.domain.pii.masking import Masked, mask
from xrouter_router.domain.pii.policy import BLOCK, OFF, PiiPolicy
from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    ContentPart,
    EmbeddingRequest,
    Message,
    ToolCall,
)

R = TypeVar("R", ChatRequest, EmbeddingRequest)


def request_texts(request: ChatRequest) -> list[str]:
    """Every text of the request a provider reads, in the one order with_texts takes them back:
    per message its content or text parts, its reasoning, its tool calls' arguments."""
    texts: list[str] = []
    for m in request.messages:
        if m.content is not None:
            texts.append(m.content)
        texts += [p.text for p in m.parts if p.type == "text"]
        if m.reasoning is not None:
            texts.append(m.reasoning)
        texts += [c.arguments for c in m.tool_calls]
    return texts


def with_texts(request: ChatRequest, texts: Sequence[str]) -> ChatRequest:
    """The request with its texts (in request_texts' order) replaced."""
    it = iter(texts)
    messages: list[Message] = []
    for m in request.messages:
        content = None if m.content is None else next(it)
        parts = tuple(replace(p, text=next(it)) if p.type == "text" else p for p in m.parts)
        reasoning = None if m.reasoning is None else next(it)
        calls = tuple(replace(c, arguments=next(it)) for c in m.tool_calls)
        messages.append(replace(m, content=content, parts=parts, reasoning=reasoning,
                                tool_calls=calls))
    return replace(request, messages=tuple(messages))


@dataclass(frozen=True, slots=True)
class Guarded(Generic[R]):
    """A masked request: the original, what a provider the policy covers gets instead, and the
    mapping that restores its answers (held in this request's memory only)."""

    original: R
    masked: R
    masking: Masked
    policy: PiiPolicy

    def masks(self, cand: Candidate) -> bool:
        """Whether the attempt to `cand` gets the masked request."""
        return self.policy.applies(cand.deployment.jurisdiction)

    def request_for(self, cand: Candidate) -> R:
        return self.masked if self.masks(cand) else self.original

    def restore(self, completion: Completion) -> Completion:
        """A masked attempt's whole answer with the values back (content, reasoning, tool-call
        arguments and text parts)."""
        m, back = completion.message, self.masking.restore
        message = replace(
            m, content=None if m.content is None else back(m.content),
            reasoning=None if m.reasoning is None else back(m.reasoning),
            parts=tuple(_part(p, back(p.text)) for p in m.parts),
            tool_calls=tuple(_call(c, back(c.arguments)) for c in m.tool_calls))
        return replace(completion, message=message)


def sent(request: R, guarded: Guarded[R] | None, cand: Candidate) -> R:
    """The request as the attempt to `cand` sends it: masked when the guard covers it."""
    return request if guarded is None else guarded.request_for(cand)


def _part(part: ContentPart, text: str) -> ContentPart:
    return part if text == part.text else replace(part, text=text)


def _call(call: ToolCall, arguments: str) -> ToolCall:
    return call if arguments == call.arguments else replace(call, arguments=arguments)


class PiiGuard:
    """Decides, per request, what the key's personal-data policy does. `executor`: where the
    detectors run when one of them is slow (the NER model): off the event loop, so that it never
    holds up other requests; the regular expressions alone run inline (well under a millisecond)."""

    def __init__(self, detectors: Sequence[Detector] = (REGEX_DETECTOR,),
                 executor: Executor | None = None) -> None:
        self._detectors = tuple(detectors)
        self._executor = executor

    async def _mask(self, texts: list[str]) -> Masked:
        if self._executor is None:
            return mask(texts, self._detectors)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, mask, texts, self._detectors)

    async def _scan(self, policy: PiiPolicy, texts: list[str], candidates: Sequence[Candidate],
                    param: str) -> Masked | None:
        if policy.guard == OFF or not texts or not any(policy.applies(c.deployment.jurisdiction)
                                                       for c in candidates):
            return None
        masked = await self._mask(texts)
        if not masked.mapping:
            return None
        if policy.guard == BLOCK:
            raise blocked(masked.kinds, param)
        return masked

    async def prepare(self, policy: PiiPolicy, request: ChatRequest,
                      candidates: Sequence[Candidate]) -> Guarded[ChatRequest] | None:
        """None when no attempt needs the guard or the request carries no personal data.
        Raises PersonalDataBlocked (naming the kinds, before any provider call) when the policy
        is block and any candidate the request may reach is one it covers."""
        masked = await self._scan(policy, request_texts(request), candidates, "messages")
        if masked is None:
            return None
        return Guarded(request, with_texts(request, masked.texts), masked, policy)

    async def prepare_embedding(self, policy: PiiPolicy, request: EmbeddingRequest,
                                candidates: Sequence[Candidate]) -> Guarded[EmbeddingRequest] | None:
        """prepare() for embeddings: the inputs are the texts (the vectors of a masked
        input are those of its placeholders; there is nothing to restore)."""
        masked = await self._scan(policy, list(request.inputs), candidates, "input")
        if masked is None:
            return None
        return Guarded(request, replace(request, inputs=masked.texts), masked, policy)
