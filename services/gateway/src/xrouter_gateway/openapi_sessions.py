"""The OpenAPI description of the console's sign-in (/console/session), the OAuth consent page
(/auth) and the PKCE exchange (/v1/auth/keys): paths and their schemas."""

from __future__ import annotations

from typing import Any

import msgspec

from xrouter_gateway.console_session import SignIn
from xrouter_gateway.oauth_api import Exchange
from xrouter_gateway.openapi_schemas import BOOL, STR, Schema, data, nullable, obj, ref

_ROLE: Schema = {"enum": ["master", "management", "key"]}
_HTML: Schema = {**STR, "description": "An HTML page (strict Content-Security-Policy)"}


def session_components() -> dict[str, Schema]:
    _, requests = msgspec.json.schema_components(
        [SignIn, Exchange], ref_template="#/components/schemas/{name}")
    session = obj({
        "role": _ROLE,
        "account_id": {**nullable(STR), "description": "null for the master key"},
        "key_id": {**nullable(STR), "description": "null for the master key"},
        "label": {**nullable(STR), "description": "null for the master key"},
        "csrf_token": {**STR, "description": "send as X-CSRF-Token with every change made "
                                             "with the session cookie"},
        "expires_at": {**STR, "format": "date-time",
                       "description": "ISO 8601 UTC: 12 hours after sign-in"}})
    return {**requests, "ConsoleSession": data(session),
            "SignedOut": data(obj({"revoked": BOOL})),
            "ExchangedKey": obj({"key": {**STR, "description": "the new key, shown once"},
                                 "user_id": {**STR, "description": "the approving account"}})}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def _errors(*statuses: int, media: str = "application/json") -> dict[str, Any]:
    schema = ref("Error") if media == "application/json" else _HTML
    return {str(s): {"description": "Error", "content": {media: {"schema": schema}}}
            for s in statuses}


def _body(schema: str, media: str = "application/json") -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": ref(schema)}}}


def session_paths() -> dict[str, Any]:
    session: list[dict[str, list[str]]] = [{"session": []}]
    approval = obj({n: STR for n in ("callback_url", "code_challenge", "code_challenge_method",
                                     "csrf_token")})
    query = [{"name": n, "in": "query", "required": n != "code_challenge_method", "schema": STR}
             for n in ("callback_url", "code_challenge", "code_challenge_method")]
    return {
        "/console/session": {
            "post": {"summary": "Sign in with an API key: sets the HttpOnly session cookie "
                                "xr_session (12 hours)",
                     "requestBody": _body("SignIn"),
                     "responses": {"200": {**_json("The session", "ConsoleSession"),
                                           "headers": {"Set-Cookie": {"schema": STR}}},
                                   **_errors(400, 401, 403, 413, 415)}},
            "get": {"summary": "The session of the cookie", "security": session,
                    "responses": {"200": _json("The session", "ConsoleSession"),
                                  **_errors(401)}},
            "delete": {"summary": "Sign out: revoke the session, clear the cookie "
                                  "(X-CSRF-Token required)", "security": session,
                       "responses": {"200": _json("Signed out", "SignedOut"), **_errors(403)}}},
        "/auth": {
            "get": {"summary": "OAuth PKCE consent page (sign-in form when not signed in)",
                    "parameters": query,
                    "responses": {"200": {"description": "The page",
                                          "content": {"text/html": {"schema": _HTML}}},
                                  **_errors(400, 403, media="text/html")}},
            "post": {"summary": "Approve (the page's form): 303 to callback_url with ?code=",
                     "security": session,
                     "requestBody": {"required": True, "content": {
                         "application/x-www-form-urlencoded": {"schema": approval}}},
                     "responses": {"303": {"description": "To the app's callback, with the code",
                                           "headers": {"Location": {"schema": STR}}},
                                   **_errors(400, 401, 403, 413, 415, media="text/html")}}},
        "/auth/{name}": {
            "get": {"summary": "The consent page's script, style and icon (consent.js, "
                               "consent.css, favicon.svg)",
                    "parameters": [{"name": "name", "in": "path", "required": True,
                                    "schema": STR}],
                    "responses": {"200": {"description": "The file", "content": {
                        media: {"schema": STR} for media in (
                            "text/javascript", "text/css", "image/svg+xml")}},
                        **_errors(404)}}},
        "/v1/auth/keys": {
            "post": {"summary": "Exchange an OAuth PKCE code for a new key of the approving "
                                "account (OpenRouter's flow; no credential)",
                     "requestBody": _body("Exchange"),
                     "responses": {"200": _json("The new key", "ExchangedKey"),
                                   **_errors(400, 403, 413)}},
            "options": {"summary": "CORS preflight: any origin may POST a JSON body here",
                        "responses": {"204": {
                            "description": "Allowed: POST with Content-Type, for 600 s",
                            "headers": {name: {"schema": STR} for name in (
                                "Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                                "Access-Control-Allow-Headers", "Access-Control-Max-Age")}}}}},
    }
