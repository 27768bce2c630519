"""Precision and recall of the optional NER detector (Natasha: PER -> person, LOC -> address) on a
synthetic labelled set of Russian sentences: invented people (common first names and surnames
combined at random, no real person meant) and Russian places, in several grammatical cases,
plus sentences with neither. A finding is right when its kind matches and its span overlaps a
labelled one (NER spans differ by a word or a case ending more often than by meaning); each
labelled span is matched once. Seeded: the same set on every run.

    .venv/bin/python scripts/bench/pii_ner_eval.py [--errors]"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

from xrouter_router.domain.pii import Finding, Kind
from xrouter_router.pii_ner import NatashaDetector

SEED = 152
FIRST = ["Иван", "Мария", "Сергей", "Анна", "Дмитрий", "Елена", "Алексей", "Ольга", "Павел",
         "Татьяна", "Николай", "Ирина"]
LAST = [("Смирнов", "Смирнова"), ("Кузнецов", "Кузнецова"), ("Попов", "Попова"),
        ("Соколов", "Соколова"), ("Лебедев", "Лебедева"), ("Новиков", "Новикова"),
        ("Морозов", "Морозова"), ("Волков", "Волкова")]
FEMALE = {"Мария", "Анна", "Елена", "Ольга", "Татьяна", "Ирина"}
CITIES = ["Москва", "Казань", "Новосибирск", "Екатеринбург", "Самара", "Владивосток", "Тверь"]
CITIES_IN = {"Москва": "Москве", "Казань": "Казани", "Новосибирск": "Новосибирске",
             "Екатеринбург": "Екатеринбурге", "Самара": "Самаре", "Владивосток": "Владивостоке",
             "Тверь": "Твери"}
PLAIN = ["Отчёт за третий квартал готов, цифры сходятся.",
         "Пожалуйста, переведите этот абзац на английский язык.",
         "Сервер перезапустили в полночь, жалоб не было.",
         "Добавьте в таблицу столбец с датой и отсортируйте её.",
         "Модель отвечает быстрее, если уменьшить контекст."]


@dataclass(frozen=True)
class Sample:
    text: str
    labels: tuple[tuple[Kind, int, int], ...]


def _person(rng: random.Random) -> str:
    first = rng.choice(FIRST)
    last = rng.choice(LAST)[1 if first in FEMALE else 0]
    return f"{first} {last}"


def _build(template: str, parts: list[tuple[Kind, str]]) -> Sample:
    text, labels = "", []
    pieces = template.split("{}")
    for piece, (kind, value) in zip(pieces, parts, strict=False):
        text += piece
        labels.append((kind, len(text), len(text) + len(value)))
        text += value
    text += pieces[-1]
    return Sample(text, tuple(labels))


def samples() -> list[Sample]:
    rng = random.Random(SEED)
    out: list[Sample] = []
    for _ in range(12):
        city = rng.choice(CITIES)
        out.append(_build("Клиент {} просит перезвонить до пятницы.",
                          [(Kind.PERSON, _person(rng))]))
        out.append(_build("Договор подписал {}, офис находится в {}.",
                          [(Kind.PERSON, _person(rng)), (Kind.ADDRESS, CITIES_IN[city])]))
        out.append(_build("Доставка в {} задерживается на два дня.",
                          [(Kind.ADDRESS, CITIES_IN[rng.choice(CITIES)])]))
        out.append(_build("Вчера {} и {} обсудили бюджет проекта.",
                          [(Kind.PERSON, _person(rng)), (Kind.PERSON, _person(rng))]))
        out.append(_build("Адрес склада: {}, улица Ленина, дом 5.",
                          [(Kind.ADDRESS, rng.choice(CITIES))]))
    out += [Sample(text, ()) for text in PLAIN]
    out += HARD
    return out


# Harder: oblique cases, a lower-case name, words that are also names, a street, a region,
# a foreign name, a company named after a place.
HARD = [
    _build("Передайте документы {} до обеда.", [(Kind.PERSON, "Ивану Смирнову")]),
    _build("Я встречусь с {} в четверг.", [(Kind.PERSON, "Марией Поповой")]),
    _build("письмо от {} пришло без вложения", [(Kind.PERSON, "сергея кузнецова")]),
    _build("Вера в успех и надежда на премию — вот что держит команду.", []),
    _build("Офис переехал на {}.", [(Kind.ADDRESS, "Тверскую улицу")]),
    _build("Филиалы открыты в {}.", [(Kind.ADDRESS, "Ленинградской области")]),
    _build("Звонил {} из лондонского офиса.", [(Kind.PERSON, "John Smith")]),
    _build("Акции «Аэрофлота» выросли, а «Газпром» подешевел.", []),
    _build("Роза на столе завяла, купите новые цветы.", []),
]


@dataclass
class Score:
    labelled: int = 0
    found: int = 0
    right: int = 0


def evaluate(detector: NatashaDetector, data: list[Sample],
             errors: list[str]) -> dict[Kind, Score]:
    scores = {Kind.PERSON: Score(), Kind.ADDRESS: Score()}
    for sample in data:
        found: list[Finding] = detector.find(sample.text)
        left = list(sample.labels)
        for kind, *_ in sample.labels:
            scores[kind].labelled += 1
        for f in found:
            scores[f.kind].found += 1
            hit = next((lab for lab in left if lab[0] == f.kind and f.start < lab[2]
                        and lab[1] < f.end), None)
            if hit is None:
                errors.append(f"extra {f.kind.value} {sample.text[f.start:f.end]!r} in "
                              f"{sample.text!r}")
                continue
            left.remove(hit)
            scores[f.kind].right += 1
        errors += [f"missed {k.value} {sample.text[s:e]!r} in {sample.text!r}"
                   for k, s, e in left]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--errors", action="store_true", help="list misses and extra findings")
    args = parser.parse_args()
    data, errors = samples(), list[str]()
    scores = evaluate(NatashaDetector(), data, errors)
    print(f"{len(data)} texts, {sum(len(s.labels) for s in data)} labelled spans")
    print("| kind | labelled | found | right | precision | recall |")
    print("|---|---|---|---|---|---|")
    for kind, s in scores.items():
        precision = s.right / s.found if s.found else 1.0
        print(f"| {kind.value} | {s.labelled} | {s.found} | {s.right} | {precision:.3f} "
              f"| {s.right / s.labelled:.3f} |")
    if args.errors:
        print(*errors, sep="\n")


if __name__ == "__main__":
    main()
