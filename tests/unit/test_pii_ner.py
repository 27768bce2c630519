"""The optional NER detector (Natasha, its bundled models, offline): a Russian name becomes
[PERSON_1] and a place [ADDRESS_1], run in the guard's own thread, and the answer gets them
back; the regular expressions still find what they find beside it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.unit.builders import request
from tests.unit.test_pii_guard import FOREIGN, MASK
from xrouter_common.env import ConfigError
from xrouter_router.domain.pii import REGEX_DETECTOR, Finding, Kind
from xrouter_router.domain.pii.guard import PiiGuard, request_texts
from xrouter_router.domain.types import Completion, Message
from xrouter_router.pii_ner import NatashaDetector, build_guard

TEXT = "Меня зовут Иван Петрович Сидоров, я живу в Москве, телефон +7 (916) 123-45-67."


@pytest.fixture(scope="module")
def ner() -> NatashaDetector:
    return NatashaDetector()


def test_natasha_finds_a_name_and_a_place(ner: NatashaDetector) -> None:
    found = ner.find(TEXT)
    assert [(f.kind, TEXT[f.start:f.end]) for f in found] == [
        (Kind.PERSON, "Иван Петрович Сидоров"), (Kind.ADDRESS, "Москве")]
    assert ner.find("всё в нижнем регистре, без имён") == []


@pytest.fixture
def thread() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pii-ner")
    yield executor
    executor.shutdown()


class _Where:
    """A detector that finds nothing and notes the thread it ran in."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def find(self, text: str) -> list[Finding]:
        self.threads.append(threading.current_thread().name)
        return []


async def test_a_russian_name_is_masked_and_restored_off_the_event_loop(
        ner: NatashaDetector, thread: ThreadPoolExecutor) -> None:
    where = _Where()
    guard = PiiGuard((REGEX_DETECTOR, ner, where), thread)
    guarded = await guard.prepare(MASK, request(text=TEXT), [FOREIGN])
    assert guarded is not None
    assert request_texts(guarded.request_for(FOREIGN)) == [
        "Меня зовут [PERSON_1], я живу в [ADDRESS_1], телефон [PHONE_1]."]
    assert len(where.threads) == 1 and where.threads[0].startswith("pii-ner")
    answer = Completion(Message(role="assistant", content="[PERSON_1], ждём вас в [ADDRESS_1]."),
                        "stop")
    assert guarded.restore(answer).message.content == "Иван Петрович Сидоров, ждём вас в Москве."


async def test_the_setting_builds_the_guard_with_natasha_in_its_own_thread() -> None:
    built, executor = build_guard("natasha")
    assert executor is not None
    try:
        guarded = await built.prepare(MASK, request(text=TEXT), [FOREIGN])
        assert guarded is not None and dict(guarded.masking.mapping)["[PERSON_1]"] == \
            "Иван Петрович Сидоров"
    finally:
        executor.shutdown()
    assert build_guard("")[1] is None


def test_the_setting_without_the_package_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "natasha", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"^XROUTER_PII_NER=natasha needs the natasha package"):
        build_guard("natasha")
