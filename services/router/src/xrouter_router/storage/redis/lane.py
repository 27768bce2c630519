"""Lane: the request path's few Redis commands written straight to the master that owns their
slot, on one pipelined connection per node, with redis-py's cluster client kept for everything
else (topology, redirects, failover, all other commands)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from xrouter_router.storage.redis.stats import Script, run_script

Command = Sequence[str | int | bytes]
# Error replies of commands that did not run: a redirect, a cluster or node in transition.
# redis-py's cluster client sends such a command again and re-learns the topology on the way.
NOT_RUN = frozenset({"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY",
                     "MASTERDOWN"})


class LaneMiss(Exception):
    """The lane did not run the command (a redirect, a node in transition, no lane to that
    node): the caller sends it through the full cluster client."""


@dataclass(slots=True)
class _Waiting:
    futures: list[asyncio.Future[list[Any]]]
    count: int
    sent: float
    replies: list[Any] = field(default_factory=list)


class _NodeConnection(asyncio.Protocol):
    """One TCP connection to a node. Commands go out in order, those of one turn of the event
    loop in one write; hiredis parses the replies, which come back in the same order. A batch
    of commands has one future for all its replies: a caller that gives up (a timeout, a
    cancelled request) leaves it done, and its replies are read and dropped when they come.

    A WAIT (wait_after) goes once at the end of the turn's write, for every caller that asked
    for it in that turn: WAIT answers for all the connection's writes before it, and Redis runs
    nothing else from the connection while a WAIT blocks, so one WAIT per turn answers each
    caller as soon as its own would have, at one round trip to the replicas instead of one per
    caller."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError)  # error replies: redis-py's type
        self._waiting: deque[_Waiting] = deque()
        self._transport: asyncio.Transport | None = None
        self._unsent: list[bytes] = []  # written together at the end of this loop iteration
        self._waits: dict[bytes, list[asyncio.Future[list[Any]]]] = {}  # after them, once each
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                head = self._waiting[0]
                head.replies.append(reply)
                if len(head.replies) == head.count:
                    self._waiting.popleft()
                    for future in head.futures:
                        if not future.done():
                            future.set_result(head.replies)
        except (hiredis.ProtocolError, IndexError):  # garbage, or a reply nobody asked for
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}")
        while self._waiting:
            for future in self._waiting.popleft().futures:
                if not future.done():
                    future.set_exception(error)

    def send(self, payload: bytes, count: int, stall: float) -> asyncio.Future[list[Any]]:
        if self.lost or self._transport is None:
            raise LaneMiss("connection to Redis lost")  # nothing sent: the client may send it
        now = time.monotonic()
        if self._waiting and now - self._waiting[0].sent > stall:
            self.close()  # a node that stopped answering: fail what waits, reconnect next time
            raise LaneMiss(f"Redis did not answer within {stall} s")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append(_Waiting([future], count, now))
        if not self._unsent:
            loop.call_soon(self._flush)
        self._unsent.append(payload)
        return future

    def wait_after(self, command: bytes) -> asyncio.Future[list[Any]]:
        """The reply (a one-item list) of the WAIT `command` that follows everything sent to
        this node in this turn of the loop, sent once for every caller of the turn. Call it
        right after send(), which scheduled the turn's write."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waits.setdefault(command, []).append(future)
        return future

    def _flush(self) -> None:
        """One write (a system call, which on loopback also does the receiver's TCP work) for
        every command sent to this node in one turn of the event loop, the turn's WAITs last."""
        unsent, self._unsent = self._unsent, []
        waits, self._waits = self._waits, {}
        if self._transport is None or self.lost:
            error = RedisConnectionError("connection to Redis lost before the write")
            for futures in waits.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        now = time.monotonic()
        for command, futures in waits.items():
            unsent.append(command)
            self._waiting.append(_Waiting(futures, 1, now))
        self._transport.write(b"".join(unsent) if len(unsent) > 1 else unsent[0])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _pack(command: Command) -> bytes:
    """RESP, by hiredis (its stub types the argument as a 1-tuple)."""
    pack: Any = hiredis.pack_command
    return bytes(pack(tuple(command)))


def lane_supported(client: RedisCluster) -> bool:
    """TCP or TLS (rediss://), with at most a username and password: credential providers stay
    with redis-py (the lane would have to repeat their handshakes)."""
    options = client.nodes_manager.connection_kwargs
    return (options.get("connection_class", Connection) in (Connection, SSLConnection)
            and options.get("credential_provider") is None)


def tls_context(options: dict[str, Any]) -> ssl.SSLContext | None:
    """The lane's TLS context from redis-py's own connection arguments (a rediss:// URL and its
    ssl_* options): the same CA, client certificate, verification and host-name check. None
    for plain TCP. Built once per lane; each node connection does one handshake."""
    if options.get("connection_class") is not SSLConnection:
        return None
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"),
                                         capath=options.get("ssl_ca_path"),
                                         cadata=options.get("ssl_ca_data"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"),
                                options.get("ssl_password"))
    requirement = options.get("ssl_cert_reqs", ssl.CERT_REQUIRED)
    if isinstance(requirement, str):
        requirement = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                       "required": ssl.CERT_REQUIRED}[requirement]
    context.check_hostname = bool(options.get("ssl_check_hostname", True)) and (
        requirement != ssl.CERT_NONE)
    context.verify_mode = requirement
    return context


class Lane:
    """The hot commands of one cluster client. A command goes to the master that redis-py's slot
    map names for its first key, on that node's one connection (commands in flight pipeline
    there). What the lane cannot finish goes through the client itself: a reply that means the
    command did not run (NOT_RUN: the client follows the redirect, waits for the failover, and
    updates its slot map), a node the slot map does not know. A lost connection fails the
    commands in flight on it (the caller's policy answers, as it does for redis-py's errors), and
    the next commands go through the client, which re-learns the topology, until one succeeds
    there. A command that was never written (no connection to the node, a node that stopped
    answering the commands before it) goes through the client at once. Disabled (every call to
    the client) when built with enabled=False or when not lane_supported(client)."""

    def __init__(self, client: RedisCluster, *, enabled: bool = True,
                 connect_timeout: float = 1.0, stall: float = 1.0) -> None:
        self.client = client
        self.enabled = enabled and lane_supported(client)
        self._options = client.nodes_manager.connection_kwargs
        self._tls = tls_context(self._options) if self.enabled else None
        self._connect_timeout = connect_timeout
        self._stall = stall
        self._nodes: dict[str, _NodeConnection] = {}
        self._connecting: dict[str, asyncio.Task[_NodeConnection]] = {}
        self._through_client = False  # after a lost connection, until the client succeeds
        self.fallbacks = 0  # commands the client ran instead (a metric: lane fallbacks)

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """The script's reply (EVALSHA, EVAL when the node lost its script cache); ResponseError
        for an error the script raised."""
        if not self.enabled:
            return await run_script(self.client, script, keys, args)
        try:
            reply = await self._first(keys[0], ("EVALSHA", script.sha, len(keys), *keys, *args))
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                reply = await self._first(keys[0], ("EVAL", script.text, len(keys), *keys, *args))
        except LaneMiss:
            reply = await run_script(self.client, script, keys, args)
            self.resume()
            return reply
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def send(self, key: str, commands: Sequence[Command],
                   wait: Command | None = None) -> list[Any]:
        """The replies of `commands`, sent together to the master of `key`'s slot, on one
        connection, then the reply of `wait` (a WAIT, which covers the writes before it on
        that connection; one WAIT goes for all the callers of a turn of the loop). Error replies
        come back as ResponseError values, as in redis-py's pipelines, except that LaneMiss is
        raised when the first command did not run: the caller sends the batch through the
        client."""
        if not self.enabled:
            raise LaneMiss("the lane is off")  # by choice: not a fallback
        try:
            return await self._send(key, commands, wait)
        except LaneMiss:
            self.fallbacks += 1
            raise

    async def _send(self, key: str, commands: Sequence[Command],
                    wait: Command | None) -> list[Any]:
        if self._through_client:
            raise LaneMiss("through the cluster client")
        slot = key_slot(key.encode())
        try:
            node = self.client.nodes_manager.get_node_from_slot(slot)
        except Exception:  # noqa: BLE001 - no slot map yet, or one being rebuilt: learn it
            try:
                await self.client.initialize()
                node = self.client.nodes_manager.get_node_from_slot(slot)
            except Exception as exc:  # the client will say what is wrong
                raise LaneMiss(str(exc)) from exc
        connection = self._nodes.get(node.name)
        if connection is None or connection.lost:
            connection = await self._connect(node)
        payload = b"".join(_pack(command) for command in commands)
        waited: asyncio.Future[list[Any]] | None = None
        try:
            sent = connection.send(payload, len(commands), self._stall)
            waited = None if wait is None else connection.wait_after(_pack(wait))
            replies = await sent
            if waited is not None:
                replies = [*replies, *(await waited)]
        except (RedisConnectionError, LaneMiss):
            self._through_client = True
            raise
        finally:
            if waited is not None:  # this caller gave up or failed: leave no exception unread
                if not waited.done():
                    waited.cancel()
                elif not waited.cancelled():
                    waited.exception()
        first = replies[0]
        if isinstance(first, ResponseError) and str(first).split(" ", 1)[0] in NOT_RUN:
            raise LaneMiss(str(first))
        return replies

    def connected(self) -> list[str]:
        """The nodes ("host:port") the lane holds a live connection to."""
        return [name for name, connection in self._nodes.items() if not connection.lost]

    def resume(self) -> None:
        """The caller's own use of the client succeeded after a LaneMiss: back to the lane."""
        self._through_client = False

    async def close(self) -> None:
        for task in self._connecting.values():
            task.cancel()
        for connection in self._nodes.values():
            connection.close()
        self._nodes.clear()

    async def _first(self, key: str, command: Command) -> Any:
        return (await self.send(key, (command,)))[0]

    async def _connect(self, node: ClusterNode) -> _NodeConnection:
        """One connection per node, however many commands ask for it at once."""
        task = self._connecting.get(node.name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(node))
            self._connecting[node.name] = task
            task.add_done_callback(lambda _: self._connecting.pop(node.name, None))
        try:
            connection = await asyncio.shield(task)
        except Exception as exc:  # nothing sent: the client may send it, and re-learn the nodes
            self._through_client = True
            raise LaneMiss(f"no connection to {node.name}: {exc}") from exc
        self._nodes[node.name] = connection
        return connection

    async def _open(self, node: ClusterNode) -> _NodeConnection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            try:
                _, connection = await loop.create_connection(
                    _NodeConnection, node.host, int(node.port), ssl=self._tls,
                    server_hostname=node.host if self._tls is not None else None)
            except OSError as exc:  # ssl.SSLError (a refused certificate) is an OSError
                raise RedisConnectionError(f"cannot reach Redis node {node.name}: {exc}") from exc
            password = self._options.get("password")
            if password:
                username = self._options.get("username")
                auth = ("AUTH", username, password) if username else ("AUTH", password)
                (reply,) = await connection.send(_pack(auth), 1, self._stall)
                if isinstance(reply, ResponseError):
                    connection.close()
                    raise RedisConnectionError(f"Redis node {node.name} refused AUTH: {reply}")
        return connection
