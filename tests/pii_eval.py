"""The personal-data guard's labelled evaluation set (tests/data/pii_eval.jsonl, synthetic: no
real person) and its scoring: precision and recall per kind, a finding counting as right only
with the exact kind and span. Used by scripts/bench/pii_eval.py and tests/unit/test_pii_eval.py."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from xrouter_router.domain.pii import Kind, detect

EVAL_SET = Path(__file__).parent / "data" / "pii_eval.jsonl"

Label = tuple[Kind, int, int]


@dataclass(frozen=True)
class Record:
    """One text and the personal data in it (kind and span), as a person would mark it."""

    text: str
    labels: tuple[Label, ...]

    def to_json(self) -> str:
        return json.dumps({"text": self.text, "findings": [
            {"kind": k.value, "start": s, "end": e, "value": self.text[s:e]} for k, s, e in self.labels]},
            ensure_ascii=False)


@dataclass(frozen=True)
class Score:
    """Counts for one kind over the set; precision and recall as exact fractions."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> Fraction:
        found = self.true_positives + self.false_positives
        return Fraction(self.true_positives, found) if found else Fraction(1)

    @property
    def recall(self) -> Fraction:
        expected = self.true_positives + self.false_negatives
        return Fraction(self.true_positives, expected) if expected else Fraction(1)


def load(path: Path = EVAL_SET) -> list[Record]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        labels = tuple((Kind(f["kind"]), f["start"], f["end"]) for f in row["findings"])
        for _, start, end in labels:  # the file's spans and values agree
            assert row["text"][start:end] == next(
                f["value"] for f in row["findings"] if (f["start"], f["end"]) == (start, end))
        records.append(Record(row["text"], labels))
    return records


def score(records: Iterable[Record]) -> dict[Kind, Score]:
    counts = {kind: [0, 0, 0] for kind in Kind}
    for record in records:
        expected = set(record.labels)
        found = {(f.kind, f.start, f.end) for f in detect(record.text)}
        for kind, _, _ in found & expected:
            counts[kind][0] += 1
        for kind, _, _ in found - expected:
            counts[kind][1] += 1
        for kind, _, _ in expected - found:
            counts[kind][2] += 1
    return {kind: Score(*c) for kind, c in counts.items()}


def misses(records: Sequence[Record]) -> list[tuple[str, str, str]]:
    """Every error on the set: ("missed" or "extra", kind, the characters), for a reader."""
    errors = []
    for record in records:
        expected = set(record.labels)
        found = {(f.kind, f.start, f.end) for f in detect(record.text)}
        errors += [("missed", k.value, record.text[s:e]) for k, s, e in sorted(expected - found, key=str)]
        errors += [("extra", k.value, record.text[s:e]) for k, s, e in sorted(found - expected, key=str)]
    return errors
