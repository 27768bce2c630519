"""The OpenAPI 3.1 description of every public gateway endpoint, built once at startup."""

from __future__ import annotations

from typing import Any

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


def build_openapi() -> dict[str, Any]:
    schema = request_json_schema()
    components = dict(schema["components"])
    components["Error"] = _ERROR
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
                **_errors(400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "XRouter API", "version": "1",
                 "description": "OpenAI-compatible LLM router (OpenRouter contract)."},
        "paths": {
            "/v1/chat/completions": chat,
            "/v1/models": {"get": {"summary": "List models (OpenRouter shape, prices in RUB)",
                                   "parameters": [
                                       {"name": "provider", "in": "query", "schema": {"type": "string"}},
                                       {"name": "supported_parameters", "in": "query",
                                        "schema": {"type": "string"}}],
                                   "responses": {"200": _json("{data: [model]}"),
                                                 **_errors(502, 503)}}},
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
