"""Reference floors measured in the same `make bench` run, so the figures can be read against
what the building blocks cost on this machine:
  grpc-server PORT / grpc-client PORT N: a bare grpc.aio unary echo (the gateway -> router hop
  with no work on either side), on the gRPC transport both services run
  (xrouter_common.grpc_core); the client prints its own CPU per call.
  passthrough PORT UPSTREAM STREAM_UPSTREAM: a bare Starlette + aiohttp pass-through (one HTTP
  tier, no gRPC): /v1/chat/completions relays the whole answer, /v1/stream relays an SSE answer
  event by event (each event written to the client as it is read, as a gateway that keeps the
  stream's pace must; no parsing)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator

import uvloop

import xrouter_common.grpc_core  # noqa: F401 - before grpc loads (below): the services' transport


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _grpc_server(port: int) -> None:
    import grpc  # here: after xrouter_common.grpc_core chose the transport

    async def echo(request: bytes, context: object) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _grpc_client(port: int, n: int) -> None:
    import grpc  # here: after xrouter_common.grpc_core chose the transport

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_retries", 0)])
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/bench.Echo/Echo")
    payload = b"x" * 300
    for _ in range(500):
        await echo(payload)

    async def worker(k: int) -> None:
        for _ in range(k):
            await echo(payload)

    c0 = _cpu()
    await asyncio.gather(*(worker(n // 16) for _ in range(16)))
    print(f"{(_cpu() - c0) / n * 1000:.4f}", flush=True)
    await channel.close()


def _passthrough(port: int, upstream: str, stream_upstream: str) -> None:
    import aiohttp
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    session: list[aiohttp.ClientSession] = []

    async def chat(request: Request) -> Response:
        if not session:
            session.append(aiohttp.ClientSession())
        body = await request.body()
        async with session[0].post(upstream, data=body,
                                   headers={"Content-Type": "application/json"}) as resp:
            data = await resp.read()
        return Response(data, media_type="application/json")

    async def stream(request: Request) -> StreamingResponse:
        if not session:
            session.append(aiohttp.ClientSession())
        body = await request.body()
        resp = await session[0].post(stream_upstream, data=body,
                                     headers={"Content-Type": "application/json"})

        async def events() -> AsyncIterator[bytes]:
            try:
                event = b""
                async for line in resp.content:
                    event += line
                    if line in (b"\n", b"\r\n"):
                        yield event
                        event = b""
            finally:
                resp.release()
        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/stream", stream, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


def main() -> None:
    mode = sys.argv[1]
    if mode == "grpc-server":
        uvloop.run(_grpc_server(int(sys.argv[2])))
    elif mode == "grpc-client":
        uvloop.run(_grpc_client(int(sys.argv[2]), int(sys.argv[3])))
    elif mode == "passthrough":
        _passthrough(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    time.sleep(0)
    main()
