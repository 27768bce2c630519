"""The gateway's client side of gateway <-> router mutual TLS: channel credentials from mounted
files (the CA that signs the routers' certificates, the gateway's own certificate and key), and
the check, every few seconds in the background, that rebuilds the channel when they change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from xrouter_common.tls import CertFiles, PemSet, Watched

log = logging.getLogger("xrouter.gateway")


@dataclass(frozen=True, slots=True)
class RouterTls:
    """XROUTER_GATEWAY_ROUTER_TLS_*: `files.ca` verifies the router, `files.cert`/`files.key`
    are the gateway's client certificate; `server_name` overrides the name checked against the
    router's certificate (default: the target's host name)."""

    files: CertFiles
    server_name: str = ""
    reload_seconds: float = 5.0


def credentials(pems: PemSet) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=pems.ca or None,
                                        private_key=pems.key or None,
                                        certificate_chain=pems.cert or None)


def channel_options(tls: RouterTls | None) -> list[tuple[str, str]]:
    if tls is None or not tls.server_name:
        return []
    return [("grpc.ssl_target_name_override", tls.server_name)]


async def watch(watched: Watched, swap: Callable[[PemSet], Awaitable[bool]],
                every: float) -> None:
    """Forever: when the files change, `swap` builds a channel from them and returns whether it
    took it (it connected); a set it did not take is tried again at the next check."""
    while True:
        await asyncio.sleep(every)
        pems = watched.changed()
        if pems is None:
            continue
        if await swap(pems):
            log.info("router TLS certificates changed on disk: new channel in use")
        else:
            log.warning("router TLS certificates changed on disk, but a channel with them did not "
                        "connect: keeping the current one, trying again in %g s", every)
            watched.forget()
