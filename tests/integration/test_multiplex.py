"""Chat calls on Multiplex streams (issue 16), over real gRPC: the gateway's RouterClient and
lanes against the router's Multiplexer in real GrpcServers. Replicas here are a small servicer
whose Chat answers with its replica's name (or waits, or fails as told by the model name), so
each test can see which replica served which call. The real router's lanes:
test_multiplex_real_router.py."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from tests.support import (
    until,
)
from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_common.wire import AUTHORIZATION_KEY, ERROR_DETAIL_KEY
from xrouter_gateway.errors import router_failed
from xrouter_gateway.router_client import RouterClient, StreamCall
from xrouter_gateway.router_mux import CREDIT, GO_AHEAD_WAIT, METHOD, SLICE, LanePool
from xrouter_router.domain.errors import RateLimited
from xrouter_router.transport.errors import abort
from xrouter_router.transport.multiplex import MUX_WINDOW, Multiplexer
from xrouter_router.transport.server import GrpcServer

META = ((AUTHORIZATION_KEY, "Bearer xr-test"),)


class Replica(pb_grpc.RouterServicer):
    """Chat answers `<name>:<model>`. Model "hold" waits for `release`; "limited" fails as the
    router fails a rate-limited call. Every call's end is noted in `ended`. ChatStream sends
    events "<name>:0", "<name>:1"... (`produced` counts them): `request.max_tokens` of them, or
    with model "hold" one and then waits for `release`; "limited" fails before any."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.multiplexer = Multiplexer(self.Chat, self.ChatStream)
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.ended: list[str] = []
        self.seen_metadata: list[tuple[tuple[str, str], ...]] = []
        self.produced = 0

    async def Chat(self, request: pb.ChatRequest, context: Any) -> pb.ChatResponse:  # noqa: N802
        self.seen_metadata.append(tuple(context.invocation_metadata()))
        try:
            if request.model == "hold":
                self.holding.set()
                await self.release.wait()
            if request.model == "limited":
                await abort(context, RateLimited("Slow down", retry_after=7))
            self.ended.append(f"answered {request.model}")
            # Model "big" answers with as many bytes as the request's first message had.
            big = len(request.messages[0].content) if request.model == "big" else 0
            return pb.ChatResponse(id=f"{self.name}:{request.model}", system_fingerprint="x" * big)
        except asyncio.CancelledError:
            self.ended.append(f"cancelled {request.model}")
            raise

    async def ChatStream(self, request: pb.ChatRequest,  # noqa: N802
                         context: Any) -> AsyncGenerator[pb.ChatStreamEvent, None]:
        try:
            if request.model == "limited":
                await abort(context, RateLimited("Slow down", retry_after=7))
            count = 1 if request.model == "hold" else request.max_tokens
            for i in range(count):
                self.produced += 1
                yield pb.ChatStreamEvent(deployment=f"{self.name}:{i}")
            if request.model == "hold":
                self.holding.set()
                await self.release.wait()
            self.ended.append(f"streamed {request.model}")
        except asyncio.CancelledError:
            self.ended.append(f"cancelled {request.model}")
            raise
        except GeneratorExit:
            self.ended.append(f"closed {request.model}")
            raise

    async def ListModels(self, request: pb.ListModelsRequest,  # noqa: N802
                         context: Any) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(providers=[pb.ProviderState(name=self.name)])

    async def Multiplex(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.MuxDownBatch]:  # noqa: N802
        async for down in self.multiplexer.handle(request_iterator, context):
            yield down


class OnlyChat(pb_grpc.RouterServicer):
    """A router from before Multiplex: Chat and ChatStream only."""

    calls = 0

    async def Chat(self, request: pb.ChatRequest, context: Any) -> pb.ChatResponse:  # noqa: N802
        OnlyChat.calls += 1
        return pb.ChatResponse(id="old:" + request.model)

    async def ChatStream(self, request: pb.ChatRequest,  # noqa: N802
                         context: Any) -> AsyncIterator[pb.ChatStreamEvent]:
        OnlyChat.calls += 1
        for i in range(2):
            yield pb.ChatStreamEvent(deployment=f"old:{i}")


async def _serve(servicer: pb_grpc.RouterServicer) -> GrpcServer:
    server = GrpcServer(servicer, "127.0.0.1:0",
                        multiplexer=servicer.multiplexer if isinstance(servicer, Replica) else None)
    await server.start()
    return server


def _ended(replica: Replica, expected: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return replica.ended == expected
    return check


def _chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(model=model, generation_id="gen-" + model)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[list[Replica], list[GrpcServer]]]:
    pair = [Replica("a"), Replica("b")]  # type: ignore[abstract]
    servers = [await _serve(r) for r in pair]
    try:
        yield pair, servers
    finally:
        for replica in pair:
            replica.release.set()
        for server in servers:
            await server.stop(0)


def _client(servers: list[GrpcServer], *, lanes: int, retries: int = 2) -> RouterClient:
    target = ",".join(f"127.0.0.1:{s.port}" for s in servers)
    return RouterClient(target, retries=retries, lanes=lanes)


async def _connected_to_both(client: RouterClient) -> None:
    """Until the channel's round robin has both replicas ready (unary calls answer from each),
    so that the two lanes the next calls open land one on each replica."""
    seen: set[str] = set()

    async def both() -> bool:
        seen.add((await client.list_models("", 5)).providers[0].name)
        return seen == {"a", "b"}
    await until(both, 10, "both replicas connected")


async def test_calls_begun_in_one_time_slice_share_a_lane_and_slices_take_every_lane(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    """So that a burst's frames travel together, while the load still spreads over the lanes
    (and through them over the replicas)."""
    _, (server_a, _) = replicas
    first_slice = math.floor(time.monotonic() / SLICE)
    now = 0.0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_a.port}") as channel:
        pool = LanePool(channel, 3, 60.0, clock=lambda: now)
        now = (first_slice + 0.5) * SLICE
        opened = [pool.lane() for _ in range(3)]  # each call opens a lane until there are 3
        assert len({id(lane) for lane in opened}) == 3
        taken = []
        for step in range(1, 7):
            now = (first_slice + step + 0.5) * SLICE
            in_slice = {id(pool.lane()) for _ in range(5)}
            assert len(in_slice) == 1
            taken.append(in_slice.pop())
        assert set(taken) == {id(lane) for lane in opened}
        assert taken[:3] == taken[3:]  # in turn: the same order every three slices
        pool.close()


async def test_each_answer_reaches_its_own_call_on_one_lane(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (a, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        models = [f"m{i}" for i in range(50)]
        replies = await asyncio.gather(*(client.chat(_chat(m), META, 10) for m in models))
        assert [r.id for r in replies] == [f"a:{m}" for m in models]
        assert a.seen_metadata == [META] * 50
    finally:
        await client.close()


async def test_requests_and_answers_larger_than_a_message_together_travel_in_several(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    """Eight calls of 9 MB each way at once: 72 MB, over the channel's 64 MiB message limit
    if they left in one message."""
    (_, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        body = "y" * (9 * 1024 * 1024)
        request = pb.ChatRequest(model="big", messages=[pb.Message(role="user", content=body)])
        replies = await asyncio.gather(*(client.chat(request, META, 30) for _ in range(8)))
        assert [(r.id, len(r.system_fingerprint)) for r in replies] == [("a:big", len(body))] * 8
    finally:
        await client.close()


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_failure_carries_the_code_message_and_detail_of_a_call_of_its_own(
        replicas: tuple[list[Replica], list[GrpcServer]], streamed: bool) -> None:
    """Chat, or ChatStream failing before its first event: on a lane as without one."""
    (_, _), (server_a, _) = replicas
    muxed, unary = _client([server_a], lanes=1), _client([server_a], lanes=0)
    try:
        errors = []
        for client in (muxed, unary):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                if streamed:
                    await client.chat_stream(_chat("limited"), META, 10).read()
                else:
                    await client.chat(_chat("limited"), META, 10)
            errors.append(raised.value)
        got, want = errors
        assert got.code() == want.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert got.details() == want.details() == "Slow down"
        detail = [v for k, v in got.trailing_metadata() if k == ERROR_DETAIL_KEY]
        assert detail == [v for k, v in want.trailing_metadata() if k == ERROR_DETAIL_KEY]
        assert isinstance(detail[0], bytes)
        parsed = pb.ErrorDetail.FromString(detail[0])
        assert (parsed.kind, parsed.retry_after) == (pb.ERROR_KIND_RATE_LIMITED, 7)
    finally:
        await muxed.close()
        await unary.close()


async def test_a_call_past_its_deadline_is_cancelled_on_the_router(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (a, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.chat(_chat("hold"), META, 0.3)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await until(_ended(a, ["cancelled hold"]), 10, "the router's call cancelled")
        # The lane goes on serving.
        assert (await client.chat(_chat("after"), META, 10)).id == "a:after"
    finally:
        await client.close()


async def test_a_cancelled_call_is_cancelled_on_the_router_and_the_others_go_on(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (a, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        held = asyncio.ensure_future(client.chat(_chat("hold"), META, 10))
        await a.holding.wait()
        held.cancel()
        await until(_ended(a, ["cancelled hold"]), 10, "the router's call cancelled")
        assert (await client.chat(_chat("next"), META, 10)).id == "a:next"
    finally:
        await client.close()


async def _hold_on_one(client: RouterClient, replicas: tuple[list[Replica], list[GrpcServer]],
                       ) -> tuple[asyncio.Future[pb.ChatResponse], Replica, Replica, GrpcServer]:
    """With the client's two lanes on the two replicas: a held call, the replica holding it,
    the other replica, and the holder's server."""
    (a, b), (server_a, server_b) = replicas
    await _connected_to_both(client)
    warm = await asyncio.gather(*(client.chat(_chat(f"warm{i}"), META, 10) for i in range(4)))
    assert {r.id[0] for r in warm} == {"a", "b"}
    held = asyncio.ensure_future(client.chat(_chat("hold"), META, 10))
    await asyncio.wait([asyncio.ensure_future(a.holding.wait()),
                        asyncio.ensure_future(b.holding.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    return (held, a, b, server_a) if a.holding.is_set() else (held, b, a, server_b)


async def test_a_call_cancelled_in_the_message_that_opens_it_never_runs_and_leaves_nothing(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    """An open and a cancel frame in one message (what a gateway sends when its client gives up
    before the lane's writer ran): the router's task is cancelled before its first step. Nothing
    of the call stays behind: a draining replica ends the idle stream at once, not after the
    grace."""
    (a, _), (server_a, _) = replicas
    meta = [pb.MuxMetadata(key=k, value=v) for k, v in META]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_a.port}") as channel:
        lane = channel.stream_stream(METHOD, request_serializer=pb.MuxUpBatch.SerializeToString,
                                     response_deserializer=pb.MuxDownBatch.FromString)()
        await lane.write(pb.MuxUpBatch(frames=[
            pb.MuxUp(id=1, open=pb.MuxOpen(request=_chat("hold"), metadata=meta, timeout=10)),
            pb.MuxUp(id=1, cancel=True),
            pb.MuxUp(id=2, open=pb.MuxOpen(request=_chat("after"), metadata=meta, timeout=10))]))
        answer = await lane.read()
        assert isinstance(answer, pb.MuxDownBatch)
        assert [(d.id, d.response.id) for d in answer.frames] == [(2, "a:after")]
        assert a.ended == ["answered after"]  # "hold" never ran
        async with asyncio.timeout(10):  # the grace is 60 s: a call left behind would hold it
            await server_a.stop(60)
        assert await lane.read() is grpc.aio.EOF


async def test_a_draining_replica_finishes_its_calls_and_new_ones_go_to_the_other(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    client = _client(replicas[1], lanes=2)
    try:
        held, holder, other, server = await _hold_on_one(client, replicas)
        stopping = asyncio.ensure_future(server.stop(30))
        answers = await asyncio.gather(*(client.chat(_chat(f"late{i}"), META, 10)
                                         for i in range(6)))
        assert {r.id for r in answers} == {f"{other.name}:late{i}" for i in range(6)}
        assert not held.done()
        holder.release.set()
        assert (await held).id == f"{holder.name}:hold"
        await stopping
    finally:
        await client.close()


async def test_a_broken_stream_fails_its_calls_unavailable_and_they_are_retried(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    client = _client(replicas[1], lanes=2)
    try:
        held, holder, other, server = await _hold_on_one(client, replicas)
        other.release.set()  # the retried call is answered at once there
        await server.stop(0)  # no grace: the stream breaks under the held call
        assert (await held).id == f"{other.name}:hold"
        answered = [e for e in holder.ended if e.startswith("answered warm")]
        await until(_ended(holder, [*answered, "cancelled hold"]), 10,
                    "the broken stream's call cancelled")
    finally:
        await client.close()


@pytest.mark.parametrize("first", ["chat", "stream"])
async def test_a_router_without_multiplex_is_called_with_calls_of_their_own(first: str) -> None:
    server = await _serve(OnlyChat())  # type: ignore[abstract]
    client = RouterClient(f"127.0.0.1:{server.port}", retries=0, lanes=2)
    try:
        OnlyChat.calls = 0
        if first == "stream":
            assert await _events(client.chat_stream(_chat("s"), META, 10)) == ["old:0", "old:1"]
        replies = [await client.chat(_chat(f"m{i}"), META, 10) for i in range(3)]
        assert [r.id for r in replies] == ["old:m0", "old:m1", "old:m2"]
        assert await _events(client.chat_stream(_chat("s"), META, 10)) == ["old:0", "old:1"]
        assert OnlyChat.calls == (5 if first == "stream" else 4)
    finally:
        await client.close()
        await server.stop(0)


async def test_every_new_client_falls_back_for_a_router_without_multiplex() -> None:
    """Each new client's lanes meet the router's immediate UNIMPLEMENTED: no first frame is
    written into that end (gRPC would then report its own "Internal error from Core", and the
    call would fail instead of falling back: seen once in CI before the go-ahead mark)."""
    server = await _serve(OnlyChat())  # type: ignore[abstract]
    try:
        for i in range(20):
            client = RouterClient(f"127.0.0.1:{server.port}", retries=0, lanes=2)
            try:
                if i % 2:
                    assert await _events(client.chat_stream(_chat("s"), META, 10)) == ["old:0", "old:1"]
                else:
                    assert (await client.chat(_chat(f"m{i}"), META, 10)).id == f"old:m{i}"
            finally:
                await client.close()
    finally:
        await server.stop(0)


class Unmarked(Replica):
    """A router from before the go-ahead mark: Multiplex sends no initial metadata."""

    async def Multiplex(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.MuxDownBatch]:  # noqa: N802
        async for down in self.multiplexer.serve(request_iterator):
            yield down


async def test_a_router_without_the_go_ahead_mark_is_written_to_after_the_wait() -> None:
    server = await _serve(Unmarked("u"))  # type: ignore[abstract]
    client = RouterClient(f"127.0.0.1:{server.port}", retries=0, lanes=1)
    try:
        started = time.monotonic()
        assert (await client.chat(_chat("m0"), META, 10)).id == "u:m0"
        assert time.monotonic() - started >= GO_AHEAD_WAIT  # its first frame waited that long
        assert [(await client.chat(_chat(f"m{i}"), META, 10)).id for i in (1, 2)] == ["u:m1", "u:m2"]
    finally:
        await client.close()
        await server.stop(0)


async def _events(call: StreamCall, limit: int | None = None) -> list[str]:
    """The deployments of the call's events, up to `limit` of them or to its end."""
    seen: list[str] = []
    while limit is None or len(seen) < limit:
        event = await call.read()
        if event is grpc.aio.EOF:
            break
        seen.append(event.deployment)
    return seen


def _stream(model: str, events: int = 0) -> pb.ChatRequest:
    return pb.ChatRequest(model=model, generation_id="gen-" + model, max_tokens=events)


async def test_streamed_calls_share_a_lane_with_whole_answers_each_in_order(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (_, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        streams = [client.chat_stream(_stream(f"s{i}", 150), META, 10) for i in range(4)]
        chats = [asyncio.ensure_future(client.chat(_chat(f"m{i}"), META, 10)) for i in range(4)]
        got = await asyncio.gather(*(_events(s) for s in streams))
        assert got == [[f"a:{n}" for n in range(150)]] * 4  # beyond the window: credits
        assert [(await c).id for c in chats] == [f"a:m{i}" for i in range(4)]
    finally:
        await client.close()


async def test_a_stream_the_gateway_does_not_read_waits_at_the_window(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (a, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        call = client.chat_stream(_stream("slow", 200), META, 10)

        async def produced(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return a.produced >= count
            return check
        # The router sends MUX_WINDOW events, then its loop holds the next one until credits.
        await until(await produced(MUX_WINDOW + 1), 10, "the window filled")
        assert a.produced == MUX_WINDOW + 1
        assert await _events(call, CREDIT) == [f"a:{n}" for n in range(CREDIT)]
        await until(await produced(MUX_WINDOW + CREDIT + 1), 10, "the credit used")
        assert a.produced == MUX_WINDOW + CREDIT + 1
        assert await _events(call) == [f"a:{n}" for n in range(CREDIT, 200)]
    finally:
        await client.close()


async def test_a_cancelled_stream_closes_the_routers_generator(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (a, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        call = client.chat_stream(_stream("hold"), META, 10)
        assert await _events(call, 1) == ["a:0"]
        await a.holding.wait()
        assert call.cancel() is True
        await until(_ended(a, ["cancelled hold"]), 10, "the router's stream cancelled")
        with pytest.raises(asyncio.CancelledError):
            await call.read()
        assert await _events(client.chat_stream(_stream("after", 2), META, 10)) == ["a:0", "a:1"]
    finally:
        await client.close()


async def test_a_stream_cut_by_its_router_fails_unavailable_after_its_events(
        replicas: tuple[list[Replica], list[GrpcServer]]) -> None:
    (a, _), (server_a, _) = replicas
    client = _client([server_a], lanes=1)
    try:
        call = client.chat_stream(_stream("hold"), META, 10)
        await a.holding.wait()
        await server_a.stop(0)
        assert await _events(call, 1) == ["a:0"]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        # What the gateway takes for a lost router (sse.py concludes the stream elsewhere).
        assert router_failed(raised.value)
        await until(_ended(a, ["cancelled hold"]), 10, "the router's stream cancelled")
    finally:
        await client.close()
