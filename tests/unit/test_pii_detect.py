"""The personal-data detectors: each format found with its exact span, look-alikes rejected by
their check digits or shape, and the one overlap rule."""

from __future__ import annotations

import pytest

from xrouter_router.domain.pii import Finding, Kind, detect, resolve
from xrouter_router.domain.pii.checksums import inn_valid, luhn_valid, snils_check_number, snils_valid


def found(text: str) -> list[tuple[str, str]]:
    return [(f.kind.value, text[f.start:f.end]) for f in detect(text)]


def test_check_digits_of_known_examples() -> None:
    # A company's published INN, an invented personal one, the SNILS of the format's own
    # description and the standard test card.
    assert inn_valid("7707083893") and inn_valid("771234567859")
    assert not inn_valid("7707083894") and not inn_valid("771234567850") and not inn_valid("771234567869")
    assert snils_valid("11223344595") and snils_check_number("112233445") == 95
    assert not snils_valid("11223344596")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_snils_check_number_below_100_at_100_and_101_and_above() -> None:
    # Nine-digit prefixes whose weighted sums are 99, 100, 101, 150 and 201.
    assert snils_check_number("001019996") == 99      # below 100: the sum itself
    assert snils_check_number("001019989") == 0       # 100: 00
    assert snils_check_number("001029985") == 0       # 101: 00
    assert snils_check_number("001299898") == 49      # above 101: the sum modulo 101
    assert snils_check_number("003998986") == 0       # 201 % 101 = 100: 00
    assert snils_valid("00101999699") and snils_valid("00129989849") and snils_valid("00399898600")


@pytest.mark.parametrize(("text", "expected"), [
    ("Звоните: +7 (916) 123-45-67.", [("phone", "+7 (916) 123-45-67")]),
    ("тел. 8 916 123 45 67, или 8-495-765-43-21",
     [("phone", "8 916 123 45 67"), ("phone", "8-495-765-43-21")]),
    ("+79161234567 и 8(812)1234567", [("phone", "+79161234567"), ("phone", "8(812)1234567")]),
    ("8 800 555-35-35", [("phone", "8 800 555-35-35")]),
    ("7 (916) 123-45-67; +7 916 123 - 45 - 67; +7 (916) 123–45–67",
     [("phone", "7 (916) 123-45-67"), ("phone", "+7 916 123 - 45 - 67"), ("phone", "+7 (916) 123–45–67")]),
    ("Пишите на ivan.petrov_84@example.ru.", [("email", "ivan.petrov_84@example.ru")]),
    ("почта: мария@пример.рф", [("email", "мария@пример.рф")]),
    ("СНИЛС 112-233-445 95", [("snils", "112-233-445 95")]),
    ("СНИЛС 112 233 445 95 / 11223344595", [("snils", "112 233 445 95"), ("snils", "11223344595")]),
    ("ИНН 7707083893, ИНН физлица 771234567859", [("inn", "7707083893"), ("inn", "771234567859")]),
    ("ИНН/КПП 7707083893/773601001", [("inn", "7707083893")]),
    ("карта 4111 1111 1111 1111", [("card", "4111 1111 1111 1111")]),
    ("карта 4111-1111-1111-1111 или 4111111111111111",
     [("card", "4111-1111-1111-1111"), ("card", "4111111111111111")]),
    ("паспорт 45 07 123456", [("passport", "45 07 123456")]),
    ("серия 4507 номер 123456", [("passport", "4507 номер 123456")]),
    ("4507 № 123456", [("passport", "4507 № 123456")]),
    ("Паспорт гражданина РФ: 4507123456", [("passport", "4507123456")]),
    ("паспорт 4507-123456", [("passport", "4507-123456")]),
    ("паспортные данные: серия — 4507, номер — 123456", [("passport", "4507, номер — 123456")]),
])
def test_each_format_is_found_with_its_span(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "Заказ 123456789012 от 12.03.2025",            # 12 digits failing both INN checks
    "ИНН 7707083894",                              # 10 digits, wrong check digit
    "СНИЛС 112-233-445 96",                        # wrong check number
    "СНИЛС 000-000-000 00",                        # below 001-001-998: never checked, filler
    "карта 4111 1111 1111 1112",                   # Luhn fails
    "цена 8 916 руб., 8916123456, 8 000 123 45 67",  # too short; no area code starts with 0
    "артикул A89161234567, версия 1.8916123456",   # glued to Latin letters or a decimal point
    "заказ 4507123456 оплачен",                    # ten bare digits without a passport keyword
    "документ 4507-123456, итог 2024,123456",      # dash or comma alone: no keyword, no passport
    "счёт 7 916 123 45 67",                        # a bare 7 without a bracketed area code
    "серия 4590 номер 123456",                     # a series printed in 1990: no such passport
    "счёт 40817810099910004312, БИК 044525225",    # 20-digit account, 9-digit BIK
    "user@localhost и @mention",                   # no domain with a top level
    "https://example.ru/orders/7707083893",        # a path segment, not an INN
    "дата 2025-03-12 10:30, сумма 1 250 000,00 руб.",
])
def test_look_alikes_are_not_personal_data(text: str) -> None:
    assert found(text) == []


def test_a_phone_inside_an_email_is_part_of_the_email() -> None:
    assert found("89161234567@example.ru") == [("email", "89161234567@example.ru")]


def test_an_eleven_digit_run_passing_the_snils_check_is_a_snils_not_a_phone() -> None:
    # Equal spans: the checksummed kind wins (Kind's order); the same digits failing the check
    # are a phone.
    assert found("89161234520") == [("snils", "89161234520")]
    assert found("89161234521") == [("phone", "89161234521")]


def test_a_bare_passport_after_its_keyword_beats_an_inn_check() -> None:
    assert inn_valid("4507123455")
    assert found("паспорт 4507123455") == [("passport", "4507123455")]
    assert found("заказ 4507123455") == [("inn", "4507123455")]


def test_overlaps_resolve_longer_first_then_kind_order_then_start() -> None:
    a = Finding(Kind.PHONE, 0, 11)
    b = Finding(Kind.SNILS, 0, 11)
    c = Finding(Kind.INN, 5, 17)
    d = Finding(Kind.EMAIL, 20, 25)
    e = Finding(Kind.CARD, 22, 27)
    assert resolve([a, b, c, d, e]) == (c, d)
    assert resolve([e, d, c, b, a]) == (c, d)     # whatever order the detectors ran in
    assert resolve([a, b]) == (b,)                 # equal spans: kind order
    assert resolve([a, c]) == (c,)                 # the longer wins
    assert resolve([d, e]) == (d,)                 # equal length: e-mail before card
    assert resolve([Finding(Kind.PHONE, 0, 5), Finding(Kind.PHONE, 3, 8)]) == (Finding(Kind.PHONE, 0, 5),)


def test_a_passport_keyword_counts_only_close_before_and_on_the_same_line() -> None:
    assert found("Серии и номер паспорта: 4507123456") == [("passport", "4507123456")]
    assert found("паспорт" + " " * 28 + "4507123456") == [("passport", "4507123456")]
    assert found("паспорт" + " " * 29 + "4507123454") == []
    assert found("паспорт\n4507123454") == []
    assert found("паспорт 12, а заказ 4507123454") == []


def test_text_without_digits_or_at_sign_costs_no_pattern() -> None:
    assert detect("Просто текст без цифр и адресов.") == ()
