"""The personal-data guard's optional NER detector: people's names and places through Natasha
(slovnet's news NER model, shipped in the natasha wheel and loaded offline), enabled by
XROUTER_PII_NER=natasha. Its PER spans are names; its LOC spans count as addresses, though
what it finds are places (cities, streets named after people, countries), not whole postal
addresses (docs/compliance.md). Loaded once at startup; about 60 ms of CPU per 2 KB prompt,
so the guard runs it in its own thread (domain/pii/guard.py), never on the event loop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from xrouter_common.env import ConfigError
from xrouter_router.domain.pii import REGEX_DETECTOR, Detector, Finding, Kind
from xrouter_router.domain.pii.guard import PiiGuard

_KINDS = {"PER": Kind.PERSON, "LOC": Kind.ADDRESS}


class NatashaDetector:
    """Names (PERSON) and places (ADDRESS) in Russian text. One instance is not meant for two
    threads at once: the guard gives it a single worker thread."""

    def __init__(self) -> None:
        import natasha  # imported here: the dependency is needed only when enabled

        self._doc: Any = natasha.Doc
        self._segmenter = natasha.Segmenter()
        self._tagger = natasha.NewsNERTagger(natasha.NewsEmbedding())

    def find(self, text: str) -> list[Finding]:
        if not any(c.isupper() for c in text):  # names and places are written capitalised
            return []
        doc = self._doc(text)
        doc.segment(self._segmenter)
        doc.tag_ner(self._tagger)
        return [Finding(_KINDS[s.type], s.start, s.stop) for s in doc.spans if s.type in _KINDS]


def build_guard(ner: str) -> tuple[PiiGuard, ThreadPoolExecutor | None]:
    """The guard with the regular expressions, plus the NER detector `ner` names ("" none;
    settings.py accepts only "natasha") and the one thread it runs in (the caller shuts it
    down at exit)."""
    if not ner:
        return PiiGuard(), None
    try:
        detectors: tuple[Detector, ...] = (REGEX_DETECTOR, NatashaDetector())
    except ImportError as exc:
        raise ConfigError(f"XROUTER_PII_NER={ner} needs the natasha package, which is not "
                          f"installed ({exc}): pip install natasha, or unset it") from None
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pii-ner")
    return PiiGuard(detectors, executor), executor
