"""Fixtures every suite can use: the fake OpenAI upstream and the test catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
