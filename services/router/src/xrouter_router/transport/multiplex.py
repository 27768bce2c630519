"""The router's side of the Multiplex RPC: many Chat and ChatStream calls on one long-lived stream
(issue 16).

Each `open` frame runs the servicer's own Chat or ChatStream handler in a task of its own, with a
context that answers what they ask of a gRPC context (the metadata, the deadline, abort), so a
multiplexed call is admitted, routed, charged, recorded and logged exactly as a call of its own.
A `cancel` frame cancels that task, as gRPC cancels a call whose client went away (a streamed
call's generator is closed, which concludes what it relayed); a broken stream cancels every call
on it. A streamed call sends at most MUX_WINDOW events beyond those the gateway credited back.
While the router drains, new calls are refused UNAVAILABLE (the gateway retries them on another
replica) and an idle stream ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from typing import Any, NoReturn

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter_common.mux import SERVING, batches, gather
from xrouter_common.wire import ERROR_DETAIL_KEY

log = logging.getLogger("xrouter.router.multiplex")

ChatHandler = Callable[[pb.ChatRequest, Any], Awaitable[pb.ChatResponse]]
StreamHandler = Callable[[pb.ChatRequest, Any], AsyncGenerator[pb.ChatStreamEvent, None]]
# Events of a streamed call sent beyond those credited back (the gateway credits in halves).
MUX_WINDOW = 64
_OK = grpc.StatusCode.OK.value[0]
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]


class MuxContext:
    """What RouterServicer.Chat reads from its gRPC context, for one multiplexed call."""

    __slots__ = ("_deadline", "_end", "_metadata")

    def __init__(self, opened: pb.MuxOpen) -> None:
        self._metadata = tuple((m.key, m.value) for m in opened.metadata)
        self._deadline = time.monotonic() + opened.timeout if opened.timeout > 0 else None
        self._end: pb.MuxEnd | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Sequence[tuple[str, bytes]] = ()) -> NoReturn:
        detail = b"".join(value for key, value in trailing_metadata if key == ERROR_DETAIL_KEY)
        self._end = pb.MuxEnd(code=code.value[0], details=details, error_detail=detail)
        raise grpc.aio.AbortError()

    def end(self) -> pb.MuxEnd:
        return self._end or pb.MuxEnd(code=_INTERNAL, details="Internal error in the router")


class _Window:
    """How many more events a streamed call may send before the gateway credits some back."""

    __slots__ = ("_open", "left")

    def __init__(self) -> None:
        self.left = MUX_WINDOW
        self._open = asyncio.Event()

    async def take(self) -> None:
        while self.left <= 0:
            self._open.clear()
            await self._open.wait()
        self.left -= 1

    def credit(self, events: int) -> None:
        self.left += events
        self._open.set()


class _Session:
    """One Multiplex stream: its calls by id, the send windows of its streamed calls, and the
    queue its answers leave by (None only wakes the writer to look at the state)."""

    __slots__ = ("calls", "out", "reading", "windows")

    def __init__(self) -> None:
        self.calls: dict[int, asyncio.Task[None]] = {}
        self.windows: dict[int, _Window] = {}
        self.out: asyncio.Queue[pb.MuxDown | None] = asyncio.Queue()
        self.reading = True


class Multiplexer:
    def __init__(self, chat: ChatHandler, stream: StreamHandler) -> None:
        self._chat = chat
        self._stream = stream
        self._draining = False
        self._sessions: set[_Session] = set()

    def drain(self) -> None:
        """New calls are refused from now on; each stream ends once its calls are done."""
        self._draining = True
        for session in self._sessions:
            session.out.put_nowait(None)

    async def handle(self, incoming: AsyncIterable[pb.MuxUpBatch],
                     context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                     ) -> AsyncIterator[pb.MuxDownBatch]:
        """The Multiplex method: the go-ahead metadata (xrouter_common.mux.SERVING) before any
        frame is read, then serve()."""
        await context.send_initial_metadata(SERVING)
        async for down in self.serve(incoming):
            yield down

    async def serve(self, incoming: AsyncIterable[pb.MuxUpBatch]) -> AsyncIterator[pb.MuxDownBatch]:
        session = _Session()
        reader = asyncio.get_running_loop().create_task(self._read(incoming, session))
        self._sessions.add(session)
        out = session.out
        try:
            while True:
                frames = [down] if (down := await out.get()) is not None else []
                # Other calls in flight (not the one whose frame this is) may add theirs.
                own = down is not None and down.id in session.calls
                await gather(out.qsize, busy=len(session.calls) > (1 if own else 0))
                while not out.empty():  # everything ready leaves in one message
                    if (down := out.get_nowait()) is not None:
                        frames.append(down)
                for batch in batches(frames):
                    yield pb.MuxDownBatch(frames=batch)
                if not session.calls and out.empty() and (self._draining or not session.reading):
                    return
        finally:
            self._sessions.discard(session)
            reader.cancel()
            for task in list(session.calls.values()):
                task.cancel()

    async def _read(self, incoming: AsyncIterable[pb.MuxUpBatch], session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for batch in incoming:
                for up in batch.frames:
                    self._take(up, session, loop)
        finally:
            session.reading = False
            session.out.put_nowait(None)

    def _take(self, up: pb.MuxUp, session: _Session, loop: asyncio.AbstractEventLoop) -> None:
        if up.HasField("open"):
            if self._draining:
                session.out.put_nowait(pb.MuxDown(id=up.id, end=pb.MuxEnd(
                    code=_UNAVAILABLE, details="The router replica is shutting down")))
            elif up.id not in session.calls:
                run = self._run_stream if up.open.stream else self._run
                session.calls[up.id] = loop.create_task(run(up.id, up.open, session))
        elif up.HasField("credit"):
            if (window := session.windows.get(up.id)) is not None:
                window.credit(up.credit)
        elif up.cancel and (task := session.calls.pop(up.id, None)) is not None:
            # Forgotten here: a task cancelled before its first step never runs its finally.
            session.windows.pop(up.id, None)
            task.cancel()
            session.out.put_nowait(None)  # the writer looks again whether the stream may end

    async def _run(self, call_id: int, opened: pb.MuxOpen, session: _Session) -> None:
        context = MuxContext(opened)
        down: pb.MuxDown | None = None
        try:
            down = pb.MuxDown(id=call_id, response=await self._chat(opened.request, context))
        except grpc.aio.AbortError:
            down = pb.MuxDown(id=call_id, end=context.end())
        except Exception:  # Chat answers every error itself (answering): this is a bug
            log.exception("unexpected error in a multiplexed call")
            down = pb.MuxDown(id=call_id, end=context.end())
        finally:
            session.calls.pop(call_id, None)
            session.out.put_nowait(down)

    async def _run_stream(self, call_id: int, opened: pb.MuxOpen, session: _Session) -> None:
        context = MuxContext(opened)
        window = session.windows[call_id] = _Window()
        end: pb.MuxEnd | None = None
        try:
            # Closed however this ends (a cancel included): the handler concludes the stream.
            async with contextlib.aclosing(self._stream(opened.request, context)) as events:
                first = True
                async for event in events:
                    await window.take()
                    session.out.put_nowait(pb.MuxDown(id=call_id, event=event))
                    if first:
                        # The writer sends the first event before the handler goes on: what
                        # follows may not let the loop run for a while (a one-read answer's
                        # rest, its conclusion, the embedded ledger's commit).
                        first = False
                        await asyncio.sleep(0)
            end = pb.MuxEnd(code=_OK)
        except grpc.aio.AbortError:
            end = context.end()
        except Exception:  # ChatStream answers every error itself (answering): this is a bug
            log.exception("unexpected error in a multiplexed stream")
            end = context.end()
        finally:
            session.calls.pop(call_id, None)
            session.windows.pop(call_id, None)
            session.out.put_nowait(None if end is None else pb.MuxDown(id=call_id, end=end))
