"""PostgreSQL fixtures; import them into the test module or conftest.py that uses them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.postgres_ha import PostgresHA


@pytest.fixture(scope="session")
def postgres_ha() -> Iterator[PostgresHA]:
    """One primary + synchronous standby per test session, stopped at the end. Tests must not stop
    or promote its nodes (use `postgres_ha_disposable`), and get isolation from fresh databases
    (PostgresHA.create_database) rather than from the cluster."""
    cluster = PostgresHA().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_ha_disposable() -> Iterator[PostgresHA]:
    """A pair of the test's own, for tests that stop the primary or promote the standby."""
    cluster = PostgresHA().start()
    try:
        yield cluster
    finally:
        cluster.stop()
