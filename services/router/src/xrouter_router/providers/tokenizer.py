"""Local token counting for when a provider reports no usage: OpenAI's cl100k_base BPE, whose
rank file ships in this package (xrouter_router/data; nothing is downloaded at run time).

The encoding (about 40 MB in memory, 0.3 s to load) is loaded on first use only, off the event
loop, so a router whose providers always report usage never pays for it. Counts are marked
estimated: no provider bills by cl100k, but it tracks Russian and English text far better than
a character ratio.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

RANKS = Path(__file__).resolve().parent.parent / "data" / "cl100k_base.tiktoken"
RANKS_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
            r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
# Texts shorter than this are counted on the loop: a thread hop would cost more.
_INLINE_CHARS = 2000


class Cl100kCounter:
    """TokenCounter backed by tiktoken with the shipped cl100k_base ranks."""

    def __init__(self, ranks: Path = RANKS) -> None:
        self._ranks = ranks
        self._encoding: tiktoken.Encoding | None = None
        self._lock = threading.Lock()

    def _load(self) -> tiktoken.Encoding:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        with self._lock:
            if self._encoding is None:
                ranks = load_tiktoken_bpe(str(self._ranks), expected_hash=RANKS_SHA256)
                self._encoding = tiktoken.Encoding("cl100k_base", pat_str=_PATTERN,
                                                   mergeable_ranks=ranks, special_tokens={})
            return self._encoding

    def _count(self, texts: Sequence[str]) -> int:
        encoding = self._load()
        return sum(len(encoding.encode_ordinary(t)) for t in texts if t)

    async def count(self, texts: Sequence[str]) -> int:
        if self._encoding is not None and sum(len(t) for t in texts) < _INLINE_CHARS:
            return self._count(texts)
        return await asyncio.to_thread(self._count, texts)
