"""CPU of the personal-data guard per request: detection, masking and block-mode reporting of a
2 KB Russian prompt (2048 characters; with and without personal data), and streaming
restoration of an answer of the same size fed in 16-character deltas; then the guard as the
router runs it with the NER detector (XROUTER_PII_NER=natasha: the regular expressions plus
Natasha's names and places) on the same prompt. Prints process CPU per call (the best of five
rounds). Without the natasha package it says so instead of the NER figure."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from xrouter_router.domain.pii import REGEX_DETECTOR, StreamRestorer, detect, kinds_found, mask

_PLAIN = (
    "Добрый день! Подготовьте, пожалуйста, краткое резюме договора поставки оборудования для "
    "склада в Подмосковье. Срок поставки — до 15.03.2026, сумма договора 1 250 000 руб., в том "
    "числе НДС 22%. Заказ № 4507123456 от 12.01.2026 оплачен частично (счёт 2026-0117). "
    "Учтите, что поставщик просит перенести отгрузку на 8 рабочих дней из-за задержки на таможне. ")
_PERSONAL = (
    "Контактное лицо заказчика: менеджер, тел. +7 (916) 123-45-67, запасной 8 495 765-43-21, "
    "почта ivan.petrov@example.ru. Паспорт серия 45 07 № 123456, СНИЛС 112-233-445 95, "
    "ИНН 771234567859; организация ИНН 7707083893. Оплата картой 4111 1111 1111 1111. ")


def prompt(personal: bool, size: int = 2048) -> str:
    unit = _PLAIN + (_PERSONAL if personal else _PLAIN)
    return (unit * (size // len(unit) + 1))[:size]


def per_call_us(fn: Callable[[], object], rounds: int = 5, calls: int = 200) -> float:
    """The best of `rounds` (the machine is shared: the best round is the least disturbed)."""
    for _ in range(50):
        fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - started) / calls * 1e6)
    return best


def stream(masked_answer: str, mapping: dict[str, str]) -> Callable[[], object]:
    deltas = [masked_answer[i:i + 16] for i in range(0, len(masked_answer), 16)]

    def run() -> str:
        restorer = StreamRestorer(mapping)
        return "".join(restorer.feed(d) for d in deltas) + restorer.flush()
    return run


def ner_line() -> str:
    """The guard's CPU with the NER detector, or why it was not measured."""
    try:
        from xrouter_router.pii_ner import NatashaDetector
        ner = NatashaDetector()
    except ImportError as exc:
        return (f"guard with NER (natasha): not measured: {exc.name or exc} is not installed "
                "in this venv (make install installs it, from requirements-dev.txt)")
    detectors = (REGEX_DETECTOR, ner)
    lines = []
    for personal in (False, True):
        text = prompt(personal)
        ms = per_call_us(partial(mask, [text], detectors), calls=10) / 1000
        found = len(detect(text, detectors))
        lines.append(f"{'with' if personal else 'no':4} personal data ({found:2} findings) "
                     f"{ms:5.1f} ms")
    return "guard with NER (regex + natasha), mask of a 2048-character prompt: " + "; ".join(lines)


def main() -> None:
    print("guard without NER (regular expressions only), 2048-character Russian prompt:")
    for personal in (False, True):
        text = prompt(personal)
        kind = "with personal data" if personal else "no personal data"
        print(f"{kind:19} ({len(detect(text)):2} findings): "
              f"detect {per_call_us(partial(detect, text)):7.1f} µs  "
              f"mask {per_call_us(partial(mask, [text])):7.1f} µs  "
              f"block {per_call_us(partial(kinds_found, [text])):7.1f} µs")
    masked = mask([prompt(True)])
    print(f"stream restore of a 2048-character answer in 16-character deltas: "
          f"{per_call_us(stream(masked.texts[0], dict(masked.mapping))):.1f} µs")
    print(ner_line())


if __name__ == "__main__":
    main()
