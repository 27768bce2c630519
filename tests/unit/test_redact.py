"""The Redactor: credentials out of error text and metadata, upstream text cut to 1 KiB; and
psycopg's text never in the error a client gets."""

from __future__ import annotations

import psycopg

from xrouter_router.domain.errors import DatabaseUnavailable
from xrouter_router.storage.sql.pg import _translate
from xrouter_router.transport.redact import LIMIT, Redactor, cut


def test_credential_shapes_and_configured_keys_are_removed() -> None:
    redactor = Redactor(["gigachat-authorization-value", "short"])
    text = ("Bearer abc.def-123 / basic dXNlcjpw / Api-Key AQVN_x-1 / OAuth y0_AgAAAA / "
            "?api_key=k1&key=k2&access_token=k3 / sk-proj-abcdefgh123 / xr-pro-ABCDEFGH12345678 / "
            "AIzaSyA1234567890abcdefghij / gigachat-authorization-value / short / sk-abc")
    assert redactor.text(text) == (
        "Bearer [redacted] / basic [redacted] / Api-Key [redacted] / OAuth [redacted] / "
        "?api_key=[redacted]&key=[redacted]&access_token=[redacted] / [redacted] / [redacted] / "
        "[redacted] / [redacted] / short / sk-abc")


def test_fields_named_like_credentials_are_blanked_and_strings_cut() -> None:
    meta = {"raw": {"error": {"message": "é" * 2000, "api_key": "v", "Authorization": "x",
                              "max_tokens": 5, "password": ""}},
            "attempts": [{"message": "Bearer t0ken-value"}]}
    out = Redactor().value(meta)
    assert out["raw"]["error"]["api_key"] == out["raw"]["error"]["Authorization"] == "[redacted]"
    assert out["raw"]["error"]["max_tokens"] == 5 and out["raw"]["error"]["password"] == ""
    assert out["raw"]["error"]["message"] == "é" * 512  # 1024 bytes, no broken character
    assert out["attempts"] == [{"message": "Bearer [redacted]"}]


def test_a_long_raw_body_becomes_its_cut_json_text() -> None:
    out = Redactor().metadata({"raw": {"error": ["x" * 100] * 20}, "provider_name": "p"})
    assert out["provider_name"] == "p"
    assert out["raw"] == cut('{"error":[' + ",".join(['"' + "x" * 100 + '"'] * 20) + "]}")
    assert len(out["raw"].encode()) == LIMIT
    assert Redactor().metadata({"raw": {"error": "short"}}) == {"raw": {"error": "short"}}


def test_psycopg_text_stays_out_of_the_error() -> None:
    exc = psycopg.OperationalError('connection to server at "10.1.2.3", port 5432 failed: '
                                   "FATAL: password authentication failed for user \"xr\"")
    translated = _translate(exc)
    assert isinstance(translated, DatabaseUnavailable)
    assert translated.message == "The database is unavailable; retry shortly"
    assert translated.retry_after == 1.0
    assert isinstance(_translate(psycopg.ProgrammingError("syntax error at or near SELEC")),
                      DatabaseUnavailable)
