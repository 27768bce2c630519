"""Precision and recall of the personal-data guard per kind on the synthetic labelled set
tests/data/pii_eval.jsonl (exact kind and span). `--write` regenerates the set from its seed
(tests/pii_eval_data.py); `--errors` lists every miss and every extra finding."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.pii_eval: the set and its scoring, shared with the unit test

from tests.pii_eval import EVAL_SET, load, misses, score  # noqa: E402
from tests.pii_eval_data import records  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="regenerate the set first")
    parser.add_argument("--errors", action="store_true", help="list the misses and extra findings")
    args = parser.parse_args()
    if args.write:
        EVAL_SET.write_text("".join(r.to_json() + "\n" for r in records()), encoding="utf-8")
    data = load()
    print(f"{len(data)} texts, {sum(len(r.labels) for r in data)} labelled findings, "
          f"{sum(not r.labels for r in data)} texts without personal data")
    print("| kind | labelled | found | right | precision | recall |")
    print("|---|---|---|---|---|---|")
    for kind, s in score(data).items():
        labelled, found = s.true_positives + s.false_negatives, s.true_positives + s.false_positives
        print(f"| {kind.value} | {labelled} | {found} | {s.true_positives} "
              f"| {float(s.precision):.3f} ({s.precision}) | {float(s.recall):.3f} ({s.recall}) |")
    if args.errors:
        for error in misses(data):
            print(*error, sep="\t")


if __name__ == "__main__":
    main()
