"""Masking a request with typed placeholders and restoring the answer: numbering per kind, one
placeholder per value across messages, the client's own placeholder-like text left alone, the
block-mode report, and streaming restoration that holds back only a partial placeholder."""

from __future__ import annotations

from xrouter_router.domain.errors import ErrorKind
from xrouter_router.domain.pii import Kind, StreamRestorer, blocked, kinds_found, mask, restore

PHONE = "+7 (916) 123-45-67"
EMAIL = "ivan.petrov@example.ru"
SNILS = "112-233-445 95"
INN = "771234567859"
CARD = "4111 1111 1111 1111"
PASSPORT = "45 07 123456"


def test_every_kind_gets_its_typed_placeholder_numbered_per_kind() -> None:
    masked = mask([
        f"Я {EMAIL}, тел. {PHONE}, второй 8 495 765-43-21.",
        f"Паспорт {PASSPORT}, СНИЛС {SNILS}, ИНН {INN}, карта {CARD}.",
    ])
    assert masked.texts == (
        "Я [EMAIL_1], тел. [PHONE_1], второй [PHONE_2].",
        "Паспорт [PASSPORT_1], СНИЛС [SNILS_1], ИНН [INN_1], карта [CARD_1].",
    )
    assert dict(masked.mapping) == {
        "[EMAIL_1]": EMAIL, "[PHONE_1]": PHONE, "[PHONE_2]": "8 495 765-43-21",
        "[PASSPORT_1]": PASSPORT, "[SNILS_1]": SNILS, "[INN_1]": INN, "[CARD_1]": CARD,
    }
    assert masked.kinds == (Kind.CARD, Kind.EMAIL, Kind.INN, Kind.PASSPORT, Kind.PHONE, Kind.SNILS)


def test_the_same_value_gets_the_same_placeholder_across_messages() -> None:
    masked = mask([f"Мой телефон {PHONE}", "Без данных", f"Повторю: {PHONE}, и {EMAIL}; {PHONE}"])
    assert masked.texts == (
        "Мой телефон [PHONE_1]", "Без данных", "Повторю: [PHONE_1], и [EMAIL_1]; [PHONE_1]")
    assert len(masked.mapping) == 2


def test_placeholders_the_client_wrote_are_skipped_and_never_restored() -> None:
    masked = mask([f"Шаблон [PHONE_1] заполни номером {PHONE}", "и [PHONE_2] тоже"])
    assert masked.texts == ("Шаблон [PHONE_1] заполни номером [PHONE_3]", "и [PHONE_2] тоже")
    assert masked.restore("[PHONE_1] / [PHONE_3]") == f"[PHONE_1] / {PHONE}"


def test_text_without_personal_data_is_returned_unchanged() -> None:
    masked = mask(["Привет! Сколько стоит доставка 3 коробок до 15.03?"])
    assert masked.texts == ("Привет! Сколько стоит доставка 3 коробок до 15.03?",)
    assert dict(masked.mapping) == {} and masked.kinds == ()


def test_restore_replaces_known_placeholders_and_leaves_invented_ones() -> None:
    mapping = {"[PHONE_1]": PHONE, "[EMAIL_1]": EMAIL}
    answer = "Позвоните [PHONE_1] или напишите [EMAIL_1]; [PHONE_7] и [ИМЯ_1] я придумал."
    assert restore(answer, mapping) == (
        f"Позвоните {PHONE} или напишите {EMAIL}; [PHONE_7] и [ИМЯ_1] я придумал.")


def test_restored_values_are_not_scanned_again() -> None:
    assert restore("[EMAIL_1]", {"[EMAIL_1]": "[PHONE_1]", "[PHONE_1]": PHONE}) == "[PHONE_1]"


def test_streaming_holds_back_only_a_partial_placeholder() -> None:
    restorer = StreamRestorer({"[PHONE_1]": PHONE, "[PHONE_12]": "8 800 555-35-35"})
    assert restorer.feed("Звоните [PHO") == "Звоните "
    assert restorer.feed("NE_1] сейчас [") == f"{PHONE} сейчас "
    assert restorer.feed("a] [PHONE_1") == "[a] "       # "[a" cannot become a placeholder
    assert restorer.feed("2]") == "8 800 555-35-35"
    assert restorer.feed("[CARD_") == "[CARD_"          # no card in the mapping: nothing to wait for
    assert restorer.feed("[PHONE_") == ""
    assert restorer.flush() == "[PHONE_"                # the stream ended on a partial one
    assert restorer.flush() == ""


def test_streaming_with_an_empty_mapping_passes_deltas_through() -> None:
    restorer = StreamRestorer({})
    assert [restorer.feed(d) for d in ("[PHO", "NE_1]")] == ["[PHO", "NE_1]"]
    assert restorer.flush() == ""


def test_block_mode_names_sorted_kinds_and_never_a_value() -> None:
    texts = [f"Карта {CARD}, тел. {PHONE}", f"ещё {PHONE}, почта {EMAIL}"]
    kinds = kinds_found(texts)
    assert kinds == (Kind.CARD, Kind.EMAIL, Kind.PHONE)
    error = blocked(kinds)
    assert error.kind is ErrorKind.INVALID_REQUEST
    assert error.param == "messages"
    assert error.metadata == {"error_code": "personal_data_blocked", "reasons": ["pii_guard"],
                              "kinds": ["card", "email", "phone"]}
    assert error.message == (
        "The request carries personal data (card, email, phone) and the key's personal-data "
        "policy is block: remove it or ask the operator for the mask policy")
    assert not any(v in error.message + str(error.metadata) for v in (CARD, PHONE, EMAIL))
    assert kinds_found(["Ничего личного, заказ 123456789012."]) == ()
