"""Streaming a completion as Server-Sent Events, the way OpenRouter does.

The router call starts before any byte is sent. If it fails within `commit_after` seconds the
client gets a plain HTTP error; otherwise 200 and the SSE headers go out, `: XROUTER PROCESSING`
comments keep the connection alive until the first event, later failures arrive in-band as an
error chunk, and a usage chunk always precedes `data: [DONE]`. A client disconnect cancels the
router call, which cancels the upstream request.

A stream whose router fails after its first event (the process died, the connection broke) ends
with a "router_lost" error chunk, and another replica is asked to record and charge the
generation for what was relayed (Router.ConcludeOrphan; docs/accounts.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import (
    APIError,
    from_detail,
    from_rpc_error,
    router_failed,
    router_lost,
)
from xrouter_gateway.router_client import Metadata, RouterClient, retryable

log = logging.getLogger("xrouter.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_EOF: Any = grpc.aio.EOF


class StreamWriter(Protocol):
    """Frames router stream events in one client wire format (OpenAI chunks, Anthropic events)."""

    @property
    def keepalive(self) -> bytes:
        """Written while waiting for the first event."""
        ...

    def served(self, ev: pb.ChatStreamEvent) -> None: ...

    def deltas(self, ev: pb.ChatStreamEvent) -> bytes: ...

    def error(self, err: APIError) -> bytes: ...

    def usage(self, u: pb.Usage | None) -> bytes:
        """The end of the stream (after an error, whatever the format wants there)."""
        ...


class RouterStream:
    """One streamed router call, re-opened on another replica while no event has arrived."""

    def __init__(self, client: RouterClient, request: pb.ChatRequest, metadata: Metadata,
                 timeout: float) -> None:
        self._client = client
        self._request = request
        self._metadata = metadata
        self._timeout = timeout
        self._retries = client.retries
        self._call = client.chat_stream(request, metadata, timeout)
        # What was relayed, for a conclusion elsewhere if the router fails (conclude_orphan).
        self._deployment = ""
        self._relayed: list[str] = []
        self._finish = ""

    @property
    def relayed(self) -> bool:
        """Whether an event of the router's came (the served deployment is known)."""
        return bool(self._deployment)

    def _seen(self, event: pb.ChatStreamEvent) -> pb.ChatStreamEvent:
        if event.deployment:
            self._deployment = event.deployment
        for chunk in event.chunks:
            if chunk.content:
                self._relayed.append(chunk.content)
            if chunk.reasoning:
                self._relayed.append(chunk.reasoning)
            self._relayed.extend(t.name + t.arguments for t in chunk.tool_calls)
            if chunk.finish_reason:
                self._finish = chunk.finish_reason
        return event

    async def conclude_orphan(self) -> None:
        """Asks another replica to record and charge this stream's generation for what was
        relayed (its router failed). Runs to its end even when the response is cancelled; a
        failure is logged (_concluded), the client has its answer already."""
        request = pb.OrphanRequest(request=self._request, deployment=self._deployment,
                                   relayed_text="".join(self._relayed),
                                   finish_reason=self._finish)
        task = asyncio.ensure_future(
            self._client.conclude_orphan(request, self._metadata, self._timeout))
        _CONCLUDING.add(task)
        task.add_done_callback(_concluded)
        await asyncio.wait((task,))

    async def first_event(self, wait: float | None) -> pb.ChatStreamEvent | None:
        """The first event, or None if it has not come within `wait` seconds.
        Raises AioRpcError when the call failed."""
        while True:
            if not await self._call.ready(wait):
                return None
            try:
                event = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                if not retryable(exc) or self._retries <= 0:
                    raise
                self._retries -= 1
                self._call = self._client.chat_stream(self._request, self._metadata, self._timeout)
                continue
            if event is _EOF:
                raise APIError(502, "The router ended the stream without any event")
            return self._seen(event)

    async def next_event(self) -> pb.ChatStreamEvent | None:
        event = await self._call.read()
        return None if event is _EOF else self._seen(event)

    def cancel(self) -> None:
        self._call.cancel()


class SSEResponse:
    """ASGI response that streams one completion (see the module docstring)."""

    def __init__(self, stream: RouterStream, first: pb.ChatStreamEvent | None,
                 writer: StreamWriter, keepalive: float, headers: dict[str, str]) -> None:
        self._stream = stream
        self._first = first
        self._writer = writer
        self._keepalive = keepalive
        self._headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"), *self._headers]})
        # The stream is produced in this task; a client disconnect cancels it (and so the
        # router call, and so the upstream request).
        task = asyncio.current_task()
        assert task is not None
        producing = True

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            if producing and not watcher.cancelled():
                task.cancel()

        watcher = asyncio.ensure_future(_disconnected(receive))
        watcher.add_done_callback(on_disconnect)
        try:
            await self._produce(send)
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise
        finally:
            producing = False
            watcher.cancel()
            self._stream.cancel()

    async def _produce(self, send: Send) -> None:
        writer = self._writer
        usage: pb.Usage | None = None
        tail = b""
        lost = False
        try:
            event = self._first
            while event is None:
                event = await self._stream.first_event(self._keepalive)
                if event is None:
                    await _write(send, writer.keepalive)
            writer.served(event)
            while event is not None:
                if event.HasField("end"):
                    usage = event.end.usage
                    tail = writer.deltas(event)
                    if event.end.HasField("error"):
                        tail += writer.error(from_detail(event.end.error))
                    break
                await _write(send, writer.deltas(event))
                event = await self._stream.next_event()
            else:
                tail = writer.error(APIError(502, "The router ended the stream early"))
        except grpc.aio.AioRpcError as exc:
            lost = self._stream.relayed and router_failed(exc)
            tail = writer.error(router_lost() if lost else from_rpc_error(exc))
        except APIError as exc:
            tail = writer.error(exc)
        # The last deltas, any error, the usage chunk and [DONE] leave in one write.
        await send({"type": "http.response.body", "body": tail + writer.usage(usage),
                    "more_body": False})
        if lost:
            await self._stream.conclude_orphan()


# Conclusions of lost streams still running (a reference keeps each task alive).
_CONCLUDING: set[asyncio.Future[pb.OrphanResponse]] = set()


def _concluded(task: asyncio.Future[pb.OrphanResponse]) -> None:
    _CONCLUDING.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("a lost stream's generation could not be concluded: %s", exc)


async def _write(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
