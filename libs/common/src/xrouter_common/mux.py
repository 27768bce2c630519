"""What both ends of the Multiplex stream share: when a side writes, and how ready frames are
cut into messages. Every frame ready when a side writes goes in one message, up to BATCH_BYTES
(a frame larger than that goes alone): a message must stay under the channel's 64 MiB limit
however many large requests or answers are ready at once. While other calls are in flight, a
writer first lets the loop run while its iterations bring more frames (gather()): a message
costs both sides gRPC's fixed work per message and a thread hand-off each way, whatever it
carries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

BATCH_BYTES = 4 * 1024 * 1024
# The router's initial metadata on a Multiplex stream, sent before it reads a frame
# (Multiplexer.handle): the gateway writes its first frame once it has seen this
# (router_mux.Lane). A router without Multiplex
# ends the call at once instead (UNIMPLEMENTED, with no such metadata), and a frame written
# meanwhile could make gRPC report the end as its own "Internal error from Core".
SERVING = (("xrouter-multiplex", "1"),)
# At most this many loop iterations a writer waits for more frames, and it stops at the
# (GATHER_IDLE + 1)th that brought none (docs/performance.md, issue 16's third pass: 5-8% less
# CPU per request in the cluster mode at 16 connections; its seventh: another 4-8%, where the
# answers, each after its own Redis replies, come over more iterations than in the embedded mode).
GATHER_ITERATIONS = 8
GATHER_IDLE = 2


async def gather(ready: Callable[[], int], busy: bool, limit: int = GATHER_ITERATIONS,
                 idle: int = GATHER_IDLE) -> None:
    """Returns after `limit` iterations of the loop, or at the (`idle` + 1)th that brought no
    more frames (`ready()` did not grow); at once when not `busy` (no other call in flight: a
    lone call's frame waits for nothing)."""
    if not busy:
        return
    seen = ready()
    for _ in range(limit):
        await asyncio.sleep(0)
        now = ready()
        if now <= seen:
            if idle <= 0:
                return
            idle -= 1
        seen = now


class Sized(Protocol):
    def ByteSize(self) -> int: ...  # noqa: N802 - protobuf's name


F = TypeVar("F", bound=Sized)


def batches(frames: Sequence[F], limit: int = BATCH_BYTES) -> Iterator[Sequence[F]]:
    """`frames` cut in order into runs under `limit` bytes; none for no frames."""
    if len(frames) <= 1:  # the usual case, without measuring
        if frames:
            yield frames
        return
    start, size = 0, 0
    for i, frame in enumerate(frames):
        n = frame.ByteSize()
        if i > start and size + n > limit:
            yield frames[start:i]
            start, size = i, 0
        size += n
    yield frames[start:]
