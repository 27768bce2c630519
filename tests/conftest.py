"""Fixtures every suite can use: the fake OpenAI upstream, the test catalog, and Moscow as the
local time zone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import xrouter_common.grpc_core  # noqa: F401 - the services' gRPC transport, set before grpc loads
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support import write_catalog


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(slow_seconds=3.0).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    return write_catalog(tmp_path, upstream.base_url)


@pytest.fixture
def moscow_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is Moscow's (UTC+3, TZ) in the test, and whatever it was after it."""
    monkeypatch.setenv("TZ", "Europe/Moscow")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
