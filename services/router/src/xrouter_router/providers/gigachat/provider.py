"""The GigaChat adapter itself: chat, streams and embeddings over Bearer-token HTTP, with one
retry on a fresh token when the API refuses the cached one. GigaChat has no response_format: a
json_schema (or json_object) becomes one more function, named after the schema, that
`function_call` forces; its arguments come back as the answer's text (providers/forced_tool.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import orjson

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import UpstreamAuthError
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    EmbeddingRequest,
    Embeddings,
    StreamBatch,
    TokenCounts,
)
from xrouter_router.providers.forced_tool import StreamedAnswer, as_answer, forced_tool, with_tool
from xrouter_router.providers.gigachat.auth import TokenSource
from xrouter_router.providers.gigachat.wire import (
    api_error,
    chat_body,
    embeddings_body,
    parse_chunk,
    parse_completion,
    parse_embeddings,
)
from xrouter_router.providers.http import Upstream, incomplete_stream, json_object, read_events
from xrouter_router.providers.http1 import HttpClient, Response

_DONE = b"[DONE]"
# GigaChat has no "call some function": beside the client's functions the model chooses.
AUTO = b'"auto"'


class GigaChatProvider:
    """Speaks GigaChat's REST API; `owns_session` says close() must close the session too."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        tokens: TokenSource,
        session: HttpClient,
        owns_session: bool = False,
        headers: Mapping[str, str] | None = None,
        update_interval: float = 0.0,
    ) -> None:
        self._name = name
        base = base_url.rstrip("/")
        self._chat_url = base + "/chat/completions"
        self._embeddings_url = base + "/embeddings"
        self._tokens = tokens
        self._session = session
        self._owns_session = owns_session
        self._http = Upstream(name, session, {"Content-Type": "application/json", **(headers or {})},
                              status_error=api_error)
        self._update_interval = update_interval

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        await self._tokens.close()
        if self._owns_session:
            await self._session.close()

    def body(self, request: ChatRequest, deployment: Deployment, *, stream: bool) -> bytes:
        return chat_body(self._name, request, deployment.upstream_model, stream=stream,
                         update_interval=self._update_interval)

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        forced = forced_tool(request, any_tool=AUTO)
        sent = request if forced is None else with_tool(request, forced)
        body = self.body(sent, deployment, stream=False)
        async with self._open(self._chat_url, body, request.generation_id) as resp:
            data = json_object(self._name, orjson.loads(await resp.read()))
            completion = parse_completion(self._name, data)
        return completion if forced is None else as_answer(completion, forced)

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        forced = forced_tool(request, any_tool=AUTO)
        sent = request if forced is None else with_tool(request, forced)
        answer = None if forced is None else StreamedAnswer(forced)
        body = self.body(sent, deployment, stream=True)
        async with self._open(self._chat_url, body, request.generation_id) as resp:
            async for batch in self._read_stream(resp):
                yield batch if answer is None else answer.batch(batch)

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings:
        body = embeddings_body(request.inputs, deployment.upstream_model)
        async with self._open(self._embeddings_url, body, "") as resp:
            data = json_object(self._name, orjson.loads(await resp.read()))
            return parse_embeddings(self._name, data, len(request.inputs))

    @asynccontextmanager
    async def _open(self, url: str, body: bytes, request_id: str) -> AsyncIterator[Response]:
        """The 200 answer to POST `url`, read inside the boundary. A 401 means the cached token
        died early (revoked, clock skew): it is dropped and the request is sent once more with a
        fresh token."""
        token = await self._tokens.token()
        async with AsyncExitStack() as stack:
            try:
                resp = await stack.enter_async_context(self._post(url, body, token, request_id))
            except UpstreamAuthError as exc:
                if exc.status != 401:
                    raise
                self._tokens.invalidate(token)
                token = await self._tokens.token()
                resp = await stack.enter_async_context(self._post(url, body, token, request_id))
            yield resp

    def _post(self, url: str, body: bytes, token: str,
              request_id: str) -> AbstractAsyncContextManager[Response]:
        headers = {"Authorization": f"Bearer {token}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        return self._http.open(url, body, headers=headers)

    async def _read_stream(self, resp: Response) -> AsyncIterator[StreamBatch]:
        finished = False
        async for events in read_events(resp, self._name):
            batch = self._batch([e.data for e in events])
            finished = finished or any(d.finish_reason for d in batch.deltas)
            if batch.deltas or batch.usage or batch.done:
                yield batch
            if batch.done:
                return
        if not finished:
            raise incomplete_stream(self._name)

    def _batch(self, payloads: list[bytes]) -> StreamBatch:
        deltas: list[Delta] = []
        usage: TokenCounts | None = None
        for payload in payloads:
            if payload == _DONE:
                return StreamBatch(tuple(deltas), usage, done=True)
            chunk = json_object(self._name, orjson.loads(payload))
            got, chunk_usage = parse_chunk(self._name, chunk)
            deltas.extend(got)
            usage = chunk_usage or usage
        return StreamBatch(tuple(deltas), usage)
