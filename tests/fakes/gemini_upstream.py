"""A local stand-in for the Gemini API (generativelanguage v1beta), written from its REST
reference and the google-genai SDK: POST /v1beta/models/{model}:generateContent and
:streamGenerateContent?alt=sse (`data: ...\\r\\n\\r\\n` chunks, no end marker: the connection
closes after the chunk with finishReason), `x-goog-api-key` checked (a bad key is a 400
API_KEY_INVALID, as Gemini answers), Google's error bodies {"error": {"code", "message",
"status", "details"}}, and the request validated as Gemini does (field names, roles,
functionCall/functionResponse turns, the thought signature Gemini 3 requires).

The requested model picks the behaviour: gemini-fake-<scenario> for every scenario of
tests/fakes/harness.py, plus tools-2 (two parallel calls), max-tokens, safety, blocked (prompt
blocked, no candidates), thoughts (a thought part and thoughtsTokenCount) and no-finish (a
stream closing cleanly without finishReason). Any scenario answers with a thought part too when
`generationConfig.thinkingConfig.includeThoughts` is true (thinkingConfig is validated).
`responseJsonSchema` is checked; json and json-bad answer `responseMimeType: application/json`
with TOOL_ARGS, or harness.NON_CONFORMING, as JSON text.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.harness import NON_CONFORMING, FakeHarness
from tests.fakes.server import FakeUpstream, garbage, json_response
from xrouter_router.providers.config import ProviderConfig

API_KEY = "AIzaFakeGeminiUpstreamKey"
PREFIX = "gemini-fake-"
SIGNATURE = "CiQBcsjafFakeThoughtSignature"
TOOL_ARGS = {"city": "Moscow", "unit": "celsius"}
_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
           "safetySettings", "cachedContent"}
_CONFIG_FIELDS = {"maxOutputTokens", "temperature", "topP", "topK", "stopSequences",
                  "candidateCount", "presencePenalty", "frequencyPenalty", "seed",
                  "responseMimeType", "responseSchema", "responseJsonSchema", "thinkingConfig"}


class Invalid(Exception):
    """A request Gemini refuses with 400 INVALID_ARGUMENT."""


def _error(status: int, code: str, message: str, details: list[Any] | None = None) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": code}
    if details:
        err["details"] = details
    # Google's front end pretty-prints its error bodies.
    return web.Response(status=status, text=json.dumps({"error": err}, indent=2) + "\n",
                        content_type="application/json", charset="UTF-8")


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


def _calls(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in content["parts"] if "functionCall" in p]


def _responses(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in content["parts"] if "functionResponse" in p]


def _check_turn(i: int, content: dict[str, Any], previous: dict[str, Any] | None) -> None:
    if content.get("role") not in ("user", "model"):
        raise Invalid("Please use a valid role: user, model.")
    if not content.get("parts"):
        raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not "
                      "be empty.\n")
    calls = _calls(previous) if previous and previous["role"] == "model" else []
    responses = _responses(content)
    if (calls or responses) and not (calls and responses):
        raise Invalid("Please ensure that function response turn comes immediately after a "
                      "function call turn.")
    if len(calls) != len(responses):
        raise Invalid("Please ensure that the number of function response parts is equal to the "
                      "number of function call parts of the function call turn.")
    for j, part in enumerate(responses):
        fr = part["functionResponse"]
        if not fr.get("name"):
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts[{j}].function_response"
                          ".name: Name cannot be empty.\n")
        if not isinstance(fr.get("response"), dict):
            raise Invalid(f"Invalid value at 'contents[{i}].parts[{j}].function_response.response'"
                          " (type.googleapis.com/google.protobuf.Struct)")
    own = _calls(content)
    if own and "thoughtSignature" not in own[0]:
        raise Invalid("Function call is missing a thought_signature in functionCall parts. This "
                      "is required for tools to work correctly, and missing thought_signature may "
                      "lead to degraded model performance. Additional data, function call "
                      f"`default_api:{own[0]['functionCall'].get('name')}` , position {i + 1}. "
                      "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                      "for more details.")


def _check_thinking(config: Any) -> None:
    if config is None:
        return
    unknown = [f for f in config if f not in ("thinkingBudget", "includeThoughts", "thinkingLevel")]
    if unknown:
        raise Invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                      "'generation_config.thinking_config': Cannot find field.")
    budget = config.get("thinkingBudget", 0)
    if not isinstance(budget, int) or not -1 <= budget <= 32768:
        raise Invalid("The thinking budget is out of range; it must be between -1 and 32768.")


def _check_format(config: dict[str, Any]) -> None:
    if "responseSchema" in config and "responseJsonSchema" in config:
        raise Invalid("responseSchema and responseJsonSchema cannot both be set")
    if "responseJsonSchema" in config and (
            not isinstance(config["responseJsonSchema"], dict)
            or config.get("responseMimeType") != "application/json"):
        raise Invalid("responseJsonSchema needs responseMimeType application/json")


def validate(body: dict[str, Any]) -> None:
    unknown = [*(f for f in body if f not in _FIELDS),
               *(f for f in body.get("generationConfig", {}) if f not in _CONFIG_FIELDS)]
    if unknown:
        raise Invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find '
                      "field.")
    _check_thinking(body.get("generationConfig", {}).get("thinkingConfig"))
    _check_format(body.get("generationConfig", {}))
    contents = body.get("contents")
    if not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified\n")
    previous: dict[str, Any] | None = None
    for i, content in enumerate(contents):
        _check_turn(i, content, previous)
        previous = content
    if previous is not None and previous["role"] == "model" and _calls(previous):
        raise Invalid("Please ensure that function call turn comes immediately after a user turn "
                      "or after a function response turn.")


def _last_user_text(body: dict[str, Any]) -> str:
    for content in reversed(body["contents"]):
        if content["role"] == "user":
            return "".join(p.get("text", "") for p in content["parts"])
    return ""


class FakeGemini(FakeUpstream):
    name = "fake-gemini"

    def __init__(self, *, slow_seconds: float = 3.0, drip_interval: float = 0.05) -> None:
        super().__init__(slow_seconds=slow_seconds, drip_interval=drip_interval)
        self.paths: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self._generate)

    # ---- the endpoint ----------------------------------------------------------------------
    async def _generate(self, request: web.Request) -> web.StreamResponse:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.paths.append(request.path_qs)
        model, _, method = request.match_info["target"].rpartition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _error(404, "NOT_FOUND", f"Method not found: {method}")
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers "
                          "(callers without established identity). Please use API Key or other "
                          "form of API consumer identity to call this API.")
        if key != API_KEY:
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                          [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"}}])
        try:
            body = orjson.loads(await request.read())
            self.requests.append(body)
            validate(body)
        except (orjson.JSONDecodeError, Invalid) as exc:
            return _error(400, "INVALID_ARGUMENT", str(exc))
        scenario = model.removeprefix(PREFIX)
        failure = await self._failure(scenario)
        if failure is not None:
            return failure
        if method == "streamGenerateContent":
            if request.query.get("alt") == "sse":
                return await self._stream(request, body, model, scenario)
            # Without alt=sse Gemini streams one JSON array of the same chunks.
            return json_response(200, self._chunks(body, model, scenario), charset="UTF-8")
        return json_response(200, self._whole(body, model, scenario), charset="UTF-8")

    async def _failure(self, scenario: str) -> web.Response | None:
        if scenario == "500":
            return _error(500, "INTERNAL", "An internal error has occurred. Please retry or report "
                          "in https://developers.generativeai.google/guide/troubleshooting")
        if scenario == "429":
            return _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please "
                          "check your plan and billing details.", [
                              {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                               "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                               "generate_content_free_tier_requests",
                                               "quotaId": "GenerateRequestsPerMinutePerProject"
                                               "PerModel-FreeTier"}]},
                              {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                                  {"description": "Learn more about Gemini API quotas",
                                   "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                              {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                               "retryDelay": "7s"}])
        if scenario == "garbage":
            return garbage()
        if scenario == "slow":
            await asyncio.sleep(self.slow_seconds)
        return None

    # ---- answers ---------------------------------------------------------------------------
    def _parts(self, body: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        if scenario in ("tools", "tools-2"):
            declarations = body["tools"][0]["functionDeclarations"]
            calls: list[dict[str, Any]] = [{"functionCall": {"name": d["name"], "args": TOOL_ARGS}}
                     for d in declarations[:2 if scenario == "tools-2" else 1]]
            calls[0]["thoughtSignature"] = SIGNATURE
            return calls
        parts: list[dict[str, Any]] = []
        config = body.get("generationConfig", {})
        thinking = config.get("thinkingConfig") or {}
        if scenario == "thoughts" or thinking.get("includeThoughts"):
            parts.append({"text": "The user greets me.", "thought": True})
        if scenario in ("json", "json-bad") and config.get("responseMimeType") == "application/json":
            answer = TOOL_ARGS if scenario == "json" else NON_CONFORMING
            parts.append({"text": orjson.dumps(answer).decode()})
        elif scenario != "safety":
            parts.append({"text": "echo: " + _last_user_text(body)})
        return parts

    def _usage(self, body: dict[str, Any], output: int, scenario: str) -> dict[str, Any]:
        prompt = len(orjson.dumps(body["contents"])) // 4 + 3
        usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": output,
                                 "totalTokenCount": prompt + output,
                                 "promptTokensDetails": [{"modality": "TEXT",
                                                          "tokenCount": prompt}]}
        if scenario == "thoughts":
            usage["thoughtsTokenCount"] = 21
            usage["totalTokenCount"] += 21
        return usage

    def _finish(self, scenario: str) -> str:
        return {"max-tokens": "MAX_TOKENS", "safety": "SAFETY"}.get(scenario, "STOP")

    def _chunk(self, model: str, parts: list[dict[str, Any]], usage: dict[str, Any] | None,
               finish: str = "") -> dict[str, Any]:
        candidate: dict[str, Any] = {}
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            chunk["usageMetadata"] = usage
        return {**chunk, "modelVersion": model, "responseId": "fakeGeminiResponseId"}

    def _whole(self, body: dict[str, Any], model: str, scenario: str) -> dict[str, Any]:
        usage = self._usage(body, 9, scenario)
        if scenario == "blocked":
            return {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage,
                    "modelVersion": model, "responseId": "fakeGeminiResponseId"}
        return self._chunk(model, self._parts(body, scenario), usage, self._finish(scenario))

    async def _stream(self, request: web.Request, body: dict[str, Any], model: str,
                      scenario: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for n, chunk in enumerate(self._chunks(body, model, scenario)):
                if scenario == "drip":
                    await asyncio.sleep(self.drip_interval)
                await resp.write(_sse(chunk))
                if scenario == "cut" and n == 1:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects.append(scenario)
            raise
        return resp

    def _chunks(self, body: dict[str, Any], model: str, scenario: str) -> list[dict[str, Any]]:
        if scenario == "blocked":
            return [self._whole(body, model, scenario)]
        parts = self._parts(body, scenario)
        if scenario == "drip":
            parts = [{"text": f" t{i}"} for i in range(10_000)]
        elif parts and "text" in parts[-1]:
            words = parts.pop()["text"].split(" ")
            parts += [{"text": w if i == 0 else " " + w} for i, w in enumerate(words)]
        chunks = []
        for n, part in enumerate(parts, start=1):
            last = n == len(parts)
            usage = None if scenario == "no-usage" else self._usage(body, n, scenario)
            finish = self._finish(scenario) if last and scenario != "no-finish" else ""
            chunks.append(self._chunk(model, [part], usage, finish))
        if not parts:  # safety: a finish without content
            chunks.append(self._chunk(model, [], self._usage(body, 0, scenario),
                                      self._finish(scenario)))
        return chunks


class _Harness(FakeHarness[FakeGemini]):
    type = "gemini"
    retry_after = True  # Gemini's 429 says when in a RetryInfo detail, which the adapter reads

    def config(self, *, wrong_key: bool = False) -> ProviderConfig:
        return ProviderConfig("fake-gemini", "gemini", self.fake.base_url,
                              "AIzaWrongKey" if wrong_key else API_KEY)

    def upstream_model(self, scenario: str) -> str:
        return PREFIX + scenario


def harness() -> _Harness:
    return _Harness(FakeGemini())
