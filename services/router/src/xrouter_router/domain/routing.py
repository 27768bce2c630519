"""Which deployments a request may go to, and in what order: the attempt plan.

Pure functions of the catalog and the request. The plan lists the request's model's deployments,
then each fallback model's (`models`), each filtered by the request's needs (tools, json mode,
images) and its `provider` preferences. The richer price/latency balancing builds on this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from xrouter_router.domain.catalog import Catalog, Deployment, Model
from xrouter_router.domain.errors import NoProvider
from xrouter_router.domain.types import ChatRequest, ProviderPreferences


@dataclass(frozen=True, slots=True)
class Candidate:
    model: Model
    deployment: Deployment


def required_capabilities(request: ChatRequest) -> frozenset[str]:
    """Capabilities a deployment must have to serve the request at all."""
    needs: set[str] = set()
    if request.tools:
        needs.add("tools")
    if request.response_format_json and _format_type(request.response_format_json) != "text":
        needs.add("json_mode")
    if any(part.type == "image_url" for m in request.messages for part in m.parts):
        needs.add("vision")
    return frozenset(needs)


def _format_type(response_format_json: bytes) -> str:
    try:
        value = json.loads(response_format_json)
    except ValueError:
        return ""
    return str(value.get("type", "")) if isinstance(value, dict) else ""


def _rejection(deployment: Deployment, needs: frozenset[str], prefs: ProviderPreferences) -> str:
    """Why a deployment may not serve this request; empty when it may."""
    if prefs.only and deployment.provider not in prefs.only:
        return "not in provider.only"
    if deployment.provider in prefs.ignore:
        return "in provider.ignore"
    missing = needs - deployment.capabilities
    if missing:
        return "does not support " + ", ".join(sorted(missing))
    return ""


def _ordered(deployments: Sequence[Deployment], prefs: ProviderPreferences) -> list[Deployment]:
    if not prefs.order:
        return list(deployments)
    rank = {name: i for i, name in enumerate(prefs.order)}
    first = sorted((d for d in deployments if d.provider in rank), key=lambda d: rank[d.provider])
    if not prefs.allow_fallbacks:
        return first
    return first + [d for d in deployments if d.provider not in rank]


def plan(catalog: Catalog, request: ChatRequest) -> list[Candidate]:
    """The ordered candidates to try; raises ModelNotFound or NoProvider."""
    names = [request.model, *(m for m in request.fallback_models if m != request.model)]
    models = [catalog.resolve(name, param="model" if i == 0 else "models")
              for i, name in enumerate(names)]
    needs = required_capabilities(request)
    prefs = request.provider
    candidates: list[Candidate] = []
    reasons: dict[str, str] = {}
    for model in models:
        ordered = _ordered(model.deployments, prefs)
        for deployment in model.deployments:
            if deployment not in ordered:
                reasons[f"{model.id}@{deployment.provider}"] = "not in provider.order"
        for deployment in ordered:
            why = _rejection(deployment, needs, prefs)
            if why:
                reasons[f"{model.id}@{deployment.provider}"] = why
            else:
                candidates.append(Candidate(model, deployment))
    if not candidates:
        raise NoProvider(
            "No provider can serve this request with its requirements",
            metadata={"reasons": reasons},
        )
    if not prefs.allow_fallbacks and not prefs.order:
        return candidates[:1]
    return candidates
