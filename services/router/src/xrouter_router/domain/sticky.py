"""Prompt-cache affinity (sticky routing, as OpenRouter does it): a request whose prompt prefix a
deployment served a moment ago goes back to that deployment, whose provider-side cache holds the
prefix, for `ttl` seconds, unless the client's `provider` preferences order the route itself.

The prefix is every message but the last one (the part a cache can hold) with the tools; a
one-message request has none and is routed as usual. Entries are bounded (least recently used
first out), so distinct prompts cannot grow the router's memory."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence

from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.types import ChatRequest


def prefix_key(request: ChatRequest) -> bytes | None:
    """A digest of the request's cacheable prefix (model, tools, every message but the last),
    or None when there is no prefix to keep warm or the client orders the route itself."""
    prefs = request.provider
    if len(request.messages) < 2 or prefs.order or prefs.sort:
        return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(request.model.encode())
    for tool in request.tools:
        digest.update(b"\x00t" + tool.name.encode() + b"\x00" + tool.parameters_json)
    for message in request.messages[:-1]:
        digest.update(b"\x00m" + message.role.encode() + b"\x00" + message.text().encode())
        for call in message.tool_calls:
            digest.update(b"\x00c" + call.name.encode() + b"\x00" + call.arguments.encode())
    return digest.digest()


class StickyRoutes:
    """The deployment that last served each prefix, for `ttl` seconds; at most `size` entries."""

    def __init__(self, *, ttl: float = 300.0, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._served: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._served)

    @property
    def enabled(self) -> bool:
        """False when affinity is off: then no request's prefix needs hashing."""
        return self._size > 0

    def remember(self, key: bytes | None, deployment_id: str) -> None:
        if key is None or self._size <= 0:
            return
        self._served[key] = (deployment_id, self._clock() + self._ttl)
        self._served.move_to_end(key)
        while len(self._served) > self._size:
            self._served.popitem(last=False)

    def prefer(self, key: bytes | None, candidates: Sequence[Candidate],
               healthy: Collection[str]) -> tuple[Candidate, ...]:
        """`candidates` with the deployment that served `key` first, while it is remembered,
        among the candidates and healthy; otherwise unchanged."""
        entry = self._served.get(key) if key is not None else None
        if entry is None:
            return tuple(candidates)
        deployment_id, until = entry
        if until <= self._clock():
            del self._served[key]  # type: ignore[arg-type]
            return tuple(candidates)
        chosen = next((i for i, c in enumerate(candidates)
                       if c.deployment.id == deployment_id and c.model is candidates[0].model), -1)
        if chosen <= 0 or deployment_id not in healthy:
            return tuple(candidates)
        return (candidates[chosen], *candidates[:chosen], *candidates[chosen + 1:])
