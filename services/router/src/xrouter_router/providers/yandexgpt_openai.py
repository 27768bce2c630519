"""YandexGPT through Yandex AI Studio's OpenAI-compatible endpoint ({base_url}/v1/chat/completions
and /v1/embeddings), chosen with `api = "openai"` in a yandexgpt provider's table: the OpenAI
adapter speaks the wire format; this adds what Yandex needs around it. The folder goes in the
`OpenAI-Project` header (Yandex also reads `x-folder-id`), the key in `Authorization: Api-Key`
(or `Bearer` for `auth = "iam"`), and the deployment's upstream model becomes the
`gpt://<folder>/<model>/<version>` URI (`emb://` for embeddings). A request whose
`provider.data_collection` is "deny" goes with `x-data-logging-enabled: false`.

The other options are the native adapter's (folder_id, auth); `reasoning_format` is "openai"
(Yandex takes `reasoning_effort`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    StreamBatch,
)
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.openai import OpenAIProvider
from xrouter_router.providers.yandexgpt import (
    AUTH_SCHEMES,
    DEFAULT_URL,
    NO_LOGGING,
    folder_and_auth,
    model_uri,
)


class YandexOpenAIProvider:
    """Two OpenAI adapters on one session, one of them with Yandex's request logging off, and
    the deployment's upstream model rewritten to Yandex's model URI."""

    def __init__(self, name: str, *, logged: OpenAIProvider, unlogged: OpenAIProvider,
                 folder_id: str) -> None:
        self._name = name
        self._logged = logged
        self._unlogged = unlogged
        self._folder = folder_id

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    def _adapter(self, request: ChatRequest) -> OpenAIProvider:
        return self._unlogged if request.provider.data_collection == "deny" else self._logged

    def _deployment(self, d: Deployment, scheme: str) -> Deployment:
        return Deployment(d.id, d.provider, model_uri(scheme, self._folder, d.upstream_model),
                          d.price, d.context_length, d.max_completion_tokens, d.capabilities,
                          d.weight, d.parameters, d.collects_data)

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        return await self._adapter(request).chat(request, self._deployment(deployment, "gpt"))

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        async for batch in self._adapter(request).stream(request,
                                                         self._deployment(deployment, "gpt")):
            yield batch

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings:
        return await self._logged.embed(request, self._deployment(deployment, "emb"))


def build(config: ProviderConfig, session: HttpClient) -> YandexOpenAIProvider:
    folder, auth = folder_and_auth(config)
    headers = {"OpenAI-Project": folder, **config.headers}
    if config.api_key:
        headers["Authorization"] = f"{AUTH_SCHEMES[auth]} {config.api_key}"
    base_url = config.url(DEFAULT_URL) + "/v1"

    def adapter(extra: dict[str, str]) -> OpenAIProvider:
        return OpenAIProvider(config.name, base_url=base_url, api_key="", session=session,
                              headers={**headers, **extra}, reasoning_format="openai")

    return YandexOpenAIProvider(config.name, logged=adapter({}), unlogged=adapter(NO_LOGGING),
                                folder_id=folder)
