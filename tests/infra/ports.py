"""Ports for the servers the tests (and scripts/run_cluster.py, the bench) start on 127.0.0.1.

A port is chosen now and bound later, by a server process that is still starting. Asking the
kernel for one (binding port 0) gives a port of its ephemeral range, the range it also takes a
local port from for every outgoing connection. A connection that happened to take the chosen
port before the server bound it (a Redis node meeting its peers, a router opening its pools)
makes the server fail with EADDRINUSE: that is how CI once lost a `make run-cluster` start,
whose gateway port was chosen tens of seconds before the gateway bound it.

So a port is chosen below the ephemeral range, where the kernel never puts a connection, and
recorded in a registry shared by every process on the machine (a file under a lock), so that two
processes choosing at the same time (the test run and the run_cluster.py it starts) cannot get
the same port either. An entry expires after `HOLD` seconds: by then its server has bound it or
has gone, and a bound port is refused by the bind check anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HOLD = 900.0
REGISTRY = Path(tempfile.gettempdir()) / "xrouter-test-ports"
# Below this, ports of well-known services; a Redis node's bus port is its port + BUS_OFFSET.
LOWEST = 10000
BUS_OFFSET = 10000


# The operating system's randomness: a test that seeds `random` (hypothesis does) must not make
# every process choose the same ports in the same order.
_SYSTEM = random.SystemRandom()


def candidate(low: int, high: int) -> int:
    return _SYSTEM.randint(low, high)


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    try:
        low, high = path.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _registry() -> Iterator[dict[int, float]]:
    """The ports given out and not yet expired, under an exclusive lock; what the block adds
    is written back."""
    with open(REGISTRY, "a+", encoding="ascii") as handle:
        with contextlib.suppress(OSError):
            os.chmod(REGISTRY, 0o666)  # tests run as root and as other users on one machine
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        now = time.time()
        given: dict[int, float] = {}
        for line in handle.read().splitlines():
            with contextlib.suppress(ValueError):
                port, at = line.split()
                if now - float(at) < HOLD:
                    given[int(port)] = float(at)
        yield given
        handle.seek(0)
        handle.truncate()
        handle.write("".join(f"{port} {at}\n" for port, at in given.items()))


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """`count` distinct ports nobody listens on, outside the kernel's ephemeral range and given
    to no other caller in the last `HOLD` seconds. With `bus`, each port P's P + BUS_OFFSET is
    such a port too (a Redis Cluster node's bus), and is recorded as given."""
    low, _ = ephemeral_range()
    top = low - 1 - (BUS_OFFSET if bus else 0)
    if top - LOWEST < 1000:  # an unusual ephemeral range: ask the kernel, as before
        return _kernel_ports(count, bus=bus)
    with _registry() as given:
        ports: list[int] = []
        while len(ports) < count:
            port = candidate(LOWEST, top)
            wanted = (port, port + BUS_OFFSET) if bus else (port,)
            if any(p in given for p in wanted) or not all(bindable(p) for p in wanted):
                continue
            ports.append(port)
            given.update((p, time.time()) for p in wanted)
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def _kernel_ports(count: int, *, bus: bool) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in ports or (bus and not (port + BUS_OFFSET < 65536 and bindable(port + BUS_OFFSET))):
            continue
        ports.append(port)
    return ports
