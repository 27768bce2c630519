"""The Router gRPC servicer: reads metadata and deadlines, translates, calls the service."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_common.tracing import trace_id_of
from xrouter_common.wire import (
    AUTHORIZATION_KEY,
    CLIENT_ADDRESS_KEY,
    REQUEST_ID_KEY,
    TRACEPARENT_KEY,
)
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import ProviderStatus, provider_status
from xrouter_router.storage.health import StorageHealth, always_up
from xrouter_router.tracing import server_span
from xrouter_router.transport import convert
from xrouter_router.transport.errors import Outcome, answering, to_detail
from xrouter_router.transport.multiplex import Multiplexer
from xrouter_router.transport.redact import PATTERNS_ONLY, Redactor

log = logging.getLogger("xrouter.router")


@dataclass(slots=True)
class _Meta:
    api_key: str = ""
    traceparent: str = ""
    request_id: str = ""
    # Empty when the gateway sent none: no IP allow-list admits it.
    address: str = ""


def _metadata(context: grpc.aio.ServicerContext) -> _Meta:  # type: ignore[type-arg]
    meta = _Meta()
    for key, value in context.invocation_metadata() or ():
        text = value if isinstance(value, str) else value.decode()
        if key == AUTHORIZATION_KEY:
            scheme, _, token = text.partition(" ")
            meta.api_key = token.strip() if scheme.lower() == "bearer" else text.strip()
        elif key == TRACEPARENT_KEY:
            meta.traceparent = text
        elif key == REQUEST_ID_KEY:
            meta.request_id = text
        elif key == CLIENT_ADDRESS_KEY:
            meta.address = text
    return meta


def credentials(context: grpc.aio.ServicerContext) -> tuple[str, str]:  # type: ignore[type-arg]
    """The API key and the client's address from the call's metadata."""
    meta = _metadata(context)
    return meta.api_key, meta.address


def _deadline(context: grpc.aio.ServicerContext) -> float | None:  # type: ignore[type-arg]
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class RouterServicer(pb_grpc.RouterServicer):
    def __init__(self, service: ChatService, providers: list[str], *, tracer: Any | None = None,
                 request_log: bool = True, redactor: Redactor = PATTERNS_ONLY,
                 storage: StorageHealth | None = None) -> None:
        self._service = service
        self._storage = storage or always_up()
        self._redactor = redactor
        self._providers = providers
        self._tracer = tracer
        self._request_log = request_log
        # Chat and ChatStream calls carried on Multiplex streams (GrpcServer.stop drains it).
        self.multiplexer = Multiplexer(self.Chat, self.ChatStream)

    def _log(self, rpc: str, meta: _Meta, request: pb.ChatRequest, *, started: float,
             outcome: str, served: tuple[str, str, int] | None) -> None:
        """One line per request: ids, routing outcome, timing; never content or keys. Made when
        the task that answers ends (the answer is then on its way: Multiplexer._run queues its
        frame first, a call of its own sends it first), so it does not delay the answer."""
        if not self._request_log:
            return
        model, provider, attempts = served or (request.model, "", 0)
        fields = {
            "rpc": rpc, "generation_id": request.generation_id, "request_id": meta.request_id,
            "trace_id": trace_id_of(meta.traceparent), "model": model, "provider": provider,
            "attempts": attempts, "outcome": outcome,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
        task = asyncio.current_task()
        if task is None or task.done():
            log.info("rpc", extra={"fields": fields})
        else:
            task.add_done_callback(lambda _: log.info("rpc", extra={"fields": fields}))

    async def Chat(self, request: pb.ChatRequest,  # noqa: N802 - gRPC method name
                   context: grpc.aio.ServicerContext) -> pb.ChatResponse:  # type: ignore[type-arg]
        started = time.perf_counter()
        meta = _metadata(context)
        outcome, served = Outcome("internal"), None
        with server_span(self._tracer, "xrouter.v1.Router/Chat", meta.traceparent,
                         {"xrouter.generation_id": request.generation_id,
                          "xrouter.model": request.model}):
            try:
                async with answering(context, self._redactor, outcome):
                    req = convert.request_from_proto(request)
                    result = await self._service.chat(meta.api_key, req, _deadline(context),
                                                      address=meta.address)
                    outcome.value = "success"
                    served = (result.served.model, result.served.provider, len(result.attempts))
                    return convert.result_to_proto(request.generation_id, result)
            finally:
                self._log("Chat", meta, request, started=started, outcome=outcome.value,
                          served=served)
        raise AssertionError("unreachable: abort raises")

    async def ChatStream(self, request: pb.ChatRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                         ) -> AsyncGenerator[pb.ChatStreamEvent, None]:
        started = time.perf_counter()
        meta = _metadata(context)
        outcome, served = Outcome("cancelled"), None
        events = None
        with server_span(self._tracer, "xrouter.v1.Router/ChatStream", meta.traceparent,
                         {"xrouter.generation_id": request.generation_id,
                          "xrouter.model": request.model}):
            try:
                async with answering(context, self._redactor, outcome):
                    req = convert.request_from_proto(request)
                    events = self._service.stream(meta.api_key, req, _deadline(context),
                                                  address=meta.address)
                    async for event in events:
                        if event.served is not None:
                            served = (event.served.model, event.served.provider,
                                      len(event.attempts))
                        error = (to_detail(event.end.error, self._redactor)
                                 if event.end and event.end.error else None)
                        if event.end is not None:
                            outcome.value = "success" if error is None else "stream_error"
                        yield convert.event_to_proto(event, error)
            finally:
                if events is not None:
                    await events.aclose()
                self._log("ChatStream", meta, request, started=started, outcome=outcome.value,
                          served=served)

    async def Multiplex(self, request_iterator: AsyncIterator[pb.MuxUpBatch],  # noqa: N802
                        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                        ) -> AsyncIterator[pb.MuxDownBatch]:
        async for down in self.multiplexer.handle(request_iterator, context):
            yield down

    async def ConcludeOrphan(self, request: pb.OrphanRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                             ) -> pb.OrphanResponse:
        async with answering(context, self._redactor):
            api_key, address = credentials(context)
            usage = await self._service.conclude_orphan(
                api_key, convert.request_from_proto(request.request), request.deployment,
                request.relayed_text, request.finish_reason, address=address)
            log.warning("stream concluded for a lost router", extra={"fields": {
                "generation_id": request.request.generation_id, "recorded": usage is not None,
                "cost": str(usage.cost if usage else 0)}})
            return pb.OrphanResponse(recorded=usage is not None,
                                     cost=str(usage.cost if usage else 0))
        raise AssertionError("unreachable: abort raises")

    async def ListModels(self, request: pb.ListModelsRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                         ) -> pb.ListModelsResponse:
        models = [convert.model_to_proto(m) for m in self._service.catalog.models
                  if not request.provider or request.provider in m.providers]
        providers = [pb.ProviderState(name=st.name, status=st.status)
                     for st in await self._statuses()]
        return pb.ListModelsResponse(models=models, providers=providers)

    async def _statuses(self) -> list[ProviderStatus]:
        stats = self._service.stats
        every = await stats.all()
        now = time.time()
        return [provider_status(name, [s for s in every.values() if s.provider == name], now,
                                stats.policy)
                for name in self._providers]

    async def Components(self, request: pb.ComponentsRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                         ) -> pb.ComponentsResponse:
        state = await self._storage.check()
        providers = [pb.ProviderState(name=st.name, status=st.status)
                     for st in await self._statuses()]
        return pb.ComponentsResponse(db=state.db, cache=state.cache, providers=providers,
                                     mode=state.mode)

    async def ProviderStatus(self, request: pb.ProviderStatusRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                             ) -> pb.ProviderStatusResponse:
        return convert.status_to_proto(await self._statuses())

    async def Explain(self, request: pb.ChatRequest,  # noqa: N802
                      context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                      ) -> pb.ExplainResponse:
        async with answering(context, self._redactor):
            api_key, address = credentials(context)
            route = await self._service.explain(api_key, convert.request_from_proto(request),
                                                address=address)
            return convert.explain_to_proto(route)
        raise AssertionError("unreachable: abort raises")

    async def Embed(self, request: pb.EmbedRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                    ) -> pb.EmbedResponse:
        async with answering(context, self._redactor):
            api_key, address = credentials(context)
            served, result, usage = await self._service.embed(
                api_key, convert.embed_request_from_proto(request), _deadline(context),
                address=address)
            return convert.embeddings_to_proto(served, result, usage)
        raise AssertionError("unreachable: abort raises")
