"""The OpenAPI 3.1 description of every public gateway endpoint, built once at startup."""

from __future__ import annotations

from typing import Any

import msgspec

from xrouter_gateway.accounts_api import CreateKey, SetPlan, TopUp, UpdateKey
from xrouter_gateway.anthropic_format import MessagesRequest
from xrouter_gateway.completions_api import CompletionRequest
from xrouter_gateway.embeddings import EmbeddingRequest
from xrouter_gateway.openapi_chat import chat_components
from xrouter_gateway.openapi_formats import formats_components
from xrouter_gateway.openapi_listings import listings_components, listings_paths
from xrouter_gateway.openapi_schemas import (
    INT,
    STR,
    management_components,
    nullable,
    obj,
    ref,
)
from xrouter_gateway.openapi_sessions import session_components, session_paths
from xrouter_gateway.responses_request import ResponsesRequest
from xrouter_gateway.schemas import ChatCompletionRequest

_ERROR = obj({"error": obj({
    "message": STR, "type": STR, "code": {**INT, "description": "The HTTP status"},
    "param": nullable(STR), "metadata": {"type": "object"}})})


def _errors(*statuses: int, schema: str = "Error") -> dict[str, Any]:
    return {str(s): {"description": "Error", "content": {"application/json": {
        "schema": ref(schema)}}} for s in statuses}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def _answer(description: str, schema: str, event: str) -> dict[str, Any]:
    """A generation's 200: `schema` as JSON, or with stream=true SSE events, each `event`."""
    return {"description": description,
            "headers": {"X-Generation-Id": {"schema": STR}},
            "content": {"application/json": {"schema": ref(schema)},
                        "text/event-stream": {"schema": ref(event)}}}


def _op(summary: str, schema: str, *errors: int, body: str = "", management: bool = False,
        status: int = 200) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary + (" (management: master key or a mgmt key)" if management else ""),
        "security": [{"bearer": []}],
        "responses": {str(status): _json(summary, schema), **_errors(401, *errors)},
    }
    if body:
        op["requestBody"] = _body(body)
    return op


_STALE = {
    "X-XRouter-Stale": {"description": "Present only while the database is away: this is the "
                        "calling key's last good read, this many seconds old (to a tenth)",
                        "schema": {"type": "string", "pattern": "^[0-9]+\\.[0-9]$"}},
    "Age": {"description": "With X-XRouter-Stale: the same age in whole seconds",
            "schema": {"type": "integer", "minimum": 0}},
}


def _stale(op: dict[str, Any]) -> dict[str, Any]:
    """An account read that answers from the caller's last good read while the database is
    away (with the staleness headers), or 503 when that caller never read it."""
    ok = {**op["responses"]["200"], "headers": _STALE}
    return {**op, "responses": {**op["responses"], "200": ok, **_errors(503)}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def _request_components() -> dict[str, Any]:
    """Every request body's schema, from the msgspec type that decodes it, in one pass: two
    types of one name get module-qualified names rather than one replacing the other."""
    _, components = msgspec.json.schema_components(
        [ChatCompletionRequest, ResponsesRequest, CompletionRequest, MessagesRequest,
         EmbeddingRequest, CreateKey, UpdateKey, TopUp, SetPlan],
        ref_template="#/components/schemas/{name}")
    return components


def _components(*parts: dict[str, Any]) -> dict[str, Any]:
    """The parts merged; a name defined twice would silently lose one schema, so it raises."""
    out: dict[str, Any] = {}
    for part in parts:
        twice = out.keys() & part.keys()
        if twice:
            raise ValueError(f"schemas defined twice: {sorted(twice)}")
        out.update(part)
    return out


def _accounts_paths() -> dict[str, Any]:
    key_id, account_id = _path_param("key_id"), _path_param("account_id")
    # A management key may name the account; a key sees its own.
    of_account = [{"name": "account_id", "in": "query", "schema": STR}]
    return {
        "/v1/key": {"get": _stale(_op("The calling key: limit, usage, rate limit "
                                      "(OpenRouter shape)", "KeyResponse"))},
        "/v1/auth/key": {
            "get": _stale(_op("The calling key (the origin's shape)", "AuthKey")),
            "post": _op("Create a key; the plain key is shown once", "CreatedAuthKey", 400,
                        403, body="CreateKey", management=True, status=201)},
        "/v1/auth/key/{key_id}": {"delete": {**_op("Revoke a key", "Deleted", 403, 404,
                                                   management=True),
                                             "parameters": key_id}},
        "/v1/keys": {
            "get": {**_op("List keys", "KeyList", 403, management=True),
                    "parameters": of_account},
            "post": _op("Create a key; the plain key is shown once", "CreatedKey", 400, 403,
                        body="CreateKey", management=True, status=201)},
        "/v1/keys/{key_id}": {
            "get": {**_stale(_op("One key", "KeyResponse", 403, 404, management=True)),
                    "parameters": key_id},
            "patch": {**_op("Change a key (name, disabled, limit, expiry, limits, models)",
                            "KeyResponse", 400, 403, 404, body="UpdateKey", management=True),
                      "parameters": key_id},
            "delete": {**_op("Delete a key", "Deleted", 403, 404, management=True),
                       "parameters": key_id}},
        "/v1/credits": {
            "get": {**_stale(_op("Credits of the key's account: total_credits, total_usage "
                                 "(gross RUB; its net and VAT apart), balance", "Credits")),
                    "parameters": of_account},
            "post": _op("Top up an account (master key)", "Credits", 400, 403, body="TopUp",
                        management=True)},
        "/v1/generation": {"get": {**_op("A generation's stats, to the key that made it",
                                         "GenerationResponse", 400, 404),
                                   "parameters": [{"name": "id", "in": "query",
                                                   "required": True,
                                                   "schema": {"type": "string"}}]}},
        "/v1/usage": {"get": {**_usage_op(),
                              "parameters": [{"name": n, "in": "query",
                                              "schema": {"type": "string"}}
                                             for n in ("group_by", "since", "until",
                                                       "account_id", "format")]}},
        "/v1/statement": {"get": {**_statement_op(),
                                  "parameters": [{"name": n, "in": "query",
                                                  "required": n == "month",
                                                  "schema": {"type": "string"}}
                                                 for n in ("month", "format", "account_id")]}},
        "/v1/accounts/{account_id}/plan": {
            "get": {**_op("The account's plan: highest tier and limit ceilings of its keys",
                          "PlanResponse", 403, management=True), "parameters": account_id},
            "put": {**_op("Set the account's plan (master key)", "PlanResponse", 400, 403,
                          body="SetPlan", management=True), "parameters": account_id}},
    }


def _usage_op() -> dict[str, Any]:
    """JSON, or with `format=csv` the same columns as CSV (usage.csv)."""
    op = _op("Usage report grouped by day, key, model, provider; JSON or CSV", "UsageReport",
             400, 403, management=True)
    op["responses"]["200"]["content"]["text/csv"] = {"schema": {
        **STR, "description": "columns: the groups asked for (day, key, model, provider), "
                              "requests, prompt_tokens, completion_tokens, cached_tokens, "
                              "cache_write_tokens, reasoning_tokens, cost, cost_net, vat (RUB, "
                              "exact decimal text with at least two places)"}}
    return op


def _statement_op() -> dict[str, Any]:
    """JSON, or CSV with `format=csv` (a row per generation, then total rows)."""
    op = _op("An account's monthly statement (net, VAT, gross per generation and totals), "
             "JSON or CSV", "Statement", 400, 403)
    op["responses"]["200"]["content"]["text/csv"] = {"schema": {
        **STR, "description": "columns: date, generation_id, model, provider, prompt_tokens, "
                              "completion_tokens, vat_rate, net, vat, gross"}}
    return op

def _generation(summary: str, body: str, answer: str, schema: str, event: str,
                *errors: int, error: str = "Error") -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": [{"bearer": []}], "requestBody": _body(body),
        "responses": {"200": _answer(answer, schema, event), **_errors(*errors, schema=error)}}}


def _inference_paths() -> dict[str, Any]:
    """Chat, Anthropic messages, the Responses API, legacy completions and embeddings."""
    everything = (400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503)
    messages = _generation(
        "Anthropic Messages API (for Anthropic SDK clients; key in x-api-key or Authorization: "
        "Bearer); stream=true for Anthropic's SSE events", "MessagesRequest",
        "An Anthropic `message` object, or its SSE event stream (message_start ... "
        "message_stop); errors in Anthropic's shape", "AnthropicMessage", "AnthropicEvent",
        *everything, error="AnthropicError")
    messages["post"]["security"] = [{"anthropic": []}, {"bearer": []}]
    return {
        "/v1/chat/completions": _generation(
            "Create a chat completion (OpenAI-compatible; stream=true for SSE)",
            "ChatCompletionRequest", "A chat.completion object, or an SSE stream of "
            "chat.completion.chunk objects ending in data: [DONE]", "ChatCompletion",
            "ChatCompletionEvent", *everything, 431),
        "/v1/messages": messages,
        "/v1/responses": _generation(
            "The OpenAI Responses API, stateless (previous_response_id and store: true are a "
            "400); stream=true for its typed events", "ResponsesRequest",
            "A `response` object, or an SSE stream of response.* events ending in "
            "response.completed, response.incomplete or response.failed", "Response",
            "ResponseEvent", *everything),
        "/v1/completions": _generation(
            "Legacy completions (a prompt in, text choices out)", "CompletionRequest",
            "A text_completion object, or an SSE stream of them ending in data: [DONE]",
            "TextCompletion", "TextCompletionEvent", *everything),
        "/v1/embeddings": {"post": {
            "summary": "Create embeddings (OpenAI-compatible; encoding_format float or base64)",
            "security": [{"bearer": []}], "requestBody": _body("EmbeddingRequest"),
            "responses": {"200": {**_json("A list of embeddings", "EmbeddingList"),
                                  "headers": {"X-Generation-Id": {"schema": STR}}},
                          **_errors(400, 401, 402, 404, 408, 413, 429, 431, 502, 503)}}},
    }


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": STR}]


def _info_paths() -> dict[str, Any]:
    """Models, routing made visible, health and this document."""
    def get(summary: str, schema: str, *errors: int, **more: Any) -> dict[str, Any]:
        return {"get": {"summary": summary, **more,
                        "responses": {"200": _json(summary, schema), **_errors(*errors)}}}

    query = [{"name": n, "in": "query", "schema": STR}
             for n in ("provider", "supported_parameters", "jurisdiction")]
    health = get("Component health (503 with status unhealthy when no router answers)", "Health")
    health["get"]["responses"]["503"] = _json("unhealthy", "Health")
    return {
        "/v1/models": get("List models (OpenRouter shape, prices in RUB)", "ModelList", 400,
                          502, 503, parameters=query),
        "/v1/models/{model_id}": get(
            "One model by id or alias (OpenAI's models.retrieve; ids contain '/')", "Model",
            404, 502, 503, parameters=_path_param("model_id")),
        "/v1/route/explain": {"post": {
            "summary": "Dry-run routing for a chat request: every candidate, the filter that "
                       "removed it or its score, and the order the next request would try",
            "security": [{"bearer": []}],
            "requestBody": _body("ChatCompletionRequest"),
            "responses": {"200": _json("Candidates and try order", "RouteExplanation"),
                          **_errors(400, 401, 404, 503)}}},
        "/v1/parameters/{model}": get("Parameters a model supports", "ModelParameters", 404,
                                      parameters=_path_param("model")),
        "/v1/providers/status": get(
            "Live provider status from real traffic (operational, degraded, down)",
            "ProviderStatuses"),
        "/health/providers": get(
            "Provider health (up, degraded, down, unknown), latency, error rate",
            "ProviderHealth"),
        "/health": health,
        "/livez": get("Liveness", "Liveness"),
        "/readyz": get("Readiness: a router answers its health check", "Readiness", 503),
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": STR}}}}}},
        "/openapi.json": get("This document", "OpenAPIDocument"),
    }


def _console_paths() -> dict[str, Any]:
    """The web console (docs/console.md): its page and its assets, from the package."""
    def files(summary: str, *media: str, **more: Any) -> dict[str, Any]:
        return {"get": {"summary": summary, "security": [], **more, "responses": {
            "200": {"description": "The file (strict Content-Security-Policy)",
                    "content": {m: {"schema": STR} for m in media}}, **_errors(404)}}}
    page = files("The web console's page (English and Russian)", "text/html")
    return {"/console": page, "/console/": page,
            "/console/{name}": files("The console's scripts (ES modules) and style", "text/javascript",
                                     "text/css", parameters=_path_param("name"))}


def build_openapi() -> dict[str, Any]:
    components = _components(_request_components(), {"Error": _ERROR},
                             management_components(), chat_components(), formats_components(),
                             listings_components(), session_components())
    return {
        "openapi": "3.1.0",
        "info": {"title": "XRouter API", "version": "1",
                 "description": "OpenAI-compatible LLM router (OpenRouter contract). Every "
                                "response body is typed in components/schemas."},
        "paths": {**_inference_paths(), **_info_paths(),
                  **_accounts_paths(), **listings_paths(_op), **session_paths(),
                  **_console_paths()},
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "anthropic": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            # The console's session (docs/security.md); changes also need X-CSRF-Token.
            "session": {"type": "apiKey", "in": "cookie", "name": "xr_session"}}},
    }
