"""The personal-data guard (152-FZ): detectors of Russian personal data in request texts, masking
with typed placeholders, restoration of answers (whole and streamed) and block-mode reporting.
Pure: no I/O, nothing compiled per call. docs/compliance.md describes what it finds and misses."""

from xrouter_router.domain.pii.block import blocked, kinds_found
from xrouter_router.domain.pii.detectors import REGEX_DETECTOR, Detector, RegexDetector, detect, resolve
from xrouter_router.domain.pii.kinds import Finding, Kind
from xrouter_router.domain.pii.masking import Masked, mask
from xrouter_router.domain.pii.restore import StreamRestorer, placeholder, restore

__all__ = [
    "REGEX_DETECTOR", "Detector", "Finding", "Kind", "Masked", "RegexDetector", "StreamRestorer",
    "blocked", "detect", "kinds_found", "mask", "placeholder", "resolve", "restore",
]
