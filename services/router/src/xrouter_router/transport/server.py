"""The gRPC server: Router service plus grpc.health.v1, bound and stopped gracefully."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_router.transport.accounts_servicer import AccountsServicer
from xrouter_router.transport.multiplex import Multiplexer
from xrouter_router.transport.sessions_servicer import SessionsServicer

SERVICE_NAME = "xrouter.v1.Router"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Gateways re-resolve the headless Service only when a connection closes: ending each
    # connection after 5 minutes spreads them over router replicas added since. The grace lets
    # calls in flight (streams up to XROUTER_REQUEST_TIMEOUT, 600 s) finish first.
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 630_000),
]


class GrpcServer:
    """Owns the grpc.aio server and its health servicer. With `credentials` (mutual TLS) and a
    `health_listen` address, grpc.health.v1 alone is also served there in plaintext: kubelet's
    gRPC probes speak no TLS, and health states are no secret."""

    def __init__(self, servicer: pb_grpc.RouterServicer, listen: str,
                 accounts: AccountsServicer | None = None,
                 credentials: grpc.ServerCredentials | None = None,
                 *, health_listen: str = "", sessions: SessionsServicer | None = None,
                 multiplexer: Multiplexer | None = None) -> None:
        self._server = grpc.aio.server(options=_OPTIONS)
        # The servicer's Multiplex streams, drained by stop().
        self._multiplexer = multiplexer
        pb_grpc.add_RouterServicer_to_server(servicer, self._server)
        if accounts is not None:
            pb_grpc.add_AccountsServicer_to_server(accounts, self._server)
        if sessions is not None:
            pb_grpc.add_SessionsServicer_to_server(sessions, self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.port = (self._server.add_insecure_port(listen) if credentials is None
                     else self._server.add_secure_port(listen, credentials))
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")
        self._probes: grpc.aio.Server | None = None
        self.health_port = 0
        if health_listen:
            self._probes = grpc.aio.server(options=_OPTIONS)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._probes)
            self.health_port = self._probes.add_insecure_port(health_listen)
            if self.health_port == 0:
                raise OSError(f"cannot listen on {health_listen}")

    async def start(self) -> None:
        await self._server.start()
        if self._probes is not None:
            await self._probes.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls (Multiplex streams too: their idle ones end),
        give in-flight calls `grace` seconds."""
        if self._multiplexer is not None:
            self._multiplexer.drain()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace)
        if self._probes is not None:
            await self._probes.stop(0)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
