"""Gateway <-> router mutual TLS with real certificates: the router refuses clients without a
certificate from its client CA, and both sides take rotated certificate files without a restart
and without a failed call."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.infra.certs import Authority, Issued, replace, serial_of, write_pair
from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_common.tls import CertFiles
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.router_tls import RouterTls
from xrouter_router.transport.server import GrpcServer
from xrouter_router.transport.tls import server_credentials

# Bounds for the background swaps (checked every 0.05 s); generous for a loaded machine.
SWAP_DEADLINE = 30.0


class PeerServicer(pb_grpc.RouterServicer):
    """ProviderStatus names the caller's client certificate (its common name)."""

    async def ProviderStatus(self, request: pb.ProviderStatusRequest,  # noqa: N802 - gRPC's
                             context: Any) -> pb.ProviderStatusResponse:
        names = context.auth_context().get("x509_common_name", [b"?"])
        return pb.ProviderStatusResponse(providers=[pb.ProviderStatusInfo(
            name=names[0].decode(), status="operational")])


@dataclass
class Pki:
    directory: Path
    ca: Authority
    router: CertFiles
    gateway: CertFiles
    gateway_ca: Path  # the router's client CA file

    def issue_router(self, ca: Authority) -> Issued:
        issued = ca.issue("router")
        write_pair(self.directory, "router", issued)
        return issued


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = Authority("xrouter-test-ca")
    router_cert, router_key = write_pair(tmp_path, "router", ca.issue("router"))
    gateway_cert, gateway_key = write_pair(tmp_path, "gateway", ca.issue("gateway-1", client=True))
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    (tmp_path / "client-ca.crt").write_bytes(ca.pem)
    return Pki(tmp_path, ca, CertFiles(router_cert, router_key, tmp_path / "client-ca.crt"),
               CertFiles(gateway_cert, gateway_key, tmp_path / "ca.crt"),
               tmp_path / "client-ca.crt")


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[GrpcServer]:
    # The other methods answer UNIMPLEMENTED (the generated base class).
    grpc_server = GrpcServer(PeerServicer(), "127.0.0.1:0",  # type: ignore[abstract]
                             credentials=server_credentials(pki.router),
                             health_listen="127.0.0.1:0")
    await grpc_server.start()
    try:
        yield grpc_server
    finally:
        await grpc_server.stop(0)


def client(server: GrpcServer, files: CertFiles, reload_seconds: float = 5.0) -> RouterClient:
    return RouterClient(f"127.0.0.1:{server.port}", retries=0,
                        tls=RouterTls(files, "localhost", reload_seconds))


async def peer_name(router: RouterClient) -> str:
    reply = await router.provider_status(timeout=5.0)
    return str(reply.providers[0].name)


async def test_a_client_with_a_certificate_from_the_client_ca_is_served(
        server: GrpcServer, pki: Pki) -> None:
    router = client(server, pki.gateway)
    try:
        assert await router.healthy(timeout=5.0)
        assert await peer_name(router) == "gateway-1"
    finally:
        await router.close()


async def test_the_router_refuses_a_client_without_a_certificate(server: GrpcServer,
                                                                 pki: Pki) -> None:
    router = client(server, CertFiles(None, None, pki.gateway.ca))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await router.provider_status(timeout=5.0)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not await router.healthy(timeout=2.0)
    finally:
        await router.close()


async def test_the_router_refuses_a_certificate_signed_by_another_ca(server: GrpcServer,
                                                                     pki: Pki) -> None:
    stranger = Authority("some-other-ca")
    cert, key = write_pair(pki.directory, "stranger", stranger.issue("gateway-1", client=True))
    router = client(server, CertFiles(cert, key, pki.gateway.ca))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await router.provider_status(timeout=5.0)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await router.close()


def served_serial(port: int, pki: Pki) -> int:
    """The serial of the certificate the router presents to a new connection."""
    context = ssl.create_default_context(cafile=str(pki.gateway.ca))
    context.load_cert_chain(str(pki.gateway.cert), str(pki.gateway.key))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return serial_of(der)


async def test_a_rotated_router_certificate_is_served_without_restart_or_failed_call(
        server: GrpcServer, pki: Pki) -> None:
    first = serial_of(pki.router.cert.read_bytes())  # type: ignore[union-attr]
    assert await asyncio.to_thread(served_serial, server.port, pki) == first
    router = client(server, pki.gateway)
    try:
        assert await peer_name(router) == "gateway-1"  # a connection made with the first one
        rotated = pki.issue_router(pki.ca)
        assert rotated.serial != first
        assert await asyncio.to_thread(served_serial, server.port, pki) == rotated.serial
        # The connection opened before the rotation goes on serving.
        assert await peer_name(router) == "gateway-1"
    finally:
        await router.close()


async def test_the_gateway_swaps_to_rotated_client_certificates_without_a_failed_call(
        server: GrpcServer, pki: Pki) -> None:
    router = client(server, pki.gateway, reload_seconds=0.05)
    watcher = asyncio.ensure_future(router.watch_certificates())
    answers: list[str] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            answers.append(await peer_name(router))  # any failure fails the test

    try:
        caller = asyncio.ensure_future(load())
        assert await peer_name(router) == "gateway-1"
        # A new CA for the gateways: the router trusts both while the gateways move over.
        new_ca = Authority("xrouter-test-ca-2")
        replace(pki.gateway_ca, pki.ca.pem + new_ca.pem)
        write_pair(pki.directory, "gateway", new_ca.issue("gateway-2", client=True))
        deadline = time.monotonic() + SWAP_DEADLINE
        while await peer_name(router) != "gateway-2":
            assert time.monotonic() < deadline, "the gateway never used its rotated certificate"
        stop.set()
        await caller
        # Every call of the load succeeded (a failure would have raised from `caller`).
        assert answers[0] == "gateway-1"
        assert set(answers) <= {"gateway-1", "gateway-2"}
    finally:
        stop.set()
        watcher.cancel()
        await router.close()


async def test_probes_get_plaintext_health_on_their_own_port_and_nothing_else(
        server: GrpcServer) -> None:
    probe = RouterClient(f"127.0.0.1:{server.health_port}", retries=0)
    plaintext = RouterClient(f"127.0.0.1:{server.port}", retries=0)
    try:
        assert await probe.healthy(timeout=5.0)
        with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
            await probe.provider_status(timeout=5.0)
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert not await plaintext.healthy(timeout=2.0)  # the mTLS port takes no plaintext
    finally:
        await probe.close()
        await plaintext.close()
