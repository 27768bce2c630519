"""Whole-answer Chat calls carried on a few long-lived Multiplex streams to the router (issue 16):
a message on an open stream costs both processes less CPU than a gRPC call of its own.

A call behaves as the unary Chat call it replaces: the same metadata and deadline; its failure is
a real `grpc.aio.AioRpcError` with the code, message and `xrouter-error-bin` trailer the router
gave; cancelling it (the client hung up) sends a cancel frame, which cancels the router's work
as a cancelled call would. A stream that breaks fails its calls UNAVAILABLE (RouterClient
retries those on another stream, so on another replica, as it does unary calls). A lane is
retired (no new calls; it closes once its calls are done) when it reaches `max_age` seconds,
so the lanes follow router replicas added since, and when its router refuses a call UNAVAILABLE
(the replica is draining)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter_common.wire import ERROR_DETAIL_KEY

Metadata = Sequence[tuple[str, str]]
METHOD = "/xrouter.v1.Router/Multiplex"


def rpc_error(code: grpc.StatusCode, details: str, detail: bytes = b"") -> grpc.aio.AioRpcError:
    trailers = grpc.aio.Metadata((ERROR_DETAIL_KEY, detail)) if detail else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _failure(end: pb.MuxEnd) -> grpc.aio.AioRpcError:
    return rpc_error(_CODES.get(end.code, grpc.StatusCode.UNKNOWN), end.details, end.error_detail)


class Lane:
    """One Multiplex stream: a writer task sends frames in order (gRPC takes one write at a
    time), a reader task hands each answer to its call by id."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method: grpc.aio.StreamStreamMultiCallable[pb.MuxUp, pb.MuxDown] = channel.stream_stream(
            METHOD, request_serializer=pb.MuxUp.SerializeToString,
            response_deserializer=pb.MuxDown.FromString)
        self._call = method()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.ChatResponse]] = {}
        self._outbox: list[pb.MuxUp] = []
        self._wake = asyncio.Event()
        self.opened = time.monotonic()
        self.retired = False
        self.dead = False
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        self._reader = loop.create_task(self._read())

    @property
    def usable(self) -> bool:
        return not (self.retired or self.dead)

    def retire(self) -> None:
        self.retired = True
        self._wake.set()

    def close(self) -> None:
        self.dead = True
        self._call.cancel()
        self._writer.cancel()

    async def chat(self, request: pb.ChatRequest, metadata: Metadata,
                   timeout: float) -> pb.ChatResponse:
        call_id = next(self._ids)
        answer: asyncio.Future[pb.ChatResponse] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = answer
        self._send(pb.MuxUp(id=call_id, open=pb.MuxOpen(
            request=request, timeout=timeout,
            metadata=[pb.MuxMetadata(key=k, value=v) for k, v in metadata])))
        try:
            async with asyncio.timeout(timeout):
                return await answer
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        finally:
            if self._pending.pop(call_id, None) is not None and not self.dead:
                self._send(pb.MuxUp(id=call_id, cancel=True))

    def _send(self, frame: pb.MuxUp) -> None:
        self._outbox.append(frame)
        self._wake.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                frames, self._outbox = self._outbox, []
                for frame in frames:
                    await self._call.write(frame)
                if self.retired and not self._pending and not self._outbox:
                    await self._call.done_writing()
                    return
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            self._call.cancel()  # the reader sees the stream end and fails the calls

    async def _read(self) -> None:
        failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "The router ended the multiplexed stream")
        try:
            while True:
                frame = await self._call.read()
                if frame is grpc.aio.EOF:
                    break
                down: pb.MuxDown = frame  # type: ignore[assignment]
                answer = self._pending.pop(down.id, None)
                if down.HasField("end") and down.end.code == grpc.StatusCode.UNAVAILABLE.value[0]:
                    self.retire()
                if answer is None or answer.done():
                    continue
                if down.HasField("response"):
                    answer.set_result(down.response)
                else:
                    answer.set_exception(_failure(down.end))
                if self.retired and not self._pending:
                    self._wake.set()
        except grpc.aio.AioRpcError as exc:
            failure = exc if exc.code() == grpc.StatusCode.UNIMPLEMENTED else rpc_error(
                grpc.StatusCode.UNAVAILABLE, f"The multiplexed stream broke: {exc.details()}")
        except asyncio.CancelledError:
            failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "The multiplexed stream was closed")
        finally:
            self.dead = True
            self._writer.cancel()
            pending, self._pending = self._pending, {}
            for answer in pending.values():
                if not answer.done():
                    answer.set_exception(failure)


class LanePool:
    """`size` lanes on one channel, taken in turn; a lane that is retired or dead is replaced
    when next needed."""

    def __init__(self, channel: grpc.aio.Channel, size: int, max_age: float) -> None:
        self._channel = channel
        self._size = size
        self._max_age = max_age
        self._lanes: list[Lane] = []
        self._turn = itertools.count()

    def lane(self) -> Lane:
        now = time.monotonic()
        for lane in self._lanes:
            if lane.usable and now - lane.opened > self._max_age:
                lane.retire()
        self._lanes = [lane for lane in self._lanes if lane.usable]
        if len(self._lanes) < self._size:
            self._lanes.append(Lane(self._channel))
            return self._lanes[-1]
        return self._lanes[next(self._turn) % len(self._lanes)]

    def retire(self) -> None:
        """Every lane takes no new call and closes once its calls are done (a new channel)."""
        for lane in self._lanes:
            lane.retire()
        self._lanes = []

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._lanes = []
