"""The OpenAPI 3.1 description of every public gateway endpoint, built once at startup."""

from __future__ import annotations

from typing import Any

import msgspec

from xrouter_gateway.completions_api import CompletionRequest
from xrouter_gateway.responses_request import ResponsesRequest
from xrouter_gateway.schemas import request_json_schema

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "code": {"type": "integer", "description": "The HTTP status"},
            "param": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
        },
    }},
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for s in statuses}


def _json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


def _op(summary: str, *errors: int, body: bool = False, management: bool = False,
        status: int = 200) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary + (" (management: master key or a mgmt key)" if management else ""),
        "security": [{"bearer": []}],
        "responses": {str(status): _json("{data: ...}"), **_errors(401, *errors)},
    }
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object"}}}}
    return op


def _accounts_paths() -> dict[str, Any]:
    key_id = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    account_id = [{"name": "account_id", "in": "path", "required": True,
                   "schema": {"type": "string"}}]
    return {
        "/v1/key": {"get": _op("The calling key: limit, usage, rate limit (OpenRouter shape)")},
        "/v1/auth/key": {
            "get": _op("The calling key (the origin's shape)"),
            "post": _op("Create a key; the plain key is shown once", 400, 403, body=True,
                        management=True, status=201)},
        "/v1/auth/key/{key_id}": {"delete": {**_op("Revoke a key", 403, 404, management=True),
                                             "parameters": key_id}},
        "/v1/keys": {
            "get": _op("List keys", 403, management=True),
            "post": _op("Create a key; the plain key is shown once", 400, 403, body=True,
                        management=True, status=201)},
        "/v1/keys/{key_id}": {
            "get": {**_op("One key", 403, 404, management=True), "parameters": key_id},
            "patch": {**_op("Change a key (name, disabled, limit, expiry, limits, models)", 400,
                            403, 404, body=True, management=True), "parameters": key_id},
            "delete": {**_op("Delete a key", 403, 404, management=True), "parameters": key_id}},
        "/v1/credits": {
            "get": _op("Credits of the key's account: total_credits, total_usage (gross RUB; "
                       "its net and VAT apart), balance"),
            "post": _op("Top up an account (master key)", 400, 403, body=True,
                        management=True)},
        "/v1/generation": {"get": {**_op("A generation's stats, to the key that made it", 400,
                                         404),
                                   "parameters": [{"name": "id", "in": "query",
                                                   "required": True,
                                                   "schema": {"type": "string"}}]}},
        "/v1/usage": {"get": {**_op("Usage report grouped by day, key, model, provider", 400,
                                    403, management=True),
                              "parameters": [{"name": n, "in": "query",
                                              "schema": {"type": "string"}}
                                             for n in ("group_by", "since", "until",
                                                       "account_id")]}},
        "/v1/statement": {"get": {**_op("An account's monthly statement (net, VAT, gross per "
                                        "generation and totals), JSON or CSV", 400, 403),
                                  "parameters": [{"name": n, "in": "query",
                                                  "required": n == "month",
                                                  "schema": {"type": "string"}}
                                                 for n in ("month", "format", "account_id")]}},
        "/v1/accounts/{account_id}/plan": {
            "get": {**_op("The account's plan: highest tier and limit ceilings of its keys", 403,
                          management=True), "parameters": account_id},
            "put": {**_op("Set the account's plan (master key)", 400, 403, body=True,
                          management=True), "parameters": account_id}},
    }


def _inbound_paths(components: dict[str, Any]) -> dict[str, Any]:
    """The Responses API, legacy completions and models.retrieve; their request schemas join
    `components`."""
    (responses, completions), more = msgspec.json.schema_components(
        [ResponsesRequest, CompletionRequest], ref_template="#/components/schemas/{name}")
    components.update(more)
    everything = (400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503)

    def post(summary: str, body: dict[str, Any], answer: str) -> dict[str, Any]:
        return {"post": {
            "summary": summary, "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": {"description": answer,
                                  "headers": {"X-Generation-Id": {"schema": {"type": "string"}}},
                                  "content": {"application/json": {"schema": {"type": "object"}},
                                              "text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors(*everything)}}}

    return {
        "/v1/responses": post(
            "The OpenAI Responses API, stateless (previous_response_id and store: true are a "
            "400); stream=true for its typed events", responses,
            "A `response` object, or an SSE stream of response.* events ending in "
            "response.completed, response.incomplete or response.failed"),
        "/v1/completions": post(
            "Legacy completions (a prompt in, text choices out)", completions,
            "A text_completion object, or an SSE stream of them ending in data: [DONE]"),
        "/v1/models/{model_id}": {"get": {
            "summary": "One model by id or alias (OpenAI's models.retrieve; ids contain '/')",
            "parameters": [{"name": "model_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": _json("a model (OpenRouter shape, object: model)"),
                          **_errors(404, 502, 503)}}},
    }


def build_openapi() -> dict[str, Any]:
    schema = request_json_schema()
    components = dict(schema["components"])
    components["Error"] = _ERROR
    inbound = _inbound_paths(components)
    chat = {
        "post": {
            "summary": "Create a chat completion (OpenAI-compatible; stream=true for SSE)",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": schema["request"]}}},
            "responses": {
                "200": {"description": "A chat.completion object, or an SSE stream of "
                                       "chat.completion.chunk objects ending in data: [DONE]",
                        "headers": {"X-Generation-Id": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {"type": "object"}},
                                    "text/event-stream": {"schema": {"type": "string"}}}},
                **_errors(400, 401, 402, 403, 404, 408, 413, 429, 431, 500, 502, 503),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "XRouter API", "version": "1",
                 "description": "OpenAI-compatible LLM router (OpenRouter contract)."},
        "paths": {
            "/v1/chat/completions": chat,
            "/v1/messages": {"post": {
                "summary": "Anthropic Messages API (for Anthropic SDK clients; key in x-api-key "
                           "or Authorization: Bearer); stream=true for Anthropic's SSE events",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object", "required": ["model", "messages", "max_tokens"]}}}},
                "responses": {"200": {"description": "An Anthropic `message` object, or its SSE "
                                                     "event stream (message_start ... message_stop)",
                                      "content": {"application/json": {"schema": {"type": "object"}},
                                                  "text/event-stream": {"schema": {"type": "string"}}}},
                              **{str(s): {"description": "Anthropic error shape "
                                                         "{type: error, error: {type, message}}"}
                                 for s in (400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503)}},
            }},
            "/v1/embeddings": {"post": {
                "summary": "Create embeddings (OpenAI-compatible; encoding_format float or base64)",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["model", "input"],
                    "properties": {"model": {"type": "string"},
                                   "input": {"oneOf": [{"type": "string"},
                                                       {"type": "array", "items": {"type": "string"}}]},
                                   "encoding_format": {"enum": ["float", "base64"]},
                                   "dimensions": {"type": "integer"}, "user": {"type": "string"}}}}}},
                "responses": {"200": _json("{object: list, data: [embedding], model, usage}"),
                              **_errors(400, 401, 402, 404, 408, 413, 429, 431, 502, 503)}}},
            "/v1/route/explain": {"post": {
                "summary": "Dry-run routing for a chat request: every candidate, the filter that "
                           "removed it or its score, and the order the next request would try",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
                "responses": {"200": _json("{data: {strategy, order, candidates}}"),
                              **_errors(400, 401, 404, 503)}}},
            "/v1/parameters/{model}": {"get": {
                "summary": "Parameters a model supports",
                "parameters": [{"name": "model", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json("{data: {model, supported_parameters}}"),
                              **_errors(404)}}},
            "/v1/providers/status": {"get": {
                "summary": "Live provider status from real traffic (operational, degraded, down)",
                "responses": {"200": _json("{data: {provider: {status, latency, success_rate, "
                                           "last_updated}}}")}}},
            "/health/providers": {"get": {
                "summary": "Provider health (up, degraded, down, unknown), latency, error rate",
                "responses": {"200": _json("{provider: {status, latency, error_rate, last_check}}")}}},
            "/v1/models": {"get": {"summary": "List models (OpenRouter shape, prices in RUB)",
                                   "parameters": [
                                       {"name": "provider", "in": "query", "schema": {"type": "string"}},
                                       {"name": "supported_parameters", "in": "query",
                                        "schema": {"type": "string"}}],
                                   "responses": {"200": _json("{data: [model]}"),
                                                 **_errors(502, 503)}}},
            **_accounts_paths(),
            **inbound,
            "/health": {"get": {"summary": "Component health",
                                "responses": {"200": _json("healthy or degraded"),
                                              "503": _json("unhealthy")}}},
            "/livez": {"get": {"summary": "Liveness", "responses": {"200": _json("alive")}}},
            "/readyz": {"get": {"summary": "Readiness: a router answers its health check",
                                "responses": {"200": _json("ready"), **_errors(503)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition format"}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _json("OpenAPI 3.1")}}},
        },
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
