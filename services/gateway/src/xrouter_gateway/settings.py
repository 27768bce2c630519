"""The gateway's settings, read once from the environment at startup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xrouter_common.env import env_bool, env_float, env_int, env_str


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
    access_log: bool = True
    drain_seconds: int = 30

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
            access_log=env_bool("XROUTER_ACCESS_LOG", True, env),
            drain_seconds=env_int("XROUTER_GATEWAY_DRAIN_SECONDS", 30, env, minimum=0),
        )
