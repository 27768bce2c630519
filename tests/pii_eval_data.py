"""Writes the synthetic labelled set tests/data/pii_eval.jsonl (`scripts/bench/pii_eval.py
--write`): short Russian texts with invented identifiers in the ways people write them (some in
forms the guard is known to miss) and hard negatives (order numbers, dates, prices, bank
details, phone-like and INN-like numbers). Deterministic: the same seed writes the same file."""

from __future__ import annotations

import random
from collections.abc import Callable

from tests.pii_eval import Label, Record
from xrouter_router.domain.pii import Kind
from xrouter_router.domain.pii.checksums import inn_valid, luhn_valid, snils_check_number

Piece = str | tuple[Kind, str]
Template = Callable[[random.Random], list[Piece]]


def record(pieces: list[Piece]) -> Record:
    text, labels = "", list[Label]()
    for piece in pieces:
        if isinstance(piece, tuple):
            labels.append((piece[0], len(text), len(text) + len(piece[1])))
            text += piece[1]
        else:
            text += piece
    return Record(text, tuple(labels))


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


# --- identifiers (invented; check digits completed so they are valid) -------------------------
def inn(rng: random.Random, length: int) -> str:
    while True:
        head = rng.choice(["77", "50", "78", "66", "16", "52", "23", "54"]) + digits(rng, length - 4)
        for tail in (f"{i:02d}" for i in range(100)):
            if inn_valid(head + tail):
                return head + tail


def snils_digits(rng: random.Random) -> str:
    head = f"{rng.randrange(1_002_000, 999_999_999):09d}"
    return head + f"{snils_check_number(head):02d}"


def card_digits(rng: random.Random, length: int = 16) -> str:
    prefix = rng.choice(["2200", "2201", "2202", "2204", "4276", "4279", "5469", "5536"])
    head = prefix + digits(rng, length - 5)
    return head + next(d for d in "0123456789" if luhn_valid(head + d))


def group(number: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(number[at:at + size])
        at += size
    return sep.join(parts)


def phone(rng: random.Random) -> str:
    code = rng.choice(["916", "903", "925", "977", "985", "495", "499", "812", "843", "800", "383"])
    n = digits(rng, 7)
    return rng.choice([
        f"+7 ({code}) {n[:3]}-{n[3:5]}-{n[5:]}", f"+7 {code} {n[:3]} {n[3:5]} {n[5:]}", f"+7{code}{n}",
        f"8 ({code}) {n[:3]}-{n[3:5]}-{n[5:]}", f"8{code}{n}", f"8-{code}-{n[:3]}-{n[3:5]}-{n[5:]}",
        f"8 {code} {n[:3]}-{n[3:5]}-{n[5:]}", f"+7({code}){n[:3]}-{n[3:5]}-{n[5:]}", f"+7 {code} {n}",
    ])


def phone_unusual(rng: random.Random) -> str:
    """Real phone numbers in forms the guard does not take (documented limits)."""
    n = digits(rng, 7)
    return rng.choice([f"7 (916) {n[:3]}-{n[3:5]}-{n[5:]}", f"8.916.{n[:3]}.{n[3:5]}.{n[5:]}",
                       f"+7 916 {n[:3]} - {n[3:5]} - {n[5:]}", f"+7 (916) {n[:3]}–{n[3:5]}–{n[5:]}",
                       f"+7 (916) {n[:2]}-{n[2:4]}-{n[4:]}", f"8 916 {n[:2]} {n[2:4]} {n[4:]}"])


NAMES = ["ivan", "maria", "a.smirnov", "olga.kuznetsova", "petrov84", "s_orlova", "d.volkov", "nikita.b",
         "elena-morozova", "info", "zakaz", "buh", "hr.dept", "k.sokolov+crm"]
DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "example.ru", "company.org", "bk.ru", "firma.su",
           "test.com.ru"]


def email(rng: random.Random) -> str:
    if rng.random() < 0.08:
        local = rng.choice(["иван", "мария", "бухгалтерия", "заказ"])
        return local + "@" + rng.choice(["почта.рф", "пример.рф"])
    return rng.choice(NAMES) + rng.choice(["", "", str(rng.randrange(1, 99))]) + "@" + rng.choice(DOMAINS)


def passport_series(rng: random.Random) -> str:
    return f"{rng.randrange(1, 99):02d}{rng.choice([97, 98, 99, *range(0, 25)]):02d}"


# --- templates with personal data -------------------------------------------------------------
def phone_text(rng: random.Random) -> list[Piece]:
    lead = rng.choice(["Мой телефон ", "Позвоните мне по номеру ", "Контакт: ", "тел. ", "Перезвоните на ",
                       "Номер клиента — ", "WhatsApp: "])
    tail = rng.choice([".", ", спасибо!", " после 18:00.", "", " (рабочий)."])
    return [lead, (Kind.PHONE, phone(rng)), tail]


def email_text(rng: random.Random) -> list[Piece]:
    lead = rng.choice(["Пишите на ", "Моя почта: ", "Ответ пришлите на ", "e-mail ", "Адрес для счёта — "])
    return [lead, (Kind.EMAIL, email(rng)), rng.choice([".", "", ", копию руководителю.", " до пятницы."])]


def passport_text(rng: random.Random) -> list[Piece]:
    s, n = passport_series(rng), digits(rng, 6)
    form = rng.randrange(6)
    if form == 0:
        return ["Паспорт ", (Kind.PASSPORT, f"{s[:2]} {s[2:]} {n}"), ", выдан ОВД района."]
    if form == 1:
        return ["Паспортные данные: серия ", (Kind.PASSPORT, f"{s} номер {n}"), "."]
    if form == 2:
        return ["Данные документа: ", (Kind.PASSPORT, f"{s} № {n}"), ", код подразделения 770-001."]
    if form == 3:
        return ["Паспорт РФ: ", (Kind.PASSPORT, f"{s}{n}"), "."]
    if form == 4:
        return ["Прикладываю скан, паспорт ", (Kind.PASSPORT, f"{s} {n}"), "."]
    return ["серия ", (Kind.PASSPORT, f"{s[:2]} {s[2:]} № {n}"), " выдан 12.05.2015"]


def snils_text(rng: random.Random) -> list[Piece]:
    d = snils_digits(rng)
    written = rng.choice([f"{d[:3]}-{d[3:6]}-{d[6:9]} {d[9:]}", f"{d[:3]}-{d[3:6]}-{d[6:9]}-{d[9:]}", d,
                          f"{d[:3]} {d[3:6]} {d[6:9]} {d[9:]}"])
    lead = rng.choice(["СНИЛС ", "СНИЛС сотрудника: ", "Страховой номер — ", "снилс "])
    return [lead, (Kind.SNILS, written), rng.choice([".", "", ", приложите копию."])]


def inn_text(rng: random.Random) -> list[Piece]:
    if rng.random() < 0.5:
        return [rng.choice(["ИНН физлица ", "Мой ИНН ", "ИНН: ", "инн "]), (Kind.INN, inn(rng, 12)), "."]
    return [rng.choice(["ИНН организации ", "Контрагент, ИНН ", "ИНН/КПП "]), (Kind.INN, inn(rng, 10)),
            rng.choice(["/773601001", ", ОГРН уточню.", "."])]


def card_text(rng: random.Random) -> list[Piece]:
    d = card_digits(rng)
    written = rng.choice([group(d, (4, 4, 4, 4), " "), group(d, (4, 4, 4, 4), "-"), d])
    lead = rng.choice(["Номер карты ", "Карта для возврата: ", "Оплатил картой ", "Переведите на карту "])
    return [lead, (Kind.CARD, written), rng.choice([".", ", срок 12/28.", ""])]


def mixed_text(rng: random.Random) -> list[Piece]:
    return ["Клиент: тел. ", (Kind.PHONE, phone(rng)), ", почта ", (Kind.EMAIL, email(rng)), ", ИНН ",
            (Kind.INN, inn(rng, 12)), "; заказ № ", digits(rng, 6), " от 03.11.2025 на 12 500 руб."]


def unusual_text(rng: random.Random) -> list[Piece]:
    """Personal data in forms the guard misses: they count against its recall."""
    s, n = passport_series(rng), digits(rng, 6)
    return rng.choice([
        ["Звоните: ", (Kind.PHONE, phone_unusual(rng)), "."],
        ["Почта ", (Kind.EMAIL, rng.choice(NAMES) + " (at) mail.ru"), "."],
        ["паспортные данные: серия — ", (Kind.PASSPORT, f"{s}, номер — {n}"), "."],
        ["Паспорт ", (Kind.PASSPORT, f"{s}-{n}"), "."],
        ["ИНН ", (Kind.INN, group(inn(rng, 12), (4, 4, 4), " ")), " (пробелы так и стоят)."],
        ["карта ", (Kind.CARD, group(card_digits(rng), (4, 4, 4, 4), "  ")), "."],
    ])


# --- hard negatives: nothing here is personal data ---------------------------------------------
def failing(rng: random.Random, length: int, valid: Callable[[str], bool]) -> str:
    while True:
        number = digits(rng, length)
        if number[0] != "0" and not valid(number):
            return number


def negative_text(rng: random.Random) -> list[Piece]:
    d = digits
    return [rng.choice([
        f"Заказ № {d(rng, 10)} от 12.03.2025 отгружен.",
        f"Номер договора {failing(rng, 12, inn_valid)} от 01.02.2026.",
        f"ИНН {failing(rng, 10, inn_valid)} не проходит проверку, уточните.",
        f"Счёт-фактура № {failing(rng, 12, inn_valid)}, сумма 48 300,00 руб.",
        f"Доставка {rng.randrange(1, 28):02d}.{rng.randrange(1, 12):02d}.2026 с 10:00 до 18:00.",
        f"Стоимость {rng.randrange(1, 999)} {d(rng, 3)} руб., "
        f"НДС 22% — {rng.randrange(1, 99)} {d(rng, 3)} руб.",
        f"р/с 40702810{d(rng, 12)}, к/с 30101810400000000225, БИК 044525225, КПП 773601001.",
        f"ОГРН 10277{d(rng, 8)} присвоен 2002 году.",
        f"Трек-номер посылки 80085{d(rng, 9)}, отправлено 5 ноября.",
        f"Трек RA{d(rng, 9)}RU прибыл в сортировочный центр.",
        "Добавочный 8916, спросите отдел продаж.",
        f"Звоните 8 916 {d(rng, 3)} {d(rng, 2)} — номер неполный.",
        "Рост выручки +7 % к прошлому году, маржа 8 %.",
        f"Код ошибки 8-{d(rng, 3)}-{d(rng, 2)} в журнале.",
        f"Номер карты {group(failing(rng, 16, luhn_valid), (4, 4, 4, 4), ' ')} введён с ошибкой.",
        f"Сервер 192.168.{rng.randrange(0, 255)}.{rng.randrange(1, 254)}, версия 2.{rng.randrange(0, 20)}.3.",
        f"ГОСТ {d(rng, 5)}-2019, ОКПО {d(rng, 8)}, индекс 1190{d(rng, 2)}.",
        f"Артикул A{d(rng, 11)} и SKU-{d(rng, 10)} на складе.",
        f"В 2025 году было {rng.randrange(100, 999)} {d(rng, 3)} обращений, из них 8 (0,8%) повторных.",
        f"Время ответа 8,{d(rng, 3)} с; {d(rng, 4)} {d(rng, 3)} запросов за сутки.",
        "Совещание 8 декабря в 10:30, кабинет 1204.",
        f"Лицевой счёт {d(rng, 8)}, показания счётчика {d(rng, 5)}.",
    ])]


POSITIVE: tuple[tuple[Template, int], ...] = (
    (phone_text, 60), (email_text, 45), (passport_text, 40), (snils_text, 40), (inn_text, 50),
    (card_text, 40), (mixed_text, 20), (unusual_text, 30),
)


def snils_mistyped(rng: random.Random) -> list[Piece]:
    number = failing(rng, 11, lambda s: snils_check_number(s[:9]) == int(s[9:]))
    return [f"СНИЛС {number[:3]}-{number[3:6]}-{number[6:9]} {number[9:]} — "
            "проверьте, контрольное число не сходится."]


def records(seed: int = 15) -> list[Record]:
    rng = random.Random(seed)
    out = [record(template(rng)) for template, count in POSITIVE for _ in range(count)]
    out += [record(negative_text(rng)) for _ in range(140)]
    out += [record(snils_mistyped(rng)) for _ in range(10)]
    rng.shuffle(out)
    return out
