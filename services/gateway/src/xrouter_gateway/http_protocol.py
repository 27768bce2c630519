"""uvicorn's httptools protocol with the gateway's limits on slow and abusive clients: header and
body read deadlines, a cap on header bytes and on open connections, and the documented JSON
error shape for requests that never reach the application (then the connection closes)."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from xrouter_gateway.anthropic_format import error_json
from xrouter_gateway.corked import CorkedTransport
from xrouter_gateway.errors import APIError
from xrouter_gateway.settings import GatewaySettings

_MESSAGES = b"/v1/messages"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_connections: int

    @classmethod
    def of(cls, s: GatewaySettings) -> ConnectionLimits:
        return cls(s.header_timeout, s.body_timeout, s.max_header_bytes, s.max_connections)


class _HeadersTooLarge(Exception):
    pass


def raw_error(status: int, message: str, retry_after: int = 0, *,
              anthropic: bool = False) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection; in Anthropic's error shape
    for a request to its Messages API (`anthropic`), as the application answers there."""
    err = APIError(status, message)
    body = orjson.dumps(error_json(err) if anthropic else {"error": err.body()})
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n")
    if retry_after:
        head += f"retry-after: {retry_after}\r\n"
    return head.encode() + b"\r\n" + body


class GuardedProtocol(HttpToolsProtocol):
    """One connection. The header deadline runs from the connection's start (or the first byte
    of a later request) to the end of the headers; the body deadline from there to the end of
    the body. Deadlines are (re)considered after each read, so a request that arrives in one
    read sets no timer; a request waiting behind an earlier one's answer (uvicorn reads nothing
    meanwhile) has none running. Keep-alive idleness stays uvicorn's (timeout_keep_alive)."""

    limits: ClassVar[ConnectionLimits]
    _corked: CorkedTransport  # the connection's transport, from connection_made

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for = ""  # "headers" or "body" while a deadline runs
        self._phase = ""  # "headers" or "body" while a request is being received
        self._header_bytes = 0
        self._streamed = 0
        self._messages = 0
        self._too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # A response's head and body in one write (corked.py).
        self._corked = CorkedTransport(transport, self.loop)
        super().connection_made(self._corked)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(raw_error(503, "The gateway has too many open connections; retry "
                                        "shortly", retry_after=1))
            return
        self._arm("headers")  # a connection that sends nothing is closed after it

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        messages = self._messages
        try:
            self.parser.feed_data(data)
            if self._phase == "headers" and messages == self._messages:
                # Still in the same request's headers: these bytes were all header bytes, even
                # those httptools holds until a header line ends (one huge line stays bounded).
                self._streamed += len(data)
                if self._streamed > self.limits.max_header_bytes:
                    self._too_large = True
                    raise _HeadersTooLarge
        except _HeadersTooLarge:
            self._refuse(self._too_large_answer())
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            self._refuse(self._too_large_answer() if self._too_large
                         else raw_error(400, "Invalid HTTP request"))
        else:
            self._schedule()

    # ---- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages += 1
        self._header_bytes = self._streamed = 0
        self._phase = "headers"

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = "body"
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = ""
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # uvicorn calls this from the send of an answer's last bytes: they leave now, not after
        # the layers above have done their bookkeeping (access log, metrics) in the same turn.
        self._corked.flush()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._schedule()  # a request that waited behind this answer is the client's again

    # ---- deadlines --------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Which deadline should run now: the current phase's, unless the request waits for an
        earlier answer on this connection."""
        phase = self._phase
        if phase == "headers":
            waiting = self.cycle is not None and not self.cycle.response_complete
        elif phase == "body":
            waiting = any(cycle is self.cycle for cycle, _ in self.pipeline)
        else:
            waiting = True  # nothing is being received: nothing to time
        if waiting:
            self._disarm()
        elif self._deadline_for != phase:
            self._arm(phase)

    def _arm(self, phase: str) -> None:
        self._disarm()
        late = self._headers_late if phase == "headers" else self._body_late
        seconds = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        self._deadline = self.loop.call_later(seconds, late)
        self._deadline_for = phase

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            self._deadline_for = ""

    def _headers_late(self) -> None:
        self._deadline, self._deadline_for = None, ""
        if self._phase == "headers":
            self._refuse(raw_error(408, "The request headers did not arrive within "
                                        f"{self.limits.header_timeout:g} seconds",
                                   anthropic=self._anthropic()))
        elif not self.transport.is_closing():
            self.transport.close()  # a connection that never sent a byte

    def _body_late(self) -> None:
        self._deadline, self._deadline_for = None, ""
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The handler waiting for the body sees a disconnect; what it answers is dropped.
            self.transport.write(raw_error(408, "The request body did not arrive within "
                                                f"{self.limits.body_timeout:g} seconds",
                                           anthropic=self._anthropic()))
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()

    def _too_large_answer(self) -> bytes:
        return raw_error(431, f"The request headers are larger than "
                              f"{self.limits.max_header_bytes} bytes", anthropic=self._anthropic())

    def _anthropic(self) -> bool:
        """Whether the request (as far as its URL arrived) is for Anthropic's Messages API."""
        url: bytes = getattr(self, "url", b"")
        return url.startswith(_MESSAGES)

    def _refuse(self, response: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


@functools.cache
def _protocol_for(limits: ConnectionLimits) -> type[GuardedProtocol]:
    return type("GatewayProtocol", (GuardedProtocol,), {"limits": limits})


def protocol_class(settings: GatewaySettings) -> type[GuardedProtocol]:
    """The protocol class uvicorn instantiates per connection (one class per set of limits)."""
    return _protocol_for(ConnectionLimits.of(settings))


class EnvProtocol(GuardedProtocol):
    """For worker processes (uvicorn pickles the class by name): limits from the environment,
    read once per worker process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).limits = _env_limits()
        super().__init__(*args, **kwargs)


@functools.cache
def _env_limits() -> ConnectionLimits:
    return ConnectionLimits.of(GatewaySettings.from_env())
