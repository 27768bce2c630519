"""The contract every fake upstream offers to the shared provider scenario suite
(tests/integration/test_provider_scenarios.py), so one suite runs against every adapter.

A fake module `tests/fakes/<name>_upstream.py` that defines `harness() -> ScenarioHarness` is
picked up by the suite automatically. Scenarios are chosen by the upstream model name that
`upstream_model(scenario)` returns, and must behave like this, in the provider's own wire format:

  echo      answer "echo: " + the text of the last user message; usage reported
  tools     call the request's first tool with arguments {"city": "Moscow", "unit": "celsius"}
            (streamed: the arguments split over at least two chunks where the format allows)
  500       the provider's HTTP 500 error body
  429       the provider's HTTP 429 error body, with `Retry-After: 7` where the provider sends it
  slow      wait 3 s before answering
  garbage   HTTP 200 with an HTML body
  cut       stream: send "echo:" and part of the text, then close the connection
  no-usage  stream: like echo but without any usage figures
  drip      stream: one token every 50 ms, 10,000 of them; record a disconnect as `drip`
A wrong credential (`config(wrong_key=True)`) gets the provider's 401 error body.
Messages with tool calls and tool results must be checked against the provider's format (a
malformed one is answered with the provider's 400 error body), then answered like `echo`.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from tests.fakes.server import FakeUpstream
from xrouter_router.providers.config import ProviderConfig

SCENARIOS = ("echo", "tools", "500", "429", "slow", "garbage", "cut", "no-usage", "drip")
TOOL_ARGUMENTS = {"city": "Moscow", "unit": "celsius"}
# Structured outputs (scenarios json and json-bad, where a fake has them): TOOL_ARGUMENTS
# conforms to WEATHER_SCHEMA, NON_CONFORMING does not.
WEATHER_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                  "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}
NON_CONFORMING = {"city": 7}


class ScenarioHarness(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def requests(self) -> list[dict[str, Any]]: ...

    @property
    def disconnects(self) -> list[str]: ...

    @property
    def retry_after(self) -> bool:
        """Whether the provider's 429 carries Retry-After."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def config(self, *, wrong_key: bool = False) -> ProviderConfig:
        """A ProviderConfig for this fake, as the catalog file would produce it."""
        ...

    def upstream_model(self, scenario: str) -> str: ...


FakeT = TypeVar("FakeT", bound=FakeUpstream)


class FakeHarness(Generic[FakeT]):
    """The part of a ScenarioHarness every fake shares: starting and stopping it, and what it
    saw (a disconnect recorded under the model `fake-drip` is the scenario `drip`). Subclasses
    give `type`, `retry_after`, `config` and `upstream_model`."""

    def __init__(self, fake: FakeT) -> None:
        self.fake = fake

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.fake.requests

    @property
    def disconnects(self) -> list[str]:
        return ["drip" if m == "fake-drip" else m for m in self.fake.disconnects]

    def start(self) -> None:
        self.fake.start()

    def stop(self) -> None:
        self.fake.stop()
