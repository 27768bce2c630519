"""The console's session cookie as a credential of the API: `xr_session` holds a session token
(the router's `xrs-...`, docs/security.md), sent by the browser instead of an Authorization
header. Unsafe methods must also carry X-CSRF-Token: HMAC-SHA256 of a fixed label keyed with the
session token, which a page of another site cannot compute (it never sees the HttpOnly cookie) and
which reveals nothing of the token. Keyed with the token itself, it needs no secret shared by the
gateway replicas and dies with the session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from starlette.requests import Request

from xrouter_gateway.errors import APIError

SESSION_COOKIE = "xr_session"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The router's session tokens: "xrs-" and 32 random bytes in unpadded base64url.
_TOKEN = re.compile(r"^xrs-[A-Za-z0-9_-]{43}$")
_LABEL = b"xrouter console csrf v1"


def well_formed(token: str) -> bool:
    return _TOKEN.match(token) is not None


def csrf_token(session: str) -> str:
    """The CSRF token of a session token."""
    digest = hmac.new(session.encode(), _LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def require_csrf(request: Request, session: str) -> None:
    """A 403 unless the request carries the session's CSRF token."""
    sent = request.headers.get(CSRF_HEADER, "").encode()
    if not hmac.compare_digest(sent, csrf_token(session).encode()):
        raise APIError(403, f"Missing or wrong {CSRF_HEADER} header: a change made with the "
                            "session cookie must carry the session's CSRF token",
                       param=CSRF_HEADER)


def cookie_credential(request: Request) -> str:
    """The session token of the request's cookie ("" without one). A malformed cookie is a 401; an
    unsafe method without the session's X-CSRF-Token a 403."""
    token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        return ""
    if not well_formed(token):
        raise APIError(401, "Invalid session cookie: sign in again")
    if request.method in _UNSAFE:
        require_csrf(request, token)
    return token
