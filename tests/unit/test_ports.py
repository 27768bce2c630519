"""tests/infra/ports.py: ports for servers that bind them later are chosen where no outgoing
connection can take them first, and no two callers (processes included) get the same one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import ports

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ports"
    monkeypatch.setattr(ports, "REGISTRY", path)
    return path


def picks(monkeypatch: pytest.MonkeyPatch, *order: int) -> Iterator[int]:
    """ports.candidate answers `order`, in order."""
    answers = iter(order)
    monkeypatch.setattr(ports, "candidate", lambda low, high: next(answers))
    return answers


def test_a_port_is_below_the_ephemeral_range_and_nobody_listens_on_it() -> None:
    low, high = ports.ephemeral_range()
    chosen = ports.free_ports(200)
    assert len(set(chosen)) == 200
    assert all(ports.LOWEST <= port < low for port in chosen)
    with socket.socket() as sock:  # the kernel's own choice (an outgoing connection's) is in it
        sock.bind(("127.0.0.1", 0))
        assert low <= sock.getsockname()[1] <= high


def forget(registry: Path, *chosen: int) -> None:
    """Takes `chosen` out of the registry, as if they had never been given out."""
    lines = registry.read_text().splitlines()
    registry.write_text("".join(f"{line}\n" for line in lines if int(line.split()[0]) not in chosen))


def test_a_port_given_out_is_not_given_again_until_it_expires(
        monkeypatch: pytest.MonkeyPatch, registry: Path) -> None:
    first, second = ports.free_ports(2)
    forget(registry, second)
    picks(monkeypatch, first, second)
    assert ports.free_port() == second
    # An entry older than HOLD is dropped: its server bound the port long ago, or never will.
    registry.write_text(f"{first} {time.time() - ports.HOLD - 1}\n")
    picks(monkeypatch, first)
    assert ports.free_port() == first
    assert registry.read_text().split()[0] == str(first)


def test_a_port_someone_listens_on_is_skipped(
        monkeypatch: pytest.MonkeyPatch, registry: Path) -> None:
    taken, free = ports.free_ports(2)
    registry.unlink()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", taken))
        sock.listen()
        picks(monkeypatch, taken, free)
        assert ports.free_port() == free


def test_a_redis_port_has_its_bus_port_free_and_given_out_too(
        monkeypatch: pytest.MonkeyPatch, registry: Path) -> None:
    low, _ = ports.ephemeral_range()
    (port,) = ports.free_ports(1, bus=True)
    assert port + ports.BUS_OFFSET < low
    given = {int(line.split()[0]) for line in registry.read_text().splitlines()}
    assert given == {port, port + ports.BUS_OFFSET}
    (spare,) = ports.free_ports(1, bus=True)
    forget(registry, spare, spare + ports.BUS_OFFSET)
    # A port whose bus port is a port given out is skipped.
    picks(monkeypatch, port - ports.BUS_OFFSET, spare)
    assert ports.free_ports(1, bus=True) == [spare]


def test_processes_choosing_at_once_never_share_a_port(registry: Path) -> None:
    code = ("import json, sys; from tests.infra import ports; from pathlib import Path; "
            f"ports.REGISTRY = Path({str(registry)!r}); print(json.dumps(ports.free_ports(300)))")
    children = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
                for _ in range(4)]
    chosen = [port for child in children for port in json.loads(child.communicate(timeout=60)[0])]
    assert [child.returncode for child in children] == [0, 0, 0, 0]
    assert len(chosen) == len(set(chosen)) == 1200


def test_an_unusual_ephemeral_range_falls_back_to_the_kernel(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registry: Path) -> None:
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    chosen = ports.free_ports(5, bus=True)
    assert len(set(chosen)) == 5
    assert all(port + ports.BUS_OFFSET < 65536 for port in chosen)
    assert not registry.exists()
