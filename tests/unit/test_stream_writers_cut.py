"""What a client receives does not depend on how the router cuts a stream's deltas into events
(a one-read answer's first chunk goes alone, StreamBatch.head; a last batch travels with the end
or before it): every stream writer gives the same bytes for the same deltas however they are
cut, in every inbound format."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.anthropic_stream import MessageStreamWriter
from xrouter_gateway.completions_api import TextChunkWriter
from xrouter_gateway.convert import ChunkWriter
from xrouter_gateway.responses_output import ResponseStreamWriter
from xrouter_gateway.responses_request import Echo
from xrouter_gateway.sse import StreamWriter

WRITERS: dict[str, Callable[[], StreamWriter]] = {
    "chat": lambda: ChunkWriter("gen-1"),
    "completions": lambda: TextChunkWriter("gen-1", "m"),
    "anthropic": lambda: MessageStreamWriter("msg_1", "m"),
    "responses": lambda: ResponseStreamWriter("gen-1", Echo({}, "m")),
}

_text = st.text(alphabet="ab é\n\"", max_size=6)


@st.composite
def deltas(draw: st.DrawFn) -> list[pb.ChunkDelta]:
    out = [pb.ChunkDelta(role="assistant", content="")]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["content", "reasoning", "tool"]))
        if kind == "tool":
            first = draw(st.booleans())
            out.append(pb.ChunkDelta(tool_calls=[pb.ToolCall(
                index=draw(st.integers(0, 1)), id="call_1" if first else "",
                name="f" if first else "", arguments=draw(_text))]))
        elif kind == "reasoning":
            out.append(pb.ChunkDelta(reasoning=draw(_text)))
        else:
            out.append(pb.ChunkDelta(content=draw(_text)))
    out.append(pb.ChunkDelta(finish_reason=draw(st.sampled_from(["stop", "length",
                                                                 "tool_calls"]))))
    return out


def _bytes(writer: StreamWriter, chunks: list[pb.ChunkDelta], cuts: list[int],
           with_end: bool) -> bytes:
    """The stream as SSEResponse writes it: `chunks` cut at `cuts` into events, the first with
    what was served; the last event's deltas go with the end when `with_end`."""
    bounds = [0, *sorted(set(cuts)), len(chunks)]
    events = [pb.ChatStreamEvent(chunks=chunks[a:b]) for a, b in itertools.pairwise(bounds)
              if a < b]
    events[0].model, events[0].provider, events[0].created = "up/m", "up", 7
    usage = pb.Usage(prompt_tokens=3, completion_tokens=len(chunks), total_tokens=3 + len(chunks))
    writer.served(events[0])
    body = b"".join(writer.deltas(ev) for ev in (events[:-1] if with_end else events))
    return body + (writer.deltas(events[-1]) if with_end else b"") + writer.usage(usage)


@settings(max_examples=60, deadline=None)
@given(chunks=deltas(), cuts=st.lists(st.integers(1, 9), max_size=3), with_end=st.booleans())
def test_every_writer_gives_the_same_bytes_however_the_deltas_are_cut(
        chunks: list[pb.ChunkDelta], cuts: list[int], with_end: bool) -> None:
    cuts = [c for c in cuts if c < len(chunks)]
    for name, make in WRITERS.items():
        whole = _bytes(make(), chunks, [], with_end=False)
        assert _bytes(make(), chunks, cuts, with_end) == whole, name
