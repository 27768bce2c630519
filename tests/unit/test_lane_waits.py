"""The lane's node connection on the wire: the WAITs asked for in one turn of the loop go once,
after everything else the turn sends, and answer every caller of the turn; a caller that gave
up takes nothing from the others; a connection lost before the write fails them all.
(On real Redis nodes: tests/integration/test_redis_lane.py.)"""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from xrouter_router.storage.redis.lane import _NodeConnection, _pack

WAIT = _pack(("WAIT", 1, 100))


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


def connected() -> tuple[_NodeConnection, Recording]:
    connection, transport = _NodeConnection(), Recording()
    connection.connection_made(transport)
    return connection, transport


async def next_turn() -> None:
    await asyncio.sleep(0)


async def test_the_waits_of_one_turn_go_once_after_the_turns_commands() -> None:
    connection, transport = connected()
    first = connection.send(_pack(("SET", "a", "1")), 1, 1.0)
    first_wait = connection.wait_after(WAIT)
    other = connection.send(_pack(("GET", "b")), 1, 1.0)  # no WAIT asked: still before it
    second = connection.send(_pack(("SET", "c", "3")), 1, 1.0)
    second_wait = connection.wait_after(WAIT)
    await next_turn()
    assert transport.writes == [_pack(("SET", "a", "1")) + _pack(("GET", "b"))
                                + _pack(("SET", "c", "3")) + WAIT]
    connection.data_received(b"+OK\r\n$1\r\nb\r\n+OK\r\n")
    assert [await first, await other, await second] == [[b"OK"], [b"b"], [b"OK"]]
    assert not first_wait.done()
    connection.data_received(b":1\r\n")
    assert await first_wait == await second_wait == [1]
    # The next turn's WAIT is a WAIT of its own.
    third = connection.send(_pack(("SET", "d", "4")), 1, 1.0)
    third_wait = connection.wait_after(WAIT)
    await next_turn()
    assert transport.writes[1:] == [_pack(("SET", "d", "4")) + WAIT]
    connection.data_received(b"+OK\r\n:0\r\n")
    assert (await third, await third_wait) == ([b"OK"], [0])


async def test_a_caller_that_gave_up_takes_nothing_from_the_others() -> None:
    connection, transport = connected()
    mine, theirs = (connection.send(_pack(("SET", key, "1")), 1, 1.0) for key in "ab")
    waits = [connection.wait_after(WAIT) for _ in range(2)]
    waits[0].cancel()
    await next_turn()
    assert transport.writes[0].count(WAIT) == 1
    connection.data_received(b"+OK\r\n+OK\r\n:1\r\n")
    assert waits[0].cancelled() and await waits[1] == [1]
    assert (await mine, await theirs) == ([b"OK"], [b"OK"])
    after = connection.send(_pack(("GET", "a")), 1, 1.0)  # the replies stay in step
    await next_turn()
    connection.data_received(b"$1\r\n1\r\n")
    assert await after == [b"1"]


async def test_a_connection_lost_before_the_write_fails_every_caller_of_the_turn() -> None:
    connection, transport = connected()
    sent = connection.send(_pack(("SET", "a", "1")), 1, 1.0)
    waits = [connection.wait_after(WAIT) for _ in range(3)]
    waits[2].cancel()
    connection.connection_lost(None)
    await next_turn()
    assert transport.writes == []
    for future in (sent, waits[0], waits[1]):
        with pytest.raises(RedisConnectionError):
            await future
    assert waits[2].cancelled()


async def test_a_connection_lost_while_the_wait_blocks_fails_every_caller_of_it() -> None:
    connection, _ = connected()
    sent = [connection.send(_pack(("SET", key, "1")), 1, 1.0) for key in "ab"]
    waits = [connection.wait_after(WAIT) for _ in range(2)]
    await next_turn()
    connection.data_received(b"+OK\r\n+OK\r\n")
    assert [await future for future in sent] == [[b"OK"], [b"OK"]]
    connection.connection_lost(ConnectionResetError("reset"))
    for future in waits:
        with pytest.raises(RedisConnectionError, match="reset"):
            await future
