"""For the tests of the servers' port races: a port held open by this process, and a stand-in
for a server module's `free_ports` whose first answer puts that port where a node will try it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Choose = Callable[[int], list[int]]


@contextmanager
def taken_port() -> Iterator[int]:
    """A port another socket listens on, for as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


class FirstChoiceTaken:
    """Calls `choose` (the real free_ports) but gives `port` at index `at` of its first answer;
    `calls` counts how often ports were chosen."""

    def __init__(self, choose: Choose, port: int, at: int = 0) -> None:
        self._choose = choose
        self._port = port
        self._at = at
        self.calls = 0

    def __call__(self, count: int) -> list[int]:
        self.calls += 1
        ports = [p for p in self._choose(count) if p != self._port]
        if self.calls == 1:
            ports = ports[:count - 1]
            ports.insert(self._at, self._port)
        return ports
