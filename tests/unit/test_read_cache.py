"""The account reads' cache: the last good answer per caller, served with its age only while the
database is unavailable, bounded, and never to another caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from xrouter_router.domain.errors import DatabaseUnavailable, InternalError
from xrouter_router.domain.read_cache import Answer, ReadCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def value(v: str) -> Callable[[], Awaitable[str]]:
    async def fetch() -> str:
        return v
    return fetch


async def down() -> str:
    raise DatabaseUnavailable()


async def test_a_fresh_read_is_answered_fresh_and_kept_for_while_the_database_is_away() -> None:
    clock = Clock()
    cache = ReadCache(clock=clock)
    assert await cache.read("key-a", ("credits", "acct"), value("10")) == Answer("10")
    clock.now += 7.5
    assert await cache.read("key-a", ("credits", "acct"), down) == Answer("10", 7.5)
    assert cache.served == 1


async def test_a_later_good_read_replaces_the_kept_one_and_restarts_its_age() -> None:
    clock = Clock()
    cache = ReadCache(clock=clock)
    await cache.read("key-a", "what", value("old"))
    clock.now += 5
    await cache.read("key-a", "what", value("new"))
    clock.now += 2
    assert await cache.read("key-a", "what", down) == Answer("new", 2.0)


async def test_an_answer_is_only_served_to_the_caller_that_read_it() -> None:
    cache = ReadCache(clock=Clock())
    await cache.read("key-a", ("credits", "acct"), value("a's"))
    with pytest.raises(DatabaseUnavailable):
        await cache.read("key-b", ("credits", "acct"), down)
    with pytest.raises(DatabaseUnavailable):  # nor what it did not read
        await cache.read("key-a", ("key", "key-a"), down)


async def test_other_errors_are_not_answered_from_the_cache() -> None:
    cache = ReadCache(clock=Clock())
    await cache.read("key-a", "what", value("v"))

    async def broken() -> str:
        raise InternalError("a bug")
    with pytest.raises(InternalError):
        await cache.read("key-a", "what", broken)


async def test_the_cache_is_bounded_and_forgets_the_least_recently_used_first() -> None:
    cache = ReadCache(size=2, clock=Clock())
    await cache.read("a", "w", value("1"))
    await cache.read("b", "w", value("2"))
    assert await cache.read("a", "w", down) == Answer("1", 0.0)  # a is now the most recent
    await cache.read("c", "w", value("3"))
    assert len(cache) == 2
    with pytest.raises(DatabaseUnavailable):
        await cache.read("b", "w", down)
    assert (await cache.read("a", "w", down)).value == "1"
    assert (await cache.read("c", "w", down)).value == "3"


def test_a_cache_holds_at_least_one_answer() -> None:
    with pytest.raises(ValueError, match="size must be positive"):
        ReadCache(size=0)
