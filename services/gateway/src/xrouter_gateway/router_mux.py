"""Chat and ChatStream calls carried on a few long-lived Multiplex streams to the router (issue
16): a message on an open stream costs both processes less CPU than a gRPC call of its own.

A call behaves as the gRPC call it replaces: the same metadata and deadline; its failure is a
real `grpc.aio.AioRpcError` with the code, message and `xrouter-error-bin` trailer the router
gave; cancelling it (the client hung up) sends a cancel frame, which cancels the router's work
as a cancelled call would. A streamed call (MuxStream) is read as grpc's UnaryStreamCall is; it
credits events back to the router as they are read (the router sends at most a window ahead, so
a slow client holds the router back as HTTP/2 flow control would). A stream that breaks fails
its calls UNAVAILABLE after the events that came (RouterClient and RouterStream retry those that
had no answer yet on another stream, so on another replica, as they do gRPC calls). A lane is
retired (no new calls; it closes once its calls are done) when it reaches `max_age` seconds,
so the lanes follow router replicas added since, and when its router refuses a call UNAVAILABLE
(the replica is draining)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter_common.mux import SERVING, batches, gather
from xrouter_common.wire import ERROR_DETAIL_KEY

Metadata = Sequence[tuple[str, str]]
METHOD = "/xrouter.v1.Router/Multiplex"
# Events a streamed call credits back at once: half the router's window (MUX_WINDOW, 64).
CREDIT = 32
# Calls take the lanes in turn by time, not one by one: every call begun within the same slice
# goes on the same lane, so the frames of a burst travel (both ways) as one message, while over
# a few slices the calls still spread over every lane, and so over the router replicas. (A lane
# that is opened takes the call that opened it.)
SLICE = 0.002
# How long a new lane's first frame waits for the router's go-ahead (xrouter_common.mux.SERVING)
# before it is written anyway: routers of before that mark send their initial metadata only with
# their first answer. Also how long the status of a call that ended at once is waited for.
GO_AHEAD_WAIT = 0.5


def rpc_error(code: grpc.StatusCode, details: str, detail: bytes = b"") -> grpc.aio.AioRpcError:
    trailers = grpc.aio.Metadata((ERROR_DETAIL_KEY, detail)) if detail else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _failure(end: pb.MuxEnd) -> grpc.aio.AioRpcError:
    return rpc_error(_CODES.get(end.code, grpc.StatusCode.UNKNOWN), end.details, end.error_detail)


class _Unary:
    """A Chat call on a lane: its answer, or its failure."""

    __slots__ = ("answer",)

    def __init__(self) -> None:
        self.answer: asyncio.Future[pb.ChatResponse] = asyncio.get_running_loop().create_future()

    def take(self, down: pb.MuxDown) -> bool:
        if not self.answer.done():
            if down.HasField("response"):
                self.answer.set_result(down.response)
            else:
                self.answer.set_exception(_failure(down.end))
        return True

    def lose(self, error: BaseException) -> None:
        if not self.answer.done():
            self.answer.set_exception(error)


class MuxStream:
    """A ChatStream call on a lane, read as grpc's UnaryStreamCall: read() gives the events in
    order, then grpc.aio.EOF, or raises the call's failure (after the events that came)."""

    __slots__ = ("_error", "_events", "_id", "_lane", "_taken", "_timer", "_waiter", "over")

    def __init__(self, lane: Lane, call_id: int, timeout: float) -> None:
        self._lane = lane
        self._id = call_id
        self._events: collections.deque[pb.ChatStreamEvent] = collections.deque()
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._taken = 0
        self._timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        self.over = False

    def take(self, down: pb.MuxDown) -> bool:
        if down.HasField("event"):
            self._events.append(down.event)
            self._wake()
            return False
        self._finish(None if down.end.code == grpc.StatusCode.OK.value[0] else _failure(down.end))
        return True

    def lose(self, error: BaseException) -> None:
        self._finish(error)

    def _finish(self, error: BaseException | None) -> None:
        if not self.over:
            self.over = True
            self._error = error
            self._timer.cancel()
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _expire(self) -> None:
        if not self.over:
            self._lane.forget(self._id)
            self._finish(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    @property
    def failure(self) -> BaseException | None:
        """The call's failure, once nothing is left to read before it."""
        return self._error if self.over and not self._events else None

    async def ready(self, timeout: float | None) -> bool:
        """Whether an event, or the call's end, is there to read, waiting at most `timeout`
        seconds for one (without a task: the event's arrival wakes the caller itself)."""
        if self._events or self.over:
            return True
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True

    async def read(self) -> Any:
        while not self._events:
            if self.over:
                if self._error is not None:
                    raise self._error
                return grpc.aio.EOF
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._taken += 1
        if self._taken == CREDIT and not self.over:
            self._taken = 0
            self._lane.send(pb.MuxUp(id=self._id, credit=CREDIT))
        return self._events.popleft()

    def cancel(self) -> bool:
        """As grpc's: the router's call is cancelled; a later read raises CancelledError."""
        if self.over:
            return False
        self._lane.forget(self._id)
        self._finish(asyncio.CancelledError())
        return True


class Lane:
    """One Multiplex stream: a writer task sends frames in order (gRPC takes one write at a
    time), a reader task hands each answer to its call by id."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method: grpc.aio.StreamStreamMultiCallable[pb.MuxUpBatch, pb.MuxDownBatch] = (
            channel.stream_stream(METHOD, request_serializer=pb.MuxUpBatch.SerializeToString,
                                  response_deserializer=pb.MuxDownBatch.FromString))
        self._call = method()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Unary | MuxStream] = {}
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
        call_id = self._open(request, metadata, timeout, stream=False)
        unary = self._pending[call_id] = _Unary()
        try:
            async with asyncio.timeout(timeout):
                return await unary.answer
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        finally:
            self.forget(call_id)

    def chat_stream(self, request: pb.ChatRequest, metadata: Metadata,
                    timeout: float) -> MuxStream:
        call_id = self._open(request, metadata, timeout, stream=True)
        stream = self._pending[call_id] = MuxStream(self, call_id, timeout)
        return stream

    def _open(self, request: pb.ChatRequest, metadata: Metadata, timeout: float, *,
              stream: bool) -> int:
        call_id = next(self._ids)
        self.send(pb.MuxUp(id=call_id, open=pb.MuxOpen(
            request=request, timeout=timeout, stream=stream,
            metadata=[pb.MuxMetadata(key=k, value=v) for k, v in metadata])))
        return call_id

    def forget(self, call_id: int) -> None:
        """A call this side gave up on (cancelled, or past its deadline): the router's is
        cancelled too, unless it had ended already."""
        if self._pending.pop(call_id, None) is not None and not self.dead:
            self.send(pb.MuxUp(id=call_id, cancel=True))
        elif self.retired and not self._pending:
            self._wake.set()

    def send(self, frame: pb.MuxUp) -> None:
        self._outbox.append(frame)
        self._wake.set()

    async def _write(self) -> None:
        try:
            if not await self._go_ahead():
                return  # the call ended: the reader fails its calls with its status
            while True:
                await self._wake.wait()
                # Other calls in flight on this lane may add their frames.
                await gather(self._outbox.__len__, busy=len(self._pending) > 1)
                self._wake.clear()
                if self._outbox:  # everything ready leaves at once (xrouter_common.mux)
                    frames, self._outbox = self._outbox, []
                    for batch in batches(frames):
                        await self._call.write(pb.MuxUpBatch(frames=batch))
                if self.retired and not self._pending and not self._outbox:
                    await self._call.done_writing()
                    return
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            self._call.cancel()  # the reader sees the stream end and fails the calls

    async def _go_ahead(self) -> bool:
        """Whether to write on this stream. Yes once the router's initial metadata carries
        SERVING, or when none came within GO_AHEAD_WAIT (an older router). Metadata without it
        means the call is ending (a router without Multiplex answers UNIMPLEMENTED at once): a
        frame written then could fail in gRPC, which would replace that status by its own
        "Internal error from Core", and the gateway would not fall back to calls of their own."""
        serving = SERVING[0]
        try:
            async with asyncio.timeout(GO_AHEAD_WAIT):
                metadata = await self._call.initial_metadata()
                if any((key, value) == serving for key, value in metadata or ()):
                    return True
                await self._call.code()  # its end, which follows the metadata
                return False
        except TimeoutError:
            return True

    def _take(self, down: pb.MuxDown) -> None:
        call = self._pending.get(down.id)
        if down.HasField("end") and down.end.code == grpc.StatusCode.UNAVAILABLE.value[0]:
            self.retire()
        if call is None or not call.take(down):
            return
        del self._pending[down.id]
        if self.retired and not self._pending:
            self._wake.set()

    async def _read(self) -> None:
        failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "The router ended the multiplexed stream")
        try:
            while True:
                batch = await self._call.read()
                if batch is grpc.aio.EOF:
                    break
                for down in batch.frames:  # type: ignore[attr-defined]
                    self._take(down)
        except grpc.aio.AioRpcError as exc:
            failure = exc if exc.code() == grpc.StatusCode.UNIMPLEMENTED else rpc_error(
                grpc.StatusCode.UNAVAILABLE, f"The multiplexed stream broke: {exc.details()}")
        except asyncio.CancelledError:
            failure = rpc_error(grpc.StatusCode.UNAVAILABLE, "The multiplexed stream was closed")
        finally:
            self.dead = True
            self._writer.cancel()
            pending, self._pending = self._pending, {}
            for call in pending.values():
                call.lose(failure)


class LanePool:
    """`size` lanes on one channel, taken in turn by time slice (SLICE); a lane that is retired
    or dead is replaced when next needed."""

    def __init__(self, channel: grpc.aio.Channel, size: int, max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._channel = channel
        self._clock = clock
        self._size = size
        self._max_age = max_age
        self._lanes: list[Lane] = []

    def lane(self) -> Lane:
        now = self._clock()
        for lane in self._lanes:
            if lane.usable and now - lane.opened > self._max_age:
                lane.retire()
        self._lanes = [lane for lane in self._lanes if lane.usable]
        if len(self._lanes) < self._size:
            self._lanes.append(Lane(self._channel))
            return self._lanes[-1]
        return self._lanes[int(now / SLICE) % len(self._lanes)]

    def retire(self) -> None:
        """Every lane takes no new call and closes once its calls are done (a new channel)."""
        for lane in self._lanes:
            lane.retire()
        self._lanes = []

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._lanes = []
