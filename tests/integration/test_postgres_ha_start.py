"""The tests' PostgreSQL pair starts even when a port it chose is taken before postgres binds it
(another process's connection took it in between): that node is started on another port."""

from __future__ import annotations

import psycopg
import pytest

from tests.infra import postgres_ha
from tests.infra.postgres_ha import PostgresHA
from tests.infra.taken_port import FirstChoiceTaken, taken_port


@pytest.mark.parametrize("node", [0, 1])
def test_a_port_taken_between_choosing_and_binding_is_replaced(
        monkeypatch: pytest.MonkeyPatch, node: int) -> None:
    with taken_port() as port:
        choose = FirstChoiceTaken(postgres_ha.free_ports, port, at=node)
        monkeypatch.setattr(postgres_ha, "free_ports", choose)
        pair = PostgresHA()
        try:
            pair.start()
            assert port not in pair.ports and len(set(pair.ports)) == 2
            assert choose.calls == 2  # the first choice, and another port for the node that lost it
            with psycopg.connect(pair.primary, autocommit=True) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            pair.wait_sync()  # the standby streams from the primary, in sync
        finally:
            pair.stop()
