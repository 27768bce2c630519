"""The console's strings: English and Russian have the same keys, and every key the scripts
ask for with t("...") exists; no script writes HTML from a string (innerHTML and the like)."""

from __future__ import annotations

import re

from xrouter_gateway.console import ASSETS

I18N = (ASSETS / "js" / "i18n.js").read_text(encoding="utf-8")
SCRIPTS = {p.name: p.read_text(encoding="utf-8") for p in (ASSETS / "js").rglob("*.js")}


def _keys(language: str) -> list[str]:
    block = re.search(rf"^  {language}: \{{\n(.*?)^  \}},$", I18N, re.S | re.M)
    assert block is not None, language
    return re.findall(r'^    "([a-zA-Z_.]+)":', block.group(1), re.M)


def test_both_languages_have_the_same_keys() -> None:
    english, russian = _keys("en"), _keys("ru")
    assert len(english) > 100
    assert english == russian
    assert len(set(english)) == len(english)


def test_every_key_asked_for_exists() -> None:
    known = set(_keys("en"))
    asked = {k for text in SCRIPTS.values() for k in re.findall(r'\bt\("([a-zA-Z_.]+)"', text)}
    assert asked - known == set()
    # Keys built from a name (t(`nav.${id}`)) exist for every page, role and group.
    for prefix, names in (("nav", ["overview", "keys", "usage", "generations", "models",
                                   "providers", "playground", "operator"]),
                          ("role", ["master", "management", "key"]),
                          ("group", ["day", "model", "provider", "key"]),
                          ("status", ["operational", "degraded", "down", "unknown"])):
        assert {f"{prefix}.{n}" for n in names} <= known


def test_no_script_writes_html() -> None:
    for name, text in SCRIPTS.items():
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (name, sink)
