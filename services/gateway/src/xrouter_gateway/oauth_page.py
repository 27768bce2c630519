"""The OAuth consent page (docs/oauth.md): GET /auth shows who asks (the callback's host) and,
for a session of the account's management key, an Authorize button; without a session, a
sign-in form (its script, /auth/consent.js, signs in through /console/session). POST /auth
(the button: the session cookie plus its CSRF token in the form) gets a code from the router
and sends the browser to the callback with it (303). Every value on a page is escaped; the pages
carry a strict Content-Security-Policy with no inline script and may not be framed."""

from __future__ import annotations

import hmac
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import grpc
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.inbound import call_metadata, read_body
from xrouter_gateway.oauth_params import Authorization, authorization
from xrouter_gateway.oauth_texts import TEXTS, language, switch_href
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.session_cookie import SESSION_COOKIE, csrf_token, well_formed
from xrouter_gateway.settings import GatewaySettings

ASSETS = Path(__file__).resolve().parent / "oauth_assets"
_TYPES = {"consent.js": "text/javascript; charset=utf-8", "consent.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
_TIMEOUT = 10.0
_MAX_FORM = 16 * 1024
_FORM = "application/x-www-form-urlencoded"


def _headers(origin: str = "") -> dict[str, str]:
    """No inline script or style, nothing from elsewhere, no framing; forms may post here and
    (through the redirect that answers them) to the app's callback origin only."""
    targets = f"'self' {origin}" if origin else "'self'"
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
           f"img-src 'self'; form-action {targets}; frame-ancestors 'none'; base-uri 'none'")
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}


def _page(title: str, body: str, status: int = 200, origin: str = "", *, lang: str = "en",
          switch: str = "") -> Response:
    """`switch`: the same page in the other language (a link at the top), when there is one."""
    other = (f'<nav><a href="{escape(switch)}" data-testid="language">'
             f'{TEXTS[lang]["other"]}</a></nav>') if switch else ""
    html = (f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>"
            '<link rel="icon" href="/auth/favicon.svg" type="image/svg+xml">'
            '<link rel="stylesheet" href="/auth/consent.css">'
            '<script src="/auth/consent.js" defer></script></head>'
            f'<body>{other}<main>{body}<p id="message" role="alert" hidden></p></main>'
            "</body></html>")
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers=_headers(origin))


def error_page(err: APIError, lang: str = "en") -> Response:
    """The error's own message stays as the API words it (in English)."""
    words = TEXTS[lang]
    body = (f"<h1>{words['error_heading']}</h1>"
            f'<p class="error" data-testid="oauth-error">{escape(err.message)}</p>')
    return _page(words["error_title"], body, err.status, lang=lang)


def _sign_in(auth: Authorization, lang: str) -> str:
    words, host = TEXTS[lang], escape(auth.app_host)
    return (f"<h1>{words['heading'].format(host=host)}</h1>"
            f"<p>{words['asks'].format(host=host)}</p>"
            f'<form id="sign-in-form"><label for="api-key">{words["api_key"]}</label>'
            '<input id="api-key" type="password" autocomplete="off" data-testid="api-key" '
            f'required><button type="submit" data-testid="sign-in">{words["sign_in"]}</button>'
            "</form>")


def _sign_out(token: str, lang: str) -> str:
    return (f'<button type="button" id="sign-out" data-csrf="{escape(csrf_token(token))}">'
            f"{TEXTS[lang]['sign_out']}</button>")


def _consent(auth: Authorization, info: pb.SessionInfo, token: str, lang: str) -> str:
    words = TEXTS[lang]
    host, account = escape(auth.app_host), escape(info.account_id)
    who = escape(info.label or info.key_id)
    head = (f"<h1>{words['heading'].format(host=host)}</h1>"
            f'<p class="note">{words["signed_in"].format(who=who)}</p>')
    if info.role != "management":
        reason = words["master"] if info.role == "master" else words["plain"]
        return (head + f'<p class="error" data-testid="oauth-refusal">'
                f"{words['refusal'].format(reason=reason)}</p>" + _sign_out(token, lang))
    fields = {"callback_url": auth.callback, "code_challenge": auth.challenge,
              "code_challenge_method": auth.method, "csrf_token": csrf_token(token)}
    hidden = "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">'
                     for name, value in fields.items())
    approve = words["approve"].format(account=account, host=host, origin=escape(auth.origin))
    return (head + f"<p>{approve}</p>"
            f'<form method="post" action="/auth">{hidden}<button type="submit" '
            f'data-testid="authorize">{words["authorize"].format(host=host)}</button></form>'
            f'<p><a href="{escape(auth.denied())}" data-testid="deny">{words["deny"]}</a></p>'
            + _sign_out(token, lang))


class OAuthPages:
    def __init__(self, client: RouterClient, settings: GatewaySettings) -> None:
        self._client = client
        self._settings = settings
        self._assets = {name: (ASSETS / name).read_bytes() for name in _TYPES}

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._assets:
            raise APIError(404, "Not found")
        return Response(self._assets[name], media_type=_TYPES[name], headers=_headers())

    async def _call(self, request: Request, method: Any, message: object, token: str) -> Any:
        try:
            return await method(message, metadata=call_metadata(request, token, ""),
                                timeout=_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def _session(self, request: Request) -> tuple[str, pb.SessionInfo | None]:
        """The session cookie's token and session (None when it is not signed in)."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not well_formed(token):
            return "", None
        try:
            info = await self._call(request, self._client.sessions.GetSession,
                                    pb.SessionRequest(), token)
        except APIError as exc:
            if exc.status == 401:
                return "", None
            raise
        assert isinstance(info, pb.SessionInfo)
        return token, info

    async def consent(self, request: Request) -> Response:
        """GET /auth: the sign-in form or the consent, or a page saying what is wrong."""
        lang = language(request)
        try:
            auth = authorization(request.query_params, self._settings)
            token, info = await self._session(request)
        except APIError as exc:
            return error_page(exc, lang)
        body = _sign_in(auth, lang) if info is None else _consent(auth, info, token, lang)
        return _page(TEXTS[lang]["title"].format(host=auth.app_host), body, origin=auth.origin,
                     lang=lang, switch=switch_href(request, lang))

    async def approve(self, request: Request) -> Response:
        """POST /auth: a code for the session's account, and the browser sent to the app."""
        try:
            auth, token = await self._approval(request)
            code = await self._call(request, self._client.sessions.CreateAuthCode,
                                    pb.AuthCodeRequest(app_host=auth.app_host,
                                                       code_challenge=auth.challenge,
                                                       code_challenge_method=auth.method), token)
        except APIError as exc:
            return error_page(exc, language(request))
        assert isinstance(code, pb.AuthCode)
        headers = _headers()
        headers["Location"] = auth.redirect(code.code)
        return Response(status_code=303, headers=headers)

    async def _approval(self, request: Request) -> tuple[Authorization, str]:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != _FORM:
            raise APIError(415, "The approval is an HTML form post")
        body = await read_body(request, _MAX_FORM)
        try:
            form = dict(parse_qsl(body.decode("latin-1"), max_num_fields=8))
        except ValueError:
            raise APIError(400, "The approval form is malformed") from None
        auth = authorization(form, self._settings)
        token = request.cookies.get(SESSION_COOKIE, "")
        if not well_formed(token):
            raise APIError(401, "Sign in first: your session has ended")
        sent = form.get("csrf_token", "").encode("utf-8", "replace")
        if not hmac.compare_digest(sent, csrf_token(token).encode()):
            raise APIError(403, "The approval did not come from this page (CSRF token); open "
                                "the app's authorization link again")
        return auth, token
