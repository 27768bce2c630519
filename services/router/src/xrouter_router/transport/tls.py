"""The router's server side of gateway <-> router mutual TLS: certificates from mounted files,
re-read when they change (grpc's dynamic credentials ask for them on each new connection, so a
rotation needs no restart and touches no connection already open)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import grpc

from xrouter_common.tls import CertFiles, PemSet, Watched

log = logging.getLogger("xrouter.router")


def _configuration(pems: PemSet) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(pems.key, pems.cert)],
                                                     root_certificates=pems.ca)


def server_credentials(files: CertFiles) -> grpc.ServerCredentials:
    """mTLS credentials: the router's certificate and key, and the CA that signs the gateways'
    client certificates (a client without one, or with one from another CA, is refused in the
    handshake)."""
    watched = Watched(files)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by grpc before each new connection's handshake: one stat() per file.
        pems = watched.changed()
        if pems is None:
            return None  # keep the configuration in use
        log.info("router TLS certificates changed on disk: new connections use them")
        return _configuration(pems)

    # grpc documents None as "no change"; its type stub does not say so.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
    return grpc.dynamic_ssl_server_credentials(_configuration(watched.current), fetcher,
                                               require_client_authentication=True)
