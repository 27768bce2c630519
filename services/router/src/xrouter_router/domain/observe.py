"""What the router's core reports as it works (for metrics), as a port: the domain calls an
Observer; the composition root plugs in the Prometheus one, tests a recording one."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.types import Usage


class Observer(Protocol):
    def attempt(self, deployment: Deployment, outcome: str, seconds: float, health: str) -> None:
        """One provider attempt ended (`outcome`: success or the UpstreamError reason)."""

    def generation(self, model: str, provider: str, *, outcome: str, streamed: bool,
                   attempts: int, usage: Usage | None) -> None:
        """A request ended: outcome success, stream_error, or the error kind."""

    def implausible_usage(self, provider: str, reason: str) -> None:
        """A provider reported counts that cannot be true; the estimate was charged instead."""


class NullObserver:
    def attempt(self, deployment: Deployment, outcome: str, seconds: float, health: str) -> None:
        return None

    def generation(self, model: str, provider: str, *, outcome: str, streamed: bool,
                   attempts: int, usage: Usage | None) -> None:
        return None

    def implausible_usage(self, provider: str, reason: str) -> None:
        return None


class SpanLike(Protocol):
    def set_attribute(self, key: str, value: str | int | float | bool) -> None: ...


class Tracer(Protocol):
    """Spans around the core's units of work (provider attempts); the composition root plugs
    in OpenTelemetry when tracing is on."""

    def span(self, name: str,
             attributes: Mapping[str, str | int | float | bool]) -> AbstractContextManager[SpanLike]:
        ...


class _NullSpan:
    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        return None


_NULL = nullcontext(_NullSpan())


class NullTracer:
    def span(self, name: str,
             attributes: Mapping[str, str | int | float | bool]) -> AbstractContextManager[SpanLike]:
        return _NULL
