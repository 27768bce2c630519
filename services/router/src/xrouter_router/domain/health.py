"""Live provider status from real traffic: up after a success, down after repeated failures."""

from __future__ import annotations

DOWN_AFTER_FAILURES = 3


class ProviderHealth:
    """Per-provider consecutive-failure counts; in-process (shared state comes with routing)."""

    def __init__(self, providers: list[str]) -> None:
        self._failures: dict[str, int | None] = dict.fromkeys(providers)

    def record(self, provider: str, ok: bool) -> None:
        if ok:
            self._failures[provider] = 0
        else:
            self._failures[provider] = (self._failures.get(provider) or 0) + 1

    def status(self, provider: str) -> str:
        failures = self._failures.get(provider)
        if failures is None:
            return "unknown"
        return "down" if failures >= DOWN_AFTER_FAILURES else "up"

    def snapshot(self) -> dict[str, str]:
        return {name: self.status(name) for name in self._failures}
