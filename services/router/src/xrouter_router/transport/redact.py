"""What an error may carry out of the router: anything that looks like a credential (and the
configured provider keys themselves) removed, and upstream text cut to 1 KiB. Applied once, where
errors leave for the gateway (transport/errors.py); the log keeps the uncut text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

LIMIT = 1024  # bytes of UTF-8 per string, and of metadata.raw as a whole
REDACTED = "[redacted]"
_MIN_SECRET = 8  # shorter configured values would redact ordinary words

# Authorization schemes followed by their credential; key-ish query or form parameters; the key
# shapes of OpenAI/Anthropic (sk-...), ours (xr-...) and Google (AIza...).
_PATTERNS = re.compile(
    r"(?P<scheme>\b(?:Bearer|Basic|Api-Key|OAuth)\s+)[A-Za-z0-9._~+/=:\-]+"
    r"|(?P<param>\b(?:api[_-]?key|key|access[_-]?token|token|secret|password)=)[^&\s\"',;]+"
    r"|\b(?:sk|xr)-[A-Za-z0-9_\-]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}",
    re.IGNORECASE)
_SENSITIVE_FIELD = re.compile(
    r"authorization|api[_-]?key|apikey|secret|password|token$|access[_-]?token|credentials?",
    re.IGNORECASE)


def _replace(match: re.Match[str]) -> str:
    return (match.group("scheme") or match.group("param") or "") + REDACTED


def cut(text: str, limit: int = LIMIT) -> str:
    """`text` in at most `limit` bytes of UTF-8 (never a broken character)."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


class Redactor:
    """Removes credentials from error text and metadata; `secrets` are values to remove
    wherever they appear (the configured provider keys)."""

    __slots__ = ("_literal",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, values))) if values else None

    def clean(self, text: str) -> str:
        """`text` with credentials removed, uncut (for the log)."""
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        return _PATTERNS.sub(_replace, text)

    def text(self, text: str) -> str:
        """`text` as a client may see it: credentials removed, at most 1 KiB."""
        return cut(self.clean(text))

    def value(self, value: Any) -> Any:
        """A JSON value with every string cleaned and cut, and fields named like credentials
        blanked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: REDACTED if isinstance(k, str) and _SENSITIVE_FIELD.search(k)
                    and value[k] else self.value(value[k]) for k in value}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def metadata(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """error.metadata for the client: cleaned, and `raw` (an upstream body) at most 1 KiB
        as a whole: a longer body becomes its JSON text, cut."""
        out = {k: self.value(v) for k, v in metadata.items()}
        raw = out.get("raw")
        if raw is not None and not isinstance(raw, str):
            encoded = orjson.dumps(raw)
            if len(encoded) > LIMIT:
                out["raw"] = cut(encoded.decode())
        return out


PATTERNS_ONLY = Redactor()
