"""What the router's core reports as it works (for metrics), as a port: the domain calls an
Observer; the composition root plugs in the Prometheus one, tests a recording one."""

from __future__ import annotations

from typing import Protocol

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.types import Usage


class Observer(Protocol):
    def attempt(self, deployment: Deployment, outcome: str, seconds: float, health: str) -> None:
        """One provider attempt ended (`outcome`: success or the UpstreamError reason)."""

    def generation(self, model: str, provider: str, *, outcome: str, streamed: bool,
                   attempts: int, usage: Usage | None) -> None:
        """A request ended: outcome success, stream_error, or the error kind."""


class NullObserver:
    def attempt(self, deployment: Deployment, outcome: str, seconds: float, health: str) -> None:
        return None

    def generation(self, model: str, provider: str, *, outcome: str, streamed: bool,
                   attempts: int, usage: Usage | None) -> None:
        return None
