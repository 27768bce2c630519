"""The tests' Redis Cluster starts even when a port it chose is taken before redis-server binds
it (another process's connection took it in between): that node is started on other ports."""

from __future__ import annotations

import pytest

from tests.infra import redis_cluster
from tests.infra.redis_cluster import RedisCluster
from tests.infra.taken_port import FirstChoiceTaken, taken_port


def test_a_port_taken_between_choosing_and_binding_is_replaced(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with taken_port() as port:
        choose = FirstChoiceTaken(redis_cluster.free_ports, port)
        monkeypatch.setattr(redis_cluster, "free_ports", choose)
        cluster = RedisCluster()
        try:
            cluster.start()
            assert port not in cluster.ports and len(set(cluster.ports)) == redis_cluster.NODES
            assert len(cluster.master_ports()) == redis_cluster.NODES // 2
            assert choose.calls == 2  # the first choice, and another port for the node that lost it
        finally:
            cluster.stop()
