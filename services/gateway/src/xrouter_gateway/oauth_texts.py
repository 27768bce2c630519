"""The OAuth consent page's words in English and Russian, as the console has both: the language
is the `lang` query parameter's (the page's switch link sets it), else the browser's first
choice (Accept-Language) of the two, else English. Texts are HTML with {placeholders} that the
page fills with escaped values."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

LANGUAGES = ("en", "ru")
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "XRouter: authorize {host}",
        "error_title": "XRouter: cannot authorize",
        "error_heading": "This app cannot be authorized",
        "heading": 'Authorize <span class="app">{host}</span>',
        "asks": "The app at <b>{host}</b> asks for an API key of your XRouter account. Sign in "
                "with the account's management key to continue.",
        "api_key": "API key",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "signed_in": "Signed in with key <b>{who}</b>.",
        "master": "The master key belongs to no account",
        "plain": "This key cannot make keys",
        "refusal": "{reason}: sign in with the management key of the account the app should use.",
        "approve": "Approving creates a new API key of account <b>{account}</b>, labelled "
                   "<b>{host}</b>, and sends it to the app at <b>{origin}</b>. The app can spend "
                   "the account's credits with it until you disable or delete the key.",
        "authorize": "Authorize {host}",
        "deny": "Deny: back to the app without a key",
        "other": "Русский",
    },
    "ru": {
        "title": "XRouter: доступ для {host}",
        "error_title": "XRouter: доступ не предоставлен",
        "error_heading": "Этому приложению нельзя предоставить доступ",
        "heading": 'Доступ для <span class="app">{host}</span>',
        "asks": "Приложение <b>{host}</b> запрашивает API-ключ вашего аккаунта XRouter. Чтобы "
                "продолжить, войдите с ключом управления аккаунта.",
        "api_key": "API-ключ",
        "sign_in": "Войти",
        "sign_out": "Выйти",
        "signed_in": "Вход выполнен с ключом <b>{who}</b>.",
        "master": "Мастер-ключ не принадлежит ни одному аккаунту",
        "plain": "Этот ключ не может создавать ключи",
        "refusal": "{reason}: войдите с ключом управления того аккаунта, которым должно "
                   "пользоваться приложение.",
        "approve": "После подтверждения будет создан новый API-ключ аккаунта <b>{account}</b> с "
                   "меткой <b>{host}</b>, и он будет передан приложению <b>{origin}</b>. "
                   "Приложение сможет тратить средства аккаунта, пока вы не отключите или не "
                   "удалите ключ.",
        "authorize": "Разрешить {host}",
        "deny": "Отказать: вернуться в приложение без ключа",
        "other": "English",
    },
}


def language(request: Request) -> str:
    """`lang` when it names a language of the page; else the first of them the browser lists
    (by q-value, then order); else English."""
    chosen = request.query_params.get("lang", "")
    if chosen in LANGUAGES:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for order, part in enumerate(request.headers.get("accept-language", "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and quality > 0:
            ranked.append((-quality, order, base))
    return min(ranked)[2] if ranked else "en"


def switch_href(request: Request, lang: str) -> str:
    """The same page in the other language (the query kept, `lang` replaced)."""
    other = "ru" if lang == "en" else "en"
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return "/auth?" + urlencode([*params, ("lang", other)])
