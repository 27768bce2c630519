"""The console's Overview while PostgreSQL is down (cluster mode, a pair of the test's own): the
balance is the router's last good read, and the page says how old it is; with the database back,
the note is gone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Problems, sign_in
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha_disposable  # noqa: F401 - the fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import Cluster, running_cluster
from tests.support import until


@pytest.fixture
async def cluster(tmp_path: Path, catalog: Path, postgres_ha_disposable: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    # One replica: the last good read is a replica's own.
    async with running_cluster(tmp_path, catalog, postgres_ha_disposable, redis_cluster,
                               replicas=1) as running:
        yield running


def _database_up(cluster: Cluster, value: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return cluster.metric("xrouter_router_database_up") == value
    return check


async def test_the_overview_says_its_figures_are_a_last_good_read_while_postgres_is_down(
        cluster: Cluster, postgres_ha_disposable: PostgresHA,  # noqa: F811
        page: Page, problems: Problems) -> None:
    await cluster.top_up("125.5")
    manager, _ = await cluster.key(tier="mgmt")
    await sign_in(page, cluster.url, manager)
    await expect(page.get_by_test_id("balance")).to_have_text("125.50 ₽")
    assert await page.get_by_test_id("stale").count() == 0

    # From here the daily chart's usage report (which needs the database) may answer 503, also
    # to the page's own refresh while the replica has yet to see the database down.
    problems.allow(503)
    postgres_ha_disposable.stop_primary()
    await until(_database_up(cluster, 0), 60, "the replica seeing the database down")
    await page.reload()
    # The age is the router's X-XRouter-Stale, whole seconds here.
    await expect(page.get_by_test_id("stale")).to_have_text(
        re.compile(r"^The database is unavailable: these figures are from \d+ s ago\.$"))
    await expect(page.get_by_test_id("balance")).to_have_text("125.50 ₽")  # the last good read

    postgres_ha_disposable.promote_standby()
    await until(_database_up(cluster, 1), 60, "the replica seeing the database back")
    await page.reload()
    await expect(page.get_by_test_id("balance")).to_have_text("125.50 ₽")
    await expect(page.get_by_test_id("stale")).to_have_count(0)
