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


def _page(title: str, body: str, status: int = 200, origin: str = "") -> Response:
    html = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>"
            '<link rel="icon" href="/auth/favicon.svg" type="image/svg+xml">'
            '<link rel="stylesheet" href="/auth/consent.css">'
            '<script src="/auth/consent.js" defer></script></head>'
            f'<body><main>{body}<p id="message" role="alert" hidden></p></main></body></html>')
    return Response(html, status_code=status, media_type="text/html; charset=utf-8",
                    headers=_headers(origin))


def error_page(err: APIError) -> Response:
    body = ("<h1>This app cannot be authorized</h1>"
            f'<p class="error" data-testid="oauth-error">{escape(err.message)}</p>')
    return _page("XRouter: cannot authorize", body, err.status)


def _sign_in(auth: Authorization) -> str:
    host = escape(auth.app_host)
    return (f'<h1>Authorize <span class="app">{host}</span></h1>'
            f"<p>The app at <b>{host}</b> asks for an API key of your XRouter account. Sign in "
            "with the account's management key to continue.</p>"
            '<form id="sign-in-form"><label for="api-key">API key</label>'
            '<input id="api-key" type="password" autocomplete="off" data-testid="api-key" '
            'required><button type="submit" data-testid="sign-in">Sign in</button></form>')


def _sign_out(token: str) -> str:
    return (f'<button type="button" id="sign-out" data-csrf="{escape(csrf_token(token))}">'
            "Sign out</button>")


def _consent(auth: Authorization, info: pb.SessionInfo, token: str) -> str:
    host, account = escape(auth.app_host), escape(info.account_id)
    who = escape(info.label or info.key_id)
    head = (f'<h1>Authorize <span class="app">{host}</span></h1>'
            f'<p class="note">Signed in with key <b>{who}</b>.</p>')
    if info.role != "management":
        reason = ("The master key belongs to no account" if info.role == "master"
                  else "This key cannot make keys")
        return (head + f'<p class="error" data-testid="oauth-refusal">{reason}: sign in with the '
                "management key of the account the app should use.</p>" + _sign_out(token))
    fields = {"callback_url": auth.callback, "code_challenge": auth.challenge,
              "code_challenge_method": auth.method, "csrf_token": csrf_token(token)}
    hidden = "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">'
                     for name, value in fields.items())
    return (head + f"<p>Approving creates a new API key of account <b>{account}</b>, labelled "
            f"<b>{host}</b>, and sends it to the app at <b>{escape(auth.origin)}</b>. The app "
            "can spend the account's credits with it until you disable or delete the key.</p>"
            f'<form method="post" action="/auth">{hidden}<button type="submit" '
            f'data-testid="authorize">Authorize {host}</button></form>' + _sign_out(token))


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
        try:
            auth = authorization(request.query_params, self._settings)
            token, info = await self._session(request)
        except APIError as exc:
            return error_page(exc)
        body = _sign_in(auth) if info is None else _consent(auth, info, token)
        return _page(f"XRouter: authorize {auth.app_host}", body, origin=auth.origin)

    async def approve(self, request: Request) -> Response:
        """POST /auth: a code for the session's account, and the browser sent to the app."""
        try:
            auth, token = await self._approval(request)
            code = await self._call(request, self._client.sessions.CreateAuthCode,
                                    pb.AuthCodeRequest(app_host=auth.app_host,
                                                       code_challenge=auth.challenge,
                                                       code_challenge_method=auth.method), token)
        except APIError as exc:
            return error_page(exc)
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
