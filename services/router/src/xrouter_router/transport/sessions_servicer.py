"""The Sessions gRPC servicer: console sessions and OAuth codes;
translation only. The credential travels in the `authorization` metadata, as for every call."""

from __future__ import annotations

import grpc

from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_router.domain import sessions
from xrouter_router.domain.errors import Unauthenticated
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.oauth import AuthCodes
from xrouter_router.domain.ports import Authenticator
from xrouter_router.domain.sessions import SessionService
from xrouter_router.transport.accounts_servicer import key_info
from xrouter_router.transport.errors import answering
from xrouter_router.transport.servicer import credentials

Context = grpc.aio.ServicerContext[object, object]


def session_info(key: ApiKey, expires_at: float, *, token: str = "",
                 created_at: float = 0.0) -> pb.SessionInfo:
    """The session of `key` (the master key's names no account and no key)."""
    master = key.master
    return pb.SessionInfo(token=token, role=sessions.role_of(key),
                          account_id="" if master else key.account_id,
                          key_id="" if master else key.id, label="" if master else key.label,
                          created_at=created_at, expires_at=expires_at)


class SessionsServicer(pb_grpc.SessionsServicer):
    def __init__(self, service: SessionService, auth: Authenticator, codes: AuthCodes) -> None:
        self._service = service
        self._auth = auth
        self._codes = codes

    async def CreateSession(self, request: pb.SessionRequest,  # noqa: N802
                            context: Context) -> pb.SessionInfo:
        async with answering(context):
            api_key, address = credentials(context)
            token, session = await self._service.create(
                await self._auth.authenticate(api_key, address))
            return session_info(session.key, session.expires_at, token=token,
                                created_at=session.created_at)
        raise AssertionError("unreachable: abort raises")

    async def GetSession(self, request: pb.SessionRequest,  # noqa: N802
                         context: Context) -> pb.SessionInfo:
        async with answering(context):
            token, address = credentials(context)
            if not token.startswith(sessions.SESSION_PREFIX):
                raise Unauthenticated("Not a session: sign in first")
            key = await self._auth.authenticate(token, address)
            assert key.session_expires_at is not None  # a session's key always has it
            return session_info(key, key.session_expires_at)
        raise AssertionError("unreachable: abort raises")

    async def RevokeSession(self, request: pb.SessionRequest,  # noqa: N802
                            context: Context) -> pb.RevokeSessionResponse:
        async with answering(context):
            token, _ = credentials(context)
            return pb.RevokeSessionResponse(revoked=await self._service.revoke(token))
        raise AssertionError("unreachable: abort raises")

    async def CreateAuthCode(self, request: pb.AuthCodeRequest,  # noqa: N802
                             context: Context) -> pb.AuthCode:
        async with answering(context):
            api_key, address = credentials(context)
            caller = await self._auth.authenticate(api_key, address)
            code, expires_at = await self._codes.issue(
                caller, request.app_host, request.code_challenge, request.code_challenge_method)
            return pb.AuthCode(code=code, expires_at=expires_at)
        raise AssertionError("unreachable: abort raises")

    async def ExchangeAuthCode(self, request: pb.ExchangeRequest,  # noqa: N802
                               context: Context) -> pb.CreatedKey:
        async with answering(context):
            new = await self._codes.exchange(request.code, request.code_verifier,
                                             request.code_challenge_method)
            return pb.CreatedKey(info=key_info(new.info), key=new.plain)
        raise AssertionError("unreachable: abort raises")
