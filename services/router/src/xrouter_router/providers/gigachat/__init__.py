"""GigaChat (Sber): OAuth client-credentials tokens, POST {base_url}/chat/completions with
`functions`/`function_call`, SSE streams of `chat.completion` events ending in `data: [DONE]`,
and POST {base_url}/embeddings.

Options of a [providers.NAME] table with `type = "gigachat"`:
  api_key_env      the variable holding the authorization key (base64 of client_id:client_secret)
  base_url         default https://gigachat.devices.sberbank.ru/api/v1
  auth_url         token endpoint, default https://ngw.devices.sberbank.ru:9443/api/v2/oauth
  scope            GIGACHAT_API_PERS (default), GIGACHAT_API_B2B or GIGACHAT_API_CORP
  ca_bundle        path to a PEM file (the Russian Trusted Root CA), trusted besides the system
                   store; the adapter then uses an HTTP client of its own
  verify_ssl       default true; only an explicit `false` turns certificate checks off, and
                   that is logged as a WARNING at startup
  update_interval  streams only: minimum seconds between GigaChat's events; default 0 (not sent)

Images in content parts are dropped: GigaChat takes images only as `attachments`, ids of files
uploaded to /files beforehand, which this adapter does not do.
"""

from __future__ import annotations

import logging
import ssl

from xrouter_common.env import ConfigError
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.gigachat.auth import TokenSource
from xrouter_router.providers.gigachat.provider import GigaChatProvider
from xrouter_router.providers.http1 import HttpClient

__all__ = ["GigaChatProvider", "build"]

BASE_URL = "https://gigachat.devices.sberbank.ru/api/v1"
AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
SCOPES = ("GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP")

log = logging.getLogger("xrouter.router.gigachat")


def build(config: ProviderConfig, session: HttpClient) -> GigaChatProvider:
    """Must run inside the serving event loop when ca_bundle or verify_ssl makes a session."""
    here = f"providers.{config.name}"
    if not config.api_key:
        raise ConfigError(f"{here}: GigaChat needs its authorization key (api_key_env)")
    scope = config.option("scope", SCOPES[0], str)
    if scope not in SCOPES:
        raise ConfigError(f"{here}.scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    auth_url = config.option("auth_url", AUTH_URL, str)
    if not auth_url.startswith(("http://", "https://")):
        raise ConfigError(f"{here}.auth_url must be an http(s) URL")
    interval = config.option("update_interval", 0.0, (int, float))
    if isinstance(interval, bool) or interval < 0:
        raise ConfigError(f"{here}.update_interval must be a number >= 0")
    base_url = config.url(BASE_URL)
    tls = _tls(config, here)
    own = _own_session(session, tls) if tls is not None else None
    http = own or session
    tokens = TokenSource(config.name, session=http, url=auth_url,
                         authorization_key=config.api_key, scope=scope)
    return GigaChatProvider(config.name, base_url=base_url, tokens=tokens, session=http,
                            owns_session=own is not None, headers=config.headers,
                            update_interval=float(interval))


def _tls(config: ProviderConfig, here: str) -> ssl.SSLContext | bool | None:
    """What the adapter's own session verifies with: a context trusting the bundle and the
    system store, False when verification is off, or None for the shared session."""
    bundle = config.option("ca_bundle", "", str)
    if not config.option("verify_ssl", True, bool):
        if bundle:
            raise ConfigError(f"{here}: ca_bundle and verify_ssl = false contradict each other")
        log.warning("%s: verify_ssl = false: GigaChat's TLS certificates are NOT verified", here)
        return False
    if not bundle:
        return None
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{here}.ca_bundle: cannot load {bundle}: {exc}") from exc
    return context


def _own_session(shared: HttpClient, tls: ssl.SSLContext | bool) -> HttpClient:
    """A client like the shared one (pool size, connect timeout) that verifies TLS its own way."""
    return HttpClient(connect_timeout=shared.connect_timeout, pool_size=shared.pool_size, tls=tls)
