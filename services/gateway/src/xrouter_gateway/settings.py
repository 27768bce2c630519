"""The gateway's settings, read once from the environment at startup."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from xrouter_common.env import ConfigError, env_bool, env_float, env_int, env_str
from xrouter_common.tls import CertFiles, optional_path, require_files
from xrouter_gateway.router_tls import RouterTls


def _networks(text: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks, checked at startup."""
    out = tuple(part.strip() for part in text.split(",") if part.strip())
    for item in out:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"XROUTER_GATEWAY_TRUSTED_PROXIES: {item!r} is not an IP address "
                              "or network") from None
    return out


_CALLBACK_HOST = re.compile(r"^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$")


def _callback_hosts(text: str) -> tuple[str, ...]:
    """XROUTER_OAUTH_ALLOWED_CALLBACKS: comma-separated hosts, each optionally with a port."""
    out = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    for item in out:
        if _CALLBACK_HOST.match(item) is None:
            raise ConfigError(f"XROUTER_OAUTH_ALLOWED_CALLBACKS: {item!r} is not a host or "
                              "host:port")
    return out


def _router_tls(env: Mapping[str, str] | None) -> RouterTls | None:
    """XROUTER_GATEWAY_ROUTER_TLS_*: mutual TLS to the routers, or None (plaintext)."""
    files = CertFiles(optional_path(env_str("XROUTER_GATEWAY_ROUTER_TLS_CERT", "", env)),
                      optional_path(env_str("XROUTER_GATEWAY_ROUTER_TLS_KEY", "", env)),
                      optional_path(env_str("XROUTER_GATEWAY_ROUTER_TLS_CA", "", env)))
    if not files.paths():
        return None
    if files.ca is None or (files.cert is None) != (files.key is None):
        raise ConfigError("XROUTER_GATEWAY_ROUTER_TLS_CA is required with TLS to the router, and "
                          "XROUTER_GATEWAY_ROUTER_TLS_CERT and _KEY go together")
    require_files("XROUTER_GATEWAY_ROUTER_TLS_*", files)
    return RouterTls(files, env_str("XROUTER_GATEWAY_ROUTER_TLS_SERVER_NAME", "", env),
                     env_float("XROUTER_GATEWAY_ROUTER_TLS_RELOAD_SECONDS", 5.0, env,
                               minimum=0.05))


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str
    port: int
    router_target: str
    router_retries: int
    max_body_bytes: int
    request_timeout: float
    sse_commit_after: float
    sse_keepalive: float
    workers: int = 1
    # Multiplex streams per router channel for whole-answer chat (0: a gRPC call each).
    router_lanes: int = 4
    access_log: bool = True
    drain_seconds: int = 30
    # Slow and abusive clients (see docs/configuration.md, "Hostile clients").
    header_timeout: float = 20.0
    body_timeout: float = 60.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 4096
    auth_failures_per_minute: int = 20
    auth_throttle_addresses: int = 65536
    trusted_proxies: tuple[str, ...] = field(default=())
    # Mutual TLS to the routers (None: plaintext, for a router on 127.0.0.1).
    router_tls: RouterTls | None = None
    # OAuth PKCE (docs/oauth.md): the plain method, and the callback hosts allowed (empty: any).
    oauth_allow_plain: bool = False
    oauth_allowed_callbacks: tuple[str, ...] = field(default=())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        return cls(
            host=env_str("XROUTER_GATEWAY_HOST", "127.0.0.1", env),
            port=env_int("XROUTER_GATEWAY_PORT", 8000, env),
            router_target=env_str("XROUTER_ROUTER_TARGET", "127.0.0.1:50051", env),
            router_retries=env_int("XROUTER_ROUTER_RETRIES", 2, env),
            max_body_bytes=env_int("XROUTER_MAX_BODY_BYTES", 10 * 1024 * 1024, env, minimum=1024),
            request_timeout=env_float("XROUTER_REQUEST_TIMEOUT", 600.0, env, minimum=1.0),
            sse_commit_after=env_float("XROUTER_SSE_COMMIT_AFTER", 1.0, env),
            sse_keepalive=env_float("XROUTER_SSE_KEEPALIVE", 3.0, env, minimum=0.05),
            workers=env_int("XROUTER_GATEWAY_WORKERS", 1, env, minimum=1),
            router_lanes=env_int("XROUTER_ROUTER_LANES", 4, env, minimum=0),
            access_log=env_bool("XROUTER_ACCESS_LOG", True, env),
            drain_seconds=env_int("XROUTER_GATEWAY_DRAIN_SECONDS", 30, env, minimum=0),
            header_timeout=env_float("XROUTER_GATEWAY_HEADER_TIMEOUT", 20.0, env, minimum=0.1),
            body_timeout=env_float("XROUTER_GATEWAY_BODY_TIMEOUT", 60.0, env, minimum=0.1),
            max_header_bytes=env_int("XROUTER_GATEWAY_MAX_HEADER_BYTES", 32 * 1024, env,
                                     minimum=1024),
            max_connections=env_int("XROUTER_GATEWAY_MAX_CONNECTIONS", 4096, env, minimum=1),
            auth_failures_per_minute=env_int("XROUTER_GATEWAY_AUTH_FAILURES_PER_MINUTE", 20, env),
            auth_throttle_addresses=env_int("XROUTER_GATEWAY_AUTH_THROTTLE_ADDRESSES", 65536,
                                            env, minimum=16),
            trusted_proxies=_networks(env_str("XROUTER_GATEWAY_TRUSTED_PROXIES", "", env)),
            router_tls=_router_tls(env),
            oauth_allow_plain=env_bool("XROUTER_OAUTH_ALLOW_PLAIN", False, env),
            oauth_allowed_callbacks=_callback_hosts(
                env_str("XROUTER_OAUTH_ALLOWED_CALLBACKS", "", env)),
        )
