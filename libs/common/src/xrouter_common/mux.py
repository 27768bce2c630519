"""What both ends of the Multiplex stream share: how ready frames are cut into messages. Every
frame ready when a side writes goes in one message, up to BATCH_BYTES (a frame larger than
that goes alone): a message must stay under the channel's 64 MiB limit however many large
requests or answers are ready at once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

BATCH_BYTES = 4 * 1024 * 1024


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
