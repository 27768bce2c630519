"""Block mode: the kinds of personal data a request carries, and the 400 that names them (the
kinds only: a value never reaches an error, a log or a metric)."""

from __future__ import annotations

from collections.abc import Sequence

from xrouter_router.domain.errors import PersonalDataBlocked
from xrouter_router.domain.pii.detectors import REGEX_DETECTOR, Detector, detect
from xrouter_router.domain.pii.kinds import Kind
from xrouter_router.domain.pii.masking import sorted_kinds


def kinds_found(texts: Sequence[str], detectors: Sequence[Detector] = (REGEX_DETECTOR,)) -> tuple[Kind, ...]:
    """The kinds of personal data in the texts, sorted by name; empty when there is none."""
    return sorted_kinds({f.kind for text in texts for f in detect(text, detectors)})


def blocked(kinds: Sequence[Kind], param: str = "messages") -> PersonalDataBlocked:
    """The 400 for a request that the `block` policy stops: it names the kinds, never a value;
    `param` the field that carries them (messages, or an embeddings request's input)."""
    names = [k.value for k in kinds]
    return PersonalDataBlocked(
        f"The request carries personal data ({', '.join(names)}) and the key's personal-data "
        "policy is block: remove it or ask the operator for the mask policy",
        param=param, metadata={"error_code": "personal_data_blocked",
                                    "reasons": ["pii_guard"], "kinds": names})
