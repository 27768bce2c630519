"""The tests' PostgreSQL pair starts even when a port it chose is taken before postgres binds it
(another process's connection took it in between): that node is started on another port."""

from __future__ import annotations

import socket

import psycopg
import pytest

from tests.infra import postgres_ha
from tests.infra.postgres_ha import PostgresHA


@pytest.mark.parametrize("node", [0, 1])
def test_a_port_taken_between_choosing_and_binding_is_replaced(
        monkeypatch: pytest.MonkeyPatch, node: int) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    choose = postgres_ha.free_ports
    calls = []

    def first_with_the_taken_port(count: int) -> list[int]:
        calls.append(count)
        ports = [p for p in choose(count) if p != port]
        if len(calls) == 1:  # the pair's two ports: `node` gets the taken one
            ports = ports[:1]
            ports.insert(node, port)
        return ports
    monkeypatch.setattr(postgres_ha, "free_ports", first_with_the_taken_port)
    pair = PostgresHA()
    try:
        pair.start()
        assert port not in pair.ports and len(set(pair.ports)) == 2
        assert len(calls) == 2  # the first choice, and another port for the node that lost it
        with psycopg.connect(pair.primary, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        pair.wait_sync()  # the standby streams from the primary, in sync
    finally:
        pair.stop()
        taken.close()
