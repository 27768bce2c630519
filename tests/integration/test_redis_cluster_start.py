"""The tests' Redis Cluster starts even when a port it chose is taken before redis-server binds
it (another process's connection took it in between): that node is started on other ports."""

from __future__ import annotations

import socket

import pytest

from tests.infra import redis_cluster
from tests.infra.redis_cluster import RedisCluster


def test_a_port_taken_between_choosing_and_binding_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    choose = redis_cluster.free_ports
    calls = []

    def first_with_the_taken_port(count: int) -> list[int]:
        calls.append(count)
        ports = [p for p in choose(count) if p != port]
        return [port, *ports[:count - 1]] if len(calls) == 1 else ports
    monkeypatch.setattr(redis_cluster, "free_ports", first_with_the_taken_port)
    cluster = RedisCluster()
    try:
        cluster.start()
        assert port not in cluster.ports and len(set(cluster.ports)) == redis_cluster.NODES
        assert len(cluster.master_ports()) == redis_cluster.NODES // 2
        assert len(calls) == 2  # the first choice, and one other port for the node that lost it
    finally:
        cluster.stop()
        taken.close()
