"""The one error tree of the router. Every failure the router reports is one of these.

Each error knows its kind (what the client sees) and whether another deployment may be tried
after it (`retryable`). Lower-layer exceptions are translated into these at exactly one place
per layer (providers/http.py for upstream I/O); the transport maps them to gRPC in one table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ErrorKind(enum.Enum):
    """What went wrong, from the client's point of view; the gateway maps it to an HTTP status."""

    INVALID_REQUEST = "invalid_request"
    UNAUTHENTICATED = "unauthenticated"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    FORBIDDEN = "forbidden"
    MODEL_NOT_FOUND = "model_not_found"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    UPSTREAM = "upstream"
    NO_PROVIDER = "no_provider"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class XRouterError(Exception):
    """Base of every error the router reports to its callers."""

    kind: ErrorKind = ErrorKind.INTERNAL
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str = "",
        metadata: Mapping[str, Any] | None = None,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.retry_after = retry_after


class InvalidRequest(XRouterError):
    """The request cannot be served as written (a client error)."""

    kind = ErrorKind.INVALID_REQUEST


class PersonalDataBlocked(InvalidRequest):
    """The key's personal-data guard policy is `block` and the request carries personal data
    (a 400): metadata.kinds names the kinds found, never a value (domain/pii/block.py)."""


class Unauthenticated(XRouterError):
    """The API key is missing, malformed, unknown, expired or disabled."""

    kind = ErrorKind.UNAUTHENTICATED


class ModelNotFound(XRouterError):
    """No model in the catalog has this id or alias."""

    kind = ErrorKind.MODEL_NOT_FOUND


class Forbidden(XRouterError):
    """The key may not do this (a model outside its allowed list, management without rights)."""

    kind = ErrorKind.FORBIDDEN


class AddressNotAllowed(Forbidden):
    """The key has an IP allow-list and the client's address is not on it (or is unknown)."""


class ResidencyForbidden(Forbidden):
    """The key's (or its account's) residency policy excludes every deployment that could serve
    the request; metadata.reasons names each deployment and why."""


class RateLimited(XRouterError):
    """A rate limit of the key ran out; retry_after says when to try again."""

    kind = ErrorKind.RATE_LIMITED


class InsufficientCredits(XRouterError):
    """The worst-case cost does not fit; metadata.limit_source is "account" or "key"."""

    kind = ErrorKind.INSUFFICIENT_CREDITS


class BudgetExhausted(XRouterError):
    """The account's money ran out in the middle of a stream: it ends with finish_reason
    "length" and this error (code budget_exhausted) in the error chunk."""

    kind = ErrorKind.INSUFFICIENT_CREDITS

    def __init__(self) -> None:
        super().__init__("The credit balance ran out during the stream",
                         metadata={"error_code": "budget_exhausted"})


class NotFound(XRouterError):
    """A key, account or generation that does not exist (or is not the caller's)."""

    kind = ErrorKind.MODEL_NOT_FOUND


class NoProvider(XRouterError):
    """The model exists, but no deployment satisfies the request's requirements."""

    kind = ErrorKind.NO_PROVIDER


class Unavailable(XRouterError):
    """A part of XRouter itself (key store, limiter) cannot serve right now: a 503."""

    kind = ErrorKind.UNAVAILABLE


class DatabaseUnavailable(Unavailable):
    """The database failed. Its own text (hosts, paths, SQL) went to the log, never here."""

    def __init__(self) -> None:
        super().__init__("The database is unavailable; retry shortly", retry_after=1.0)


class DeadlineExceeded(XRouterError):
    """The caller's overall deadline ran out before any deployment answered."""

    kind = ErrorKind.TIMEOUT


class InternalError(XRouterError):
    """A bug or an impossible state inside the router."""

    kind = ErrorKind.INTERNAL


class UpstreamError(XRouterError):
    """A provider failed to answer. Subclasses say how; `provider` says who."""

    kind = ErrorKind.UPSTREAM
    retryable = True
    reason = "error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int = 0,
        raw: Any = None,
        retry_after: float = 0.0,
    ) -> None:
        meta: dict[str, Any] = {"provider_name": provider, "reason": self.reason}
        if status:
            meta["status"] = status
        if raw is not None:
            meta["raw"] = raw
        super().__init__(message, metadata=meta, retry_after=retry_after)
        self.provider = provider
        self.status = status


class UpstreamTimeout(UpstreamError):
    """The provider did not answer within the attempt's timeout."""

    reason = "timeout"


class UpstreamConnectError(UpstreamError):
    """The provider could not be reached (refused, reset, DNS, TLS)."""

    reason = "connect"


class UpstreamRateLimited(UpstreamError):
    """The provider answered 429."""

    reason = "rate_limited"


class UpstreamServerError(UpstreamError):
    """The provider answered 5xx."""

    reason = "server_error"


class UpstreamAuthError(UpstreamError):
    """The provider refused our credentials (401/403): a deployment problem, so try another."""

    reason = "auth"


class UpstreamUnavailable(UpstreamError):
    """The deployment cannot serve (402: our provider account is out of funds; 404: the
    configured upstream model does not exist there)."""

    reason = "unavailable"


class UpstreamBadResponse(UpstreamError):
    """The provider answered something that is not its documented wire format."""

    reason = "bad_response"


class NonConforming(UpstreamBadResponse):
    """The answer does not conform to the request's response_format (not JSON, not an object,
    or outside its json_schema): the provider failed to do what was asked, so another is tried."""

    reason = "non_conforming"


class UpstreamRejected(UpstreamError):
    """The provider rejected the request itself (4xx other than auth/429): the client's fault."""

    kind = ErrorKind.INVALID_REQUEST
    retryable = False
    reason = "rejected"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one deployment, as recorded on the generation and reported on failure."""

    model: str
    provider: str
    deployment: str
    outcome: str
    latency_ms: int
    error: str = ""
    status: int = 0


def attempts_metadata(attempts: Sequence[Attempt]) -> dict[str, Any]:
    """error.metadata["attempts"]: what each provider attempt ended with."""
    return {"attempts": [
        {"provider_name": a.provider, "model": a.model, "reason": a.outcome, "status": a.status,
         "message": a.error}
        for a in attempts
    ]}


class AllAttemptsFailed(XRouterError):
    """Every deployment tried failed; carries each attempt for error.metadata."""

    kind = ErrorKind.UPSTREAM

    def __init__(self, attempts: Sequence[Attempt], last: UpstreamError | None) -> None:
        summary = last.message if last else "no deployment could be tried"
        meta = attempts_metadata(attempts)
        if last is not None:
            meta["provider_name"] = last.provider
            if "raw" in last.metadata:
                meta["raw"] = last.metadata["raw"]
        XRouterError.__init__(self, f"All providers failed: {summary}", metadata=meta)
        self.attempts = tuple(attempts)
        self.last = last
