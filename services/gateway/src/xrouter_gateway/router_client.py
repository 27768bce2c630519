"""The gateway's one long-lived gRPC channel to the router replicas (client-side round robin),
with retries on another replica when a call fails UNAVAILABLE before any response."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_common.env import ConfigError
from xrouter_common.tls import PemSet, Watched
from xrouter_gateway.router_mux import LanePool, MuxStream
from xrouter_gateway.router_tls import RouterTls, channel_options, credentials, watch

Metadata = Sequence[tuple[str, str]]

_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.lb_policy_name", "round_robin"),
    # Retries are ours (below): they must also pick another replica for streams.
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.dns_min_time_between_resolutions_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


# How long a channel built from rotated certificates may take to connect before it is dropped.
CONNECT_WAIT = 5.0
# A Multiplex stream takes new calls for this long, then closes once its calls are done (so
# the lanes spread over router replicas added since; the router also ends each connection
# after 5 minutes).
LANE_MAX_AGE = 60.0


def channel_target(spec: str) -> str:
    """The gRPC target for XROUTER_ROUTER_TARGET. URIs (`dns:///router:50051`, `ipv4:...`)
    pass through; one `host:port` becomes `dns:///host:port` (every address it resolves to is
    balanced over); a comma-separated list must be IP literals, since gRPC's static lists
    (`ipv4:`/`ipv6:`) take no names."""
    if "://" in spec or spec.startswith(("ipv4:", "ipv6:", "unix:", "dns:")):
        return spec
    addresses = [a.strip() for a in spec.split(",") if a.strip()]
    if not addresses:
        raise ConfigError("XROUTER_ROUTER_TARGET is empty")
    families = {_family(a) for a in addresses}
    if len(addresses) == 1 and families == {"name"}:
        return "dns:///" + addresses[0]
    if families == {"ipv4"}:
        return "ipv4:" + ",".join(addresses)
    if families == {"ipv6"}:
        return "ipv6:" + ",".join(addresses)
    raise ConfigError("XROUTER_ROUTER_TARGET: a list must hold IP addresses of one family "
                      f"(got {spec!r}); for host names use one name, e.g. dns:///router:50051")


def _family(address: str) -> str:
    host = address.rpartition(":")[0].strip("[]")
    try:
        return "ipv6" if ipaddress.ip_address(host).version == 6 else "ipv4"
    except ValueError:
        return "name"


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE


class StreamCall(Protocol):
    """A streamed chat call as sse.py reads it: a MuxStream, or grpc's UnaryStreamCall (_OwnCall).
    ready() waits at most `timeout` seconds for a read that would not wait (an event, or the
    call's end, is there) and says whether it came; a wait that times out or is cancelled loses
    nothing and leaves the call running."""

    async def ready(self, timeout: float | None) -> bool: ...

    async def read(self) -> Any: ...

    def cancel(self) -> bool: ...


class _OwnCall:
    """grpc's UnaryStreamCall as a StreamCall. Cancelling one of its reads cancels the call, so
    ready() reads ahead in a task of its own that a timed-out wait leaves running."""

    __slots__ = ("_call", "_next")

    def __init__(self, call: Any) -> None:
        self._call = call
        self._next: asyncio.Future[Any] | None = None

    async def ready(self, timeout: float | None) -> bool:
        if self._next is None:
            self._next = asyncio.ensure_future(self._call.read())
        done, _ = await asyncio.wait((self._next,), timeout=timeout)
        return bool(done)

    async def read(self) -> Any:
        if self._next is None:
            return await self._call.read()
        ahead, self._next = self._next, None
        return await ahead

    def cancel(self) -> bool:
        if self._next is not None:
            self._next.cancel()
        return bool(self._call.cancel())


class _Unimplemented:
    """A MuxStream that becomes a ChatStream call of its own if the router turns out to serve
    no Multiplex (its first read fails UNIMPLEMENTED: nothing was started there)."""

    __slots__ = ("_args", "_call", "_client")

    def __init__(self, client: RouterClient, call: MuxStream, *args: Any) -> None:
        self._client = client
        self._call: StreamCall = call
        self._args: tuple[Any, ...] | None = args

    async def ready(self, timeout: float | None) -> bool:
        if not await self._call.ready(timeout):
            return False
        if self._args is not None and isinstance(self._call, MuxStream) \
                and _unimplemented(self._call.failure):
            self._own_call()
            return await self._call.ready(timeout)
        return True

    async def read(self) -> Any:
        try:
            event = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            if not _unimplemented(exc) or self._args is None:
                raise
        else:
            self._args = None
            return event
        self._own_call()
        return await self._call.read()

    def _own_call(self) -> None:
        assert self._args is not None
        request, metadata, timeout = self._args
        self._args = None
        self._client.unary_only()
        self._call = self._client.chat_stream(request, metadata, timeout)

    def cancel(self) -> bool:
        return self._call.cancel()


def _unimplemented(exc: BaseException | None) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNIMPLEMENTED


class RouterClient:
    """With `tls`, the channel is mutual TLS and is rebuilt when the certificate files change
    (`watch_certificates`): new calls take the new channel once it connected, calls in flight
    finish on the old one, which closes after `drain` seconds. Chat, whole and streamed, goes
    over `lanes` Multiplex streams (router_mux.py), or a Chat or ChatStream call each when
    `lanes` is 0 or the router does not serve Multiplex (UNIMPLEMENTED: an older router,
    mid-upgrade)."""

    def __init__(self, target: str, *, retries: int, tls: RouterTls | None = None,
                 drain: float = 600.0, lanes: int = 0) -> None:
        self._target = channel_target(target)
        self._tls = tls
        self._watched = Watched(tls.files) if tls is not None else None
        self._drain = drain
        self._retired: set[asyncio.Task[None]] = set()
        self._lane_count = lanes
        self._lanes: LanePool | None = None
        self._use(self._new_channel(None if self._watched is None else self._watched.current))
        self.retries = retries

    def _new_channel(self, pems: PemSet | None) -> grpc.aio.Channel:
        if pems is None:
            return grpc.aio.insecure_channel(self._target, options=_OPTIONS)
        return grpc.aio.secure_channel(self._target, credentials(pems),
                                       options=_OPTIONS + channel_options(self._tls))

    def _use(self, channel: grpc.aio.Channel) -> None:
        if self._lanes is not None:
            self._lanes.retire()
        self._lanes = LanePool(channel, self._lane_count, LANE_MAX_AGE) if self._lane_count else None
        self._channel = channel
        self._stub = pb_grpc.RouterStub(channel)
        self.accounts = pb_grpc.AccountsStub(channel)
        self.sessions = pb_grpc.SessionsStub(channel)
        self._health: Any = health_pb2_grpc.HealthStub(channel)

    async def watch_certificates(self) -> None:
        """Runs until cancelled (the app's lifespan): nothing to do without TLS."""
        if self._tls is not None and self._watched is not None:
            await watch(self._watched, self._swap, self._tls.reload_seconds)

    async def _swap(self, pems: PemSet) -> bool:
        channel = self._new_channel(pems)
        try:
            async with asyncio.timeout(CONNECT_WAIT):
                await channel.channel_ready()
        except TimeoutError:
            await channel.close()
            return False
        old = self._channel
        self._use(channel)
        task = asyncio.get_running_loop().create_task(old.close(grace=self._drain))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        return True

    async def close(self) -> None:
        if self._lanes is not None:
            self._lanes.close()
        await self._channel.close()
        for task in list(self._retired):
            task.cancel()

    async def chat(self, request: pb.ChatRequest, metadata: Metadata,
                   timeout: float) -> pb.ChatResponse:
        if self._lanes is not None:
            try:
                answer: pb.ChatResponse = await self._unary(self._lane_chat, request, metadata,
                                                            timeout)
                return answer
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                self.unary_only()
        reply: pb.ChatResponse = await self._unary(self._stub.Chat, request, metadata, timeout)
        return reply

    async def _lane_chat(self, request: pb.ChatRequest, *, metadata: Metadata,
                         timeout: float) -> pb.ChatResponse:
        """Chat on the next lane (called as a stub method is, for _unary's retries)."""
        if self._lanes is None:  # a retry after the router was found to lack Multiplex
            return await self._stub.Chat(request, metadata=metadata, timeout=timeout)
        return await self._lanes.lane().chat(request, metadata, timeout)

    def chat_stream(self, request: pb.ChatRequest, metadata: Metadata,
                    timeout: float) -> StreamCall:
        if self._lanes is not None:
            return _Unimplemented(self, self._lanes.lane().chat_stream(request, metadata, timeout),
                                  request, metadata, timeout)
        return _OwnCall(self._stub.ChatStream(request, metadata=metadata, timeout=timeout))

    def unary_only(self) -> None:
        """The router serves no Multiplex (UNIMPLEMENTED): gRPC calls of their own from now on."""
        if self._lanes is not None:
            self._lanes.close()
            self._lanes = None

    async def _unary(self, method: Any, request: Any, metadata: Metadata, timeout: float) -> Any:
        attempt = 0
        while True:
            try:
                return await method(request, metadata=metadata, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if not retryable(exc) or attempt >= self.retries:
                    raise
                attempt += 1
                await asyncio.sleep(0.01 * attempt)

    async def conclude_orphan(self, request: pb.OrphanRequest, metadata: Metadata,
                              timeout: float) -> pb.OrphanResponse:
        """Asks a replica to record and charge a stream whose router failed (sse.py)."""
        reply: pb.OrphanResponse = await self._unary(self._stub.ConcludeOrphan, request,
                                                     metadata, timeout)
        return reply

    async def explain(self, request: pb.ChatRequest, metadata: Metadata,
                      timeout: float) -> pb.ExplainResponse:
        reply: pb.ExplainResponse = await self._unary(self._stub.Explain, request, metadata, timeout)
        return reply

    async def embed(self, request: pb.EmbedRequest, metadata: Metadata,
                    timeout: float) -> pb.EmbedResponse:
        reply: pb.EmbedResponse = await self._unary(self._stub.Embed, request, metadata, timeout)
        return reply

    async def provider_status(self, timeout: float) -> pb.ProviderStatusResponse:
        reply: pb.ProviderStatusResponse = await self._unary(
            self._stub.ProviderStatus, pb.ProviderStatusRequest(), (), timeout)
        return reply

    async def list_models(self, provider: str, timeout: float) -> pb.ListModelsResponse:
        return await self._stub.ListModels(pb.ListModelsRequest(provider=provider), timeout=timeout)

    async def components(self, timeout: float) -> pb.ComponentsResponse:
        return await self._stub.Components(pb.ComponentsRequest(), timeout=timeout)

    async def healthy(self, timeout: float) -> bool:
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=""),
                                             timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
