"""The incremental text/event-stream decoder: whole events whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from xrouter_router.providers.sse import SSEDecoder, SSEEvent

STREAM = (
    b": OPENROUTER PROCESSING\r\n\r\n"
    b'data: {"id":"1","choices":[{"delta":{"content":"h\xc3\xa9"}}]}\r\n\r\n'
    b"event: ping\n"
    b"data: {}\n\n"
    b"data: line one\n"
    b": a comment between data lines\n"
    b"data: line two\n\n"
    b"id: 7\nretry: 100\ndata:no-space\n\n"
    b"data:  two spaces\n\n"
    b"data\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    SSEEvent("message", b'{"id":"1","choices":[{"delta":{"content":"h\xc3\xa9"}}]}'),
    SSEEvent("ping", b"{}"),
    SSEEvent("message", b"line one\nline two"),
    SSEEvent("message", b"no-space"),
    SSEEvent("message", b" two spaces"),
    SSEEvent("message", b""),
    SSEEvent("message", b"[DONE]"),
]


def _feed_all(chunks: list[bytes]) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events, decoder


def test_a_whole_stream_at_once() -> None:
    events, decoder = _feed_all([STREAM])
    assert events == EVENTS
    assert decoder.pending() is False


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    events, decoder = _feed_all([STREAM[i:i + 1] for i in range(len(STREAM))])
    assert events == EVENTS
    assert decoder.pending() is False


def test_every_two_chunk_split_gives_the_same_events() -> None:
    for cut in range(len(STREAM) + 1):
        events, decoder = _feed_all([STREAM[:cut], STREAM[cut:]])
        assert events == EVENTS, cut
        assert decoder.pending() is False, cut


def test_events_are_returned_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b\n\nda") == [SSEEvent("message", b"a"), SSEEvent("message", b"b")]
    assert decoder.feed(b"ta: c\r") == []
    assert decoder.feed(b"\n\r\n") == [SSEEvent("message", b"c")]


def test_an_event_name_without_data_dispatches_nothing_and_does_not_leak() -> None:
    events, _ = _feed_all([b"event: update\n\ndata: x\n\n"])
    assert events == [SSEEvent("message", b"x")]


def test_comment_only_blocks_dispatch_nothing() -> None:
    events, decoder = _feed_all([b": keep-alive\n\n: keep-alive\n\n"])
    assert events == []
    assert decoder.pending() is False


@pytest.mark.parametrize("cut", [
    b'data: {"choices":[{"delta":{"content":"Hel',   # mid-line
    b"data: complete line\n",                         # a data line, no blank line after it
    b"data: one\n\ndata: two\n",                      # one whole event, then a started one
    b"event: ping\ndata: x\r\n",
])
def test_pending_on_a_cut_stream(cut: bytes) -> None:
    _, decoder = _feed_all([cut])
    assert decoder.pending() is True


def test_nothing_pending_before_any_input_or_after_whitespace_only() -> None:
    assert SSEDecoder().pending() is False
    _, decoder = _feed_all([b"data: x\n\n", b"  "])
    assert decoder.pending() is False
