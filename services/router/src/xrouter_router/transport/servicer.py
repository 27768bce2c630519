"""The Router gRPC servicer: reads metadata and deadlines, translates, calls the service."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_common.wire import AUTHORIZATION_KEY, ERROR_DETAIL_KEY
from xrouter_router.domain.errors import InternalError, XRouterError
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import ProviderStatus, provider_status
from xrouter_router.transport import convert
from xrouter_router.transport.errors import status_of, to_detail

log = logging.getLogger("xrouter.router")


def _api_key(context: grpc.aio.ServicerContext) -> str:  # type: ignore[type-arg]
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION_KEY:
            text = value if isinstance(value, str) else value.decode()
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else text.strip()
    return ""


def _deadline(context: grpc.aio.ServicerContext) -> float | None:  # type: ignore[type-arg]
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


async def _abort(context: grpc.aio.ServicerContext, error: XRouterError) -> None:  # type: ignore[type-arg]
    detail = to_detail(error).SerializeToString()
    await context.abort(status_of(error), error.message,
                        trailing_metadata=((ERROR_DETAIL_KEY, detail),))


def _internal(exc: BaseException) -> InternalError:
    log.exception("unexpected error", exc_info=exc)
    return InternalError("Internal error in the router")


class RouterServicer(pb_grpc.RouterServicer):
    def __init__(self, service: ChatService, providers: list[str]) -> None:
        self._service = service
        self._providers = providers

    async def Chat(self, request: pb.ChatRequest,  # noqa: N802 - gRPC method name
                   context: grpc.aio.ServicerContext) -> pb.ChatResponse:  # type: ignore[type-arg]
        try:
            req = convert.request_from_proto(request)
            result = await self._service.chat(_api_key(context), req, _deadline(context))
            return convert.result_to_proto(request.generation_id, result)
        except XRouterError as exc:
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a bare 500
            await _abort(context, _internal(exc))
        raise AssertionError("unreachable: abort raises")

    async def ChatStream(self, request: pb.ChatRequest,  # noqa: N802
                         context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                         ) -> AsyncIterator[pb.ChatStreamEvent]:
        events = None
        try:
            req = convert.request_from_proto(request)
            events = self._service.stream(_api_key(context), req, _deadline(context))
            async for event in events:
                error = to_detail(event.end.error) if event.end and event.end.error else None
                yield convert.event_to_proto(event, error)
        except XRouterError as exc:
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001
            await _abort(context, _internal(exc))
        finally:
            if events is not None:
                await events.aclose()

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

    async def ProviderStatus(self, request: pb.ProviderStatusRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                             ) -> pb.ProviderStatusResponse:
        return convert.status_to_proto(await self._statuses())

    async def Explain(self, request: pb.ChatRequest,  # noqa: N802
                      context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                      ) -> pb.ExplainResponse:
        try:
            route = await self._service.explain(_api_key(context),
                                                convert.request_from_proto(request))
            return convert.explain_to_proto(route)
        except XRouterError as exc:
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001
            await _abort(context, _internal(exc))
        raise AssertionError("unreachable: abort raises")

    async def Embed(self, request: pb.EmbedRequest,  # noqa: N802
                    context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                    ) -> pb.EmbedResponse:
        try:
            served, result, usage = await self._service.embed(
                _api_key(context), convert.embed_request_from_proto(request), _deadline(context))
            return convert.embeddings_to_proto(served, result, usage)
        except XRouterError as exc:
            await _abort(context, exc)
        except Exception as exc:  # noqa: BLE001
            await _abort(context, _internal(exc))
        raise AssertionError("unreachable: abort raises")
