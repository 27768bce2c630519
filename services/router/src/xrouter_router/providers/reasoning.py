"""The one `reasoning` request parameter (OpenRouter's shape, carried in ChatRequest.extra_json:
`{"effort": "minimal|low|medium|high|xhigh|none", "max_tokens": N, "exclude": bool,
"enabled": bool}`) as the adapters read it, and the effort-to-budget rule the providers that
take a token budget (Anthropic, Gemini) share.

See docs/features.md for how each provider's own parameter is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Share of max_tokens given to thinking per effort (OpenRouter's documented ratios), and the
# bounds of a budget: Anthropic refuses budgets under 1024; 32000 is OpenRouter's ceiling.
_RATIO = {"minimal": 0.1, "low": 0.2, "medium": 0.5, "high": 0.8, "xhigh": 0.95}
MIN_BUDGET = 1024
MAX_BUDGET = 32000
# The budget of an effort when the request sets no max_tokens either.
_DEFAULT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32000}
DEFAULT_EFFORT = "medium"


@dataclass(frozen=True, slots=True)
class Reasoning:
    """What the client asked for. `enabled` is False for `effort: "none"` / `enabled: false`
    (the client asked for no reasoning at all)."""

    enabled: bool
    effort: str | None = None
    max_tokens: int | None = None
    exclude: bool = False

    def effort_or_default(self) -> str:
        return self.effort or DEFAULT_EFFORT

    def budget(self, max_tokens: int | None) -> int:
        """Thinking tokens to allow: the explicit max_tokens, else the effort's share of the
        answer's max_tokens (or a fixed budget per effort), within [MIN_BUDGET, MAX_BUDGET]
        for efforts."""
        if self.max_tokens is not None:
            return self.max_tokens
        effort = self.effort_or_default()
        if max_tokens is None:
            return _DEFAULT_BUDGET.get(effort, _DEFAULT_BUDGET[DEFAULT_EFFORT])
        share = int(max_tokens * _RATIO.get(effort, _RATIO[DEFAULT_EFFORT]))
        return max(min(share, MAX_BUDGET), MIN_BUDGET)


def _parse(value: Any) -> Reasoning | None:
    if not isinstance(value, dict):
        return None
    effort = value.get("effort")
    effort = effort if isinstance(effort, str) and effort else None
    budget = value.get("max_tokens")
    budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else None
    enabled = value.get("enabled") is not False and effort != "none" and budget != 0
    return Reasoning(enabled, effort, budget, value.get("exclude") is True)


def from_extra(extra: dict[str, Any]) -> Reasoning | None:
    """The `reasoning` of already parsed pass-through parameters (None: not asked)."""
    return _parse(extra.get("reasoning"))


def requested(extra_json: bytes) -> Reasoning | None:
    """The request's `reasoning` (None: not asked). Pass-through JSON without the word is not
    parsed, so requests that do not ask pay nothing."""
    if b'"reasoning"' not in extra_json:
        return None
    extra = orjson.loads(extra_json)
    return from_extra(extra) if isinstance(extra, dict) else None


def shown(reasoning: Reasoning | None) -> bool:
    """Whether the client sees the reasoning a model returns (`exclude: true` hides it; it
    is billed all the same, from the provider's token counts)."""
    return reasoning is None or not reasoning.exclude
