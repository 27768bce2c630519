"""Properties of the personal-data guard for any input: findings are ordered, disjoint and pass
their kind's check; streamed restoration, whatever the split into deltas, equals whole-text
restoration; masking then restoring gives the request back; masking is deterministic."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from xrouter_router.domain.pii import Kind, StreamRestorer, detect, mask, restore
from xrouter_router.domain.pii.checksums import inn_valid, luhn_valid, snils_valid

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)

MAPPING = {
    "[PHONE_1]": "+7 (916) 123-45-67", "[PHONE_12]": "8 800 555-35-35", "[EMAIL_1]": "a.b@example.ru",
    "[INN_2]": "7707083893", "[CARD_1]": "4111 1111 1111 1111", "[PASSPORT_1]": "45 07 123456",
}
# Pieces that make restoration hard: known placeholders, invented ones, their fragments and
# brackets on their own.
TRICKY = ["[PHONE_1]", "[PHONE_12]", "[PHONE_123]", "[EMAIL_1]", "[INN_2]", "[CARD_1]", "[PASSPORT_1]",
          "[PHONE_9]", "[SNILS_1]", "[ИНН_1]", "[phone_1]", "[PHO", "NE_1]", "[PHONE_", "_1]", "[", "]",
          "[[", "]]", "_", "1"]
PERSONAL = ["+7 (916) 123-45-67", "89161234567", "89161234520", "8 495 765-43-21", "ivan.petrov@example.ru",
            "мария@пример.рф", "112-233-445 95", "11223344595", "7707083893", "771234567859",
            "4111 1111 1111 1111", "2200000000000004", "паспорт 45 07 123456", "4507 № 123456"]
WORDS = st.text(alphabet="абвгде ЖЗ xyz.,:;-()+@№0123456789\n", max_size=12)


def texts_from(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(pieces), WORDS), max_size=12).map("".join)


@st.composite
def answer_and_split(draw: st.DrawFn) -> tuple[str, list[str]]:
    answer = draw(texts_from(TRICKY))
    cuts = sorted(draw(st.lists(st.integers(0, len(answer)), max_size=10)))
    bounds = [0, *cuts, len(answer)]
    return answer, [answer[a:b] for a, b in itertools.pairwise(bounds)]


@SETTINGS
@given(answer_and_split())
def test_streamed_restoration_equals_whole_restoration(case: tuple[str, list[str]]) -> None:
    answer, deltas = case
    restorer = StreamRestorer(MAPPING)
    streamed = [restorer.feed(d) for d in deltas]
    assert "".join(streamed) + restorer.flush() == restore(answer, MAPPING)


@SETTINGS
@given(answer_and_split())
def test_streaming_holds_back_no_more_than_a_partial_placeholder(case: tuple[str, list[str]]) -> None:
    _, deltas = case
    restorer = StreamRestorer(MAPPING)
    fed = ""
    for delta in deltas:
        restorer.feed(delta)
        fed += delta
        held = restorer.held
        assert held == "" or (fed.endswith(held) and any(k.startswith(held) and k != held for k in MAPPING))


@SETTINGS
@given(st.lists(texts_from(PERSONAL + TRICKY), min_size=1, max_size=4))
def test_masking_then_restoring_gives_the_request_back(texts: list[str]) -> None:
    masked = mask(texts)
    assert [restore(t, masked.mapping) for t in masked.texts] == texts
    assert mask(texts) == masked
    assert len(set(masked.mapping.values())) == len(masked.mapping)  # one placeholder per value


CHECKS = {Kind.INN: inn_valid, Kind.SNILS: snils_valid, Kind.CARD: luhn_valid}


@SETTINGS
@given(texts_from(PERSONAL + TRICKY))
def test_findings_are_ordered_disjoint_and_pass_their_check(text: str) -> None:
    findings = detect(text)
    assert all(0 <= f.start < f.end <= len(text) for f in findings)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    for f in findings:
        if f.kind in CHECKS:
            assert CHECKS[f.kind]("".join(c for c in text[f.start:f.end] if c.isdigit())), f
