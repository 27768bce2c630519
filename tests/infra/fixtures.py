"""Session fixtures for real infrastructure; import them into a suite's conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.redis_cluster import RedisCluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One 3-master, 3-replica Redis Cluster per test session, stopped at the end."""
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_tls_cluster() -> Iterator[RedisCluster]:
    """The same cluster speaking TLS only (tls-port, TLS bus and replication, client
    certificates required), started on first use."""
    cluster = RedisCluster(tls=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def killed(redis_cluster: RedisCluster) -> Iterator[list[int]]:
    """Masters the test kills; restarted afterwards so the session's cluster is whole again."""
    ports: list[int] = []
    try:
        yield ports
    finally:
        for port in ports:
            redis_cluster.restart(port)
