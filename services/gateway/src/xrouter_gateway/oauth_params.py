"""OAuth PKCE input checked at the edge (docs/oauth.md): the app's callback URL (absolute http or
https; http only for the loopback host or a host the operator allows; no credentials, no
fragment; XROUTER_OAUTH_ALLOWED_CALLBACKS), the challenge and its method (plain only when
XROUTER_OAUTH_ALLOW_PLAIN is on), the code and the verifier. Every refusal is an APIError."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlencode, urlsplit, urlunsplit

from xrouter_gateway.errors import APIError
from xrouter_gateway.settings import GatewaySettings

_MAX_URL = 2048
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
# DNS names (IDNs in their xn-- form) and IP addresses: safe inside HTML and the CSP header.
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}"
                   r"[a-z0-9])?$|^[0-9a-f:.]+$")
# RFC 7636: an S256 challenge is BASE64URL(SHA256(verifier)) unpadded; a verifier (and a plain
# challenge) 43 to 128 unreserved characters.
_S256 = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CODE = re.compile(r"^[A-Za-z0-9_-]{43}$")
METHODS = ("S256", "plain")


@dataclass(frozen=True, slots=True)
class Authorization:
    """A checked authorization request."""

    callback: str
    app_host: str  # host[:port] as the callback names it: the new key's label
    origin: str  # scheme://host[:port], for the consent page's form-action
    challenge: str
    method: str

    def redirect(self, code: str) -> str:
        """The callback URL with `code` added to its query (its own parameters kept as sent)."""
        return self._callback_with({"code": code})

    def denied(self) -> str:
        """The callback URL saying the user refused: `error=access_denied` (RFC 6749 4.1.2.1)."""
        return self._callback_with({"error": "access_denied"})

    def _callback_with(self, params: dict[str, str]) -> str:
        parts = urlsplit(self.callback)
        added = urlencode(params)
        query = f"{parts.query}&{added}" if parts.query else added
        return urlunsplit(parts._replace(query=query))


def method_of(value: str, settings: GatewaySettings) -> str:
    """The challenge method (absent: plain, as RFC 7636 says); 400 when unknown or disabled."""
    method = value or "plain"
    if method not in METHODS:
        raise APIError(400, "Invalid code_challenge_method: use S256 (or plain, when the "
                            "operator allows it)", param="code_challenge_method")
    if method == "plain" and not settings.oauth_allow_plain:
        raise APIError(400, "Invalid code_challenge_method: plain is not accepted here; use S256",
                       param="code_challenge_method")
    return method


def _app_host(parts: SplitResult) -> str:
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise APIError(400, "callback_url has an invalid port", param="callback_url") from None
    if not _HOST.match(host):
        raise APIError(400, "callback_url must name a DNS host or an IP address",
                       param="callback_url")
    named = f"[{host}]" if ":" in host else host
    return named if port is None else f"{named}:{port}"


def callback(url: str, settings: GatewaySettings) -> tuple[str, str]:
    """The app's host (host[:port]) and origin of a callback URL; 400 when it is not one, 403
    when the operator does not allow its host."""
    if not url:
        raise APIError(400, "callback_url is required", param="callback_url")
    if len(url) > _MAX_URL or not url.isascii() or not url.isprintable() or " " in url:
        raise APIError(400, "callback_url must be a URL of printable ASCII characters",
                       param="callback_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise APIError(400, "callback_url must be an absolute http or https URL",
                       param="callback_url")
    if "@" in parts.netloc or parts.fragment or "#" in url:
        raise APIError(400, "callback_url must not carry credentials or a fragment",
                       param="callback_url")
    app_host = _app_host(parts)
    allowed = settings.oauth_allowed_callbacks
    host = (parts.hostname or "").lower()
    listed = host in allowed or app_host in allowed
    if allowed and not listed:
        raise APIError(403, f"Apps at {app_host} may not be authorized here (the operator "
                            "restricts callback hosts)", param="callback_url")
    if parts.scheme == "http" and host not in _LOOPBACK and not listed:
        raise APIError(400, "callback_url must use https (http only for localhost)",
                       param="callback_url")
    return app_host, f"{parts.scheme}://{app_host}"


def authorization(params: Mapping[str, str], settings: GatewaySettings) -> Authorization:
    """The checked parameters of GET /auth (or of its approving POST)."""
    app_host, origin = callback(params.get("callback_url", ""), settings)
    challenge = params.get("code_challenge", "")
    if not challenge:
        raise APIError(400, "code_challenge is required: XRouter accepts only PKCE",
                       param="code_challenge")
    method = method_of(params.get("code_challenge_method", ""), settings)
    if (_S256 if method == "S256" else _VERIFIER).match(challenge) is None:
        raise APIError(400, "code_challenge is malformed for its method (S256: 43 base64url "
                            "characters)", param="code_challenge")
    return Authorization(params["callback_url"], app_host, origin, challenge, method)


def exchange_input(code: str, verifier: str) -> None:
    """403 for a code that cannot be one (no router call); 400 for a malformed verifier."""
    if _CODE.match(code) is None:
        raise APIError(403, "Invalid code or code_verifier", param="code")
    if _VERIFIER.match(verifier) is None:
        raise APIError(400, "code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9 and "
                            "-._~", param="code_verifier")
