"""POST /v1/auth/keys (OpenRouter's PKCE exchange, docs/oauth.md): a code and its verifier in, a
new key of the approving account out. No credential: the code is one. Apps may call it from a
browser page of their own origin as OpenRouter's example does (a JSON body sent without a
Content-Type header: a simple request, no preflight), so every answer allows any origin
(without cookies); a page that sends `Content-Type: application/json` gets its preflight
(OPTIONS) answered too."""

from __future__ import annotations

from typing import Annotated

import grpc
import msgspec
import orjson
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.guards import validation_error
from xrouter_gateway.inbound import read_body
from xrouter_gateway.oauth_params import exchange_input, method_of
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.settings import GatewaySettings

_TIMEOUT = 10.0
_MAX_BODY = 16 * 1024
_CORS = {"Access-Control-Allow-Origin": "*"}
# What a cross-origin page may send: a POST with a JSON body (no credentials: the code is one).
_PREFLIGHT = {**_CORS, "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers":
              "Content-Type", "Access-Control-Max-Age": "600"}


class Exchange(Struct):
    code: Annotated[str, Meta(max_length=256)]
    code_verifier: Annotated[str, Meta(max_length=256)] = ""
    code_challenge_method: Annotated[str, Meta(max_length=16)] = ""


class OAuthKeys:
    def __init__(self, client: RouterClient, settings: GatewaySettings) -> None:
        self._client = client
        self._settings = settings

    async def preflight(self, request: Request) -> Response:
        """OPTIONS /v1/auth/keys: any origin may POST a JSON body here."""
        return Response(status_code=204, headers=_PREFLIGHT)

    async def exchange(self, request: Request) -> Response:
        try:
            return await self._exchange(request)
        except APIError as exc:
            return exc.response(_CORS)

    async def _exchange(self, request: Request) -> Response:
        try:
            body = msgspec.json.decode(await read_body(request, _MAX_BODY) or b"{}",
                                       type=Exchange)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None
        except msgspec.DecodeError as exc:
            raise APIError(400, f"Invalid JSON in request body: {exc}") from None
        method = method_of(body.code_challenge_method, self._settings)
        exchange_input(body.code, body.code_verifier)
        try:
            made = await self._client.sessions.ExchangeAuthCode(
                pb.ExchangeRequest(code=body.code, code_verifier=body.code_verifier,
                                   code_challenge_method=method), timeout=_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        reply = {"key": made.key, "user_id": made.info.account_id}
        return Response(orjson.dumps(reply), media_type="application/json", headers=_CORS)
