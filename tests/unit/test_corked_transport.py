"""CorkedTransport: the writes of one loop iteration leave in one write, in order; close()
sends what is kept first; abort() drops it."""

from __future__ import annotations

import asyncio

from xrouter_gateway.corked import CorkedTransport


class Recording(asyncio.Transport):
    """Stands in for uvloop's socket transport: what was written, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


async def next_iteration() -> None:
    await asyncio.sleep(0)


async def test_a_head_and_a_body_written_in_one_iteration_leave_in_one_write() -> None:
    inner = Recording()
    corked = CorkedTransport(inner, asyncio.get_running_loop())
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(bytearray(b"{}"))
    assert inner.writes == [] and corked.get_write_buffer_size() == 40
    await next_iteration()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    corked.write(b"data: 1\n\n")  # a later iteration: a write of its own
    await next_iteration()
    assert inner.writes[1:] == [b"data: 1\n\n"]


async def test_close_sends_what_is_kept_first_and_abort_drops_it() -> None:
    inner = Recording()
    corked = CorkedTransport(inner, asyncio.get_running_loop())
    corked.writelines([b"a", b"", b"b"])
    corked.close()
    assert (inner.writes, inner.closed) == ([b"ab"], True)
    await next_iteration()  # the scheduled flush finds nothing more, and writes nothing
    assert inner.writes == [b"ab"]

    inner = Recording()
    corked = CorkedTransport(inner, asyncio.get_running_loop())
    corked.write(b"dropped")
    corked.abort()
    await next_iteration()
    assert (inner.writes, inner.aborted) == ([], True)
