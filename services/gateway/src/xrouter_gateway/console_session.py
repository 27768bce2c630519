"""The console's sign-in over HTTP: POST /console/session (an API key in, the session cookie
and its CSRF token out), GET (the current session), DELETE (sign out). The router keeps the
sessions (only their keyed hashes); this module sets and clears the cookie."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import grpc
import msgspec
import orjson
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.guards import validation_error
from xrouter_gateway.inbound import call_metadata, checked_key, read_body
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.session_cookie import (
    SESSION_COOKIE,
    cookie_credential,
    csrf_token,
    require_csrf,
    well_formed,
)

_TIMEOUT = 10.0
_MAX_BODY = 16 * 1024
# Longer than any key XRouter issues or an operator would choose as the master key.
_MAX_KEY = 1024


class SignIn(Struct, forbid_unknown_fields=True):
    key: Annotated[str, Meta(min_length=1, max_length=_MAX_KEY)]


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


def session_json(info: pb.SessionInfo, token: str) -> dict[str, Any]:
    """The session as the console reads it (the master key's names no account and no key)."""
    master = info.role == "master"
    return {"role": info.role, "account_id": None if master else info.account_id,
            "key_id": None if master else info.key_id, "label": None if master else info.label,
            "csrf_token": csrf_token(token), "expires_at": _iso(info.expires_at)}


def _secure(request: Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says so)."""
    return (request.url.scheme == "https"
            or request.headers.get("x-forwarded-proto", "").lower() == "https")


def session_cookie(request: Request, token: str) -> str:
    """The Set-Cookie value: a browser-session cookie the page's scripts cannot read, sent only
    with requests from this site; Secure over https."""
    value = f"{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    return value + "; Secure" if _secure(request) else value


def _cleared(request: Request) -> str:
    value = f"{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    return value + "; Secure" if _secure(request) else value


def _json(body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


class ConsoleSessionEndpoints:
    def __init__(self, client: RouterClient) -> None:
        self._client = client

    async def _call(self, request: Request, method: Any, credential: str) -> Any:
        try:
            return await method(pb.SessionRequest(),
                                metadata=call_metadata(request, credential, ""),
                                timeout=_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def sign_in(self, request: Request) -> Response:
        """JSON only: a page of another site cannot send it without the browser asking first
        (no sign-in forced on a visitor with someone else's key)."""
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            raise APIError(415, "Send the key as JSON: Content-Type: application/json")
        try:
            body = msgspec.json.decode(await read_body(request, _MAX_BODY), type=SignIn)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None
        except msgspec.DecodeError as exc:
            raise APIError(400, f"Invalid JSON in request body: {exc}") from None
        key = checked_key(body.key.strip(), "key")
        info = await self._call(request, self._client.sessions.CreateSession, key)
        return _json({"data": session_json(info, info.token)},
                     {"Set-Cookie": session_cookie(request, info.token)})

    async def current(self, request: Request) -> Response:
        token = cookie_credential(request)
        if not token:
            raise APIError(401, "Not signed in: POST /console/session with an API key")
        info = await self._call(request, self._client.sessions.GetSession, token)
        return _json({"data": session_json(info, token)})

    async def sign_out(self, request: Request) -> Response:
        """Revokes the session (CSRF-checked) and clears the cookie; without a usable cookie
        there is nothing to revoke and the cookie is cleared all the same."""
        token = request.cookies.get(SESSION_COOKIE, "")
        revoked = False
        if well_formed(token):
            require_csrf(request, token)
            reply = await self._call(request, self._client.sessions.RevokeSession, token)
            revoked = reply.revoked
        return _json({"data": {"revoked": revoked}}, {"Set-Cookie": _cleared(request)})
