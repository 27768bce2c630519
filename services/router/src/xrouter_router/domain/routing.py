"""Which deployments a request may go to, and in what order: the attempt plan, and its
explanation (which filter removed each deployment, each one's score, the order to be tried).

Pure: the catalog, the request, a statistics snapshot and the clock go in; a Plan comes out.
Per model, in the order of `model` then `models`:
- filters: the key's residency policy (domain/residency.py: "ru" keeps providers in Russia
  only, and a plan it empties is a 403, ResidencyForbidden), a price in a currency with no
  exchange rate (domain/fx.py: never served unpriced), capabilities the request needs
  (tools, json mode, images), `provider.only/ignore`, `data_collection: deny`, `max_price`,
  `require_parameters`;
- order: `provider.order` first (then the rest, unless `allow_fallbacks` is false); else
  `provider.sort` (price, latency or throughput, healthy deployments first); else OpenRouter's
  default: among healthy deployments (no failure in the last `recent_window` seconds, breaker
  closed or half-open), one chosen by smooth weighted round robin with weights inverse to the
  square of the price (times the deployment's weight), then the other healthy ones by weight,
  then those that failed recently, then those whose breaker is open; `allow_fallbacks: false`
  keeps the cheapest healthy deployment only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

from xrouter_router.domain import fx
from xrouter_router.domain import residency as residency_policy
from xrouter_router.domain.catalog import Catalog, Deployment, Model
from xrouter_router.domain.errors import NoProvider, ResidencyForbidden
from xrouter_router.domain.stats import BreakerPolicy, DeploymentStats
from xrouter_router.domain.types import ChatRequest, ProviderPreferences

# Parameters every deployment is assumed to understand unless its catalog entry says otherwise.
BASE_PARAMETERS = frozenset({"max_tokens", "temperature", "top_p", "stop", "seed"})


class Candidate(NamedTuple):
    """A deployment of a model, in an attempt plan (a tuple: built per request, cheaply)."""

    model: Model
    deployment: Deployment


@dataclass(frozen=True, slots=True)
class Scored:
    """One deployment as the planner saw it."""

    model: str
    deployment: Deployment
    rejected_by: str = ""
    score: float = 0.0
    health: str = "healthy"
    latency_ms: float | None = None
    throughput: float | None = None
    position: int = -1  # 0-based place in the try order, -1 when not tried


@dataclass(frozen=True, slots=True)
class Plan:
    candidates: tuple[Candidate, ...]
    scored: tuple[Scored, ...]
    strategy: str
    # The digest of the prompt prefix a provider-side cache can hold (domain/sticky.py), when the
    # route may follow it; computed once a request.
    affinity: bytes | None = None


class Balancer:
    """Smooth weighted round robin per model (nginx's algorithm): deterministic, and over any
    window it spreads choices in proportion to the weights. `commit=False` only peeks."""

    def __init__(self) -> None:
        self._current: dict[str, dict[str, float]] = {}

    def choose(self, key: str, weights: Mapping[str, float], *, commit: bool) -> str:
        current = self._current.get(key, {})
        tentative = {d: current.get(d, 0.0) + w for d, w in weights.items()}
        best = max(weights, key=lambda d: tentative[d])
        if commit:
            tentative[best] -= sum(weights.values())
            self._current[key] = tentative
        return best


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


def requested_parameters(request: ChatRequest) -> frozenset[str]:
    """The generation parameters the request sets (for `require_parameters`)."""
    s = request.sampling
    names = {name for name in ("max_tokens", "temperature", "top_p", "top_k", "frequency_penalty",
                               "presence_penalty", "repetition_penalty", "seed")
             if getattr(s, name) is not None}
    if s.stop:
        names.add("stop")
    if request.tools:
        names.add("tools")
    if request.tool_choice_json:
        names.add("tool_choice")
    if request.response_format_json and _format_type(request.response_format_json) != "text":
        names.add("response_format")
    return frozenset(names)


def supported_parameters(deployment: Deployment) -> frozenset[str]:
    params = set(deployment.parameters or BASE_PARAMETERS)
    if "tools" in deployment.capabilities:
        params |= {"tools", "tool_choice"}
    if "json_mode" in deployment.capabilities:
        params.add("response_format")
    return frozenset(params)


def _format_type(response_format_json: bytes) -> str:
    try:
        value = json.loads(response_format_json)
    except ValueError:
        return ""
    return str(value.get("type", "")) if isinstance(value, dict) else ""


def _rejection(d: Deployment, needs: frozenset[str], params: frozenset[str],
               prefs: ProviderPreferences, residency: str) -> str:
    """Why a deployment may not serve this request; empty when it may."""
    excluded = residency_policy.excludes(residency, d.jurisdiction) or fx.missing_rate(d)
    if excluded:
        return excluded
    if prefs.only and d.provider not in prefs.only:
        return "not in provider.only"
    if d.provider in prefs.ignore:
        return "in provider.ignore"
    if prefs.order and not prefs.allow_fallbacks and d.provider not in prefs.order:
        return "not in provider.order (allow_fallbacks is false)"
    if prefs.data_collection == "deny" and d.collects_data:
        return "provider may collect data (data_collection is deny)"
    if prefs.max_price_prompt is not None and d.price.prompt > prefs.max_price_prompt:
        return "prompt price above provider.max_price"
    if prefs.max_price_completion is not None and d.price.completion > prefs.max_price_completion:
        return "completion price above provider.max_price"
    missing = needs - d.capabilities
    if missing:
        return "does not support " + ", ".join(sorted(missing))
    if prefs.require_parameters:
        unsupported = params - supported_parameters(d)
        if unsupported:
            return "does not support " + ", ".join(sorted(unsupported))
    return ""


balance_weight = attrgetter("balance_weight")


def _order(model: Model, eligible: list[Deployment], *, stats: Mapping[str, DeploymentStats],
           health: Mapping[str, str], prefs: ProviderPreferences, balancer: Balancer,
           commit: bool) -> tuple[list[Deployment], str]:
    healthy = [d for d in eligible if health[d.id] in ("healthy", "half_open")]
    failing = sorted((d for d in eligible if health[d.id] == "recently_failed"),
                     key=balance_weight, reverse=True)
    broken = sorted((d for d in eligible if health[d.id] == "open"), key=balance_weight,
                    reverse=True)
    sick = failing + broken
    by_weight = sorted(healthy, key=balance_weight, reverse=True)
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}
        listed = sorted((d for d in eligible if d.provider in rank), key=lambda d: rank[d.provider])
        return listed + [d for d in by_weight + sick if d not in listed], "order"
    if prefs.sort:
        key = {
            "price": lambda d: d.unit_price,
            "latency": lambda d: _stat(stats, d, "latency_ms", math.inf),
            "throughput": lambda d: -_stat(stats, d, "throughput", 0.0),
        }[prefs.sort]
        ordered = sorted(healthy, key=key) + sorted(failing, key=key) + sorted(broken, key=key)
        return (ordered if prefs.allow_fallbacks else ordered[:1]), prefs.sort
    if not prefs.allow_fallbacks:
        cheapest = sorted(healthy or sick, key=lambda d: d.unit_price)
        return cheapest[:1], "cheapest"
    if not healthy:
        return sick, "balanced"
    chosen_id = balancer.choose(model.id, {d.id: balance_weight(d) for d in healthy}, commit=commit)
    chosen = next(d for d in healthy if d.id == chosen_id)
    return [chosen, *(d for d in by_weight if d is not chosen), *sick], "balanced"


def _stat(stats: Mapping[str, DeploymentStats], d: Deployment, field: str, default: float) -> float:
    value = getattr(stats.get(d.id, DeploymentStats()), field)
    return default if value is None else float(value)


def plan(
    catalog: Catalog,
    request: ChatRequest,
    stats: Mapping[str, DeploymentStats] | None = None,
    *,
    now: float = 0.0,
    policy: BreakerPolicy | None = None,
    balancer: Balancer | None = None,
    commit: bool = True,
    explain: bool = False,
    residency: str = "",
) -> Plan:
    """The ordered candidates to try under the key's `residency` policy; raises ModelNotFound,
    ResidencyForbidden when the policy excluded a deployment and nothing is left, or NoProvider
    when nothing else may serve the request. With explain=True nothing is raised for an empty
    plan and `scored` describes every deployment (it is left empty otherwise: the hot path does
    not pay for it)."""
    stats = stats or {}
    policy = policy or BreakerPolicy()
    balancer = balancer or Balancer()
    names = [request.model, *(m for m in request.fallback_models if m != request.model)]
    models = [catalog.resolve(name, param="model" if i == 0 else "models")
              for i, name in enumerate(names)]
    needs = required_capabilities(request)
    params = requested_parameters(request)
    prefs = request.provider
    candidates: list[Candidate] = []
    scored: list[Scored] = []
    strategy = "balanced"
    reasons: dict[str, str] = {}
    filtering = bool(residency == residency_policy.RU or needs or prefs.only or prefs.ignore
                     or prefs.require_parameters
                     or (prefs.order and not prefs.allow_fallbacks)
                     or prefs.data_collection == "deny" or prefs.max_price_prompt is not None
                     or prefs.max_price_completion is not None)
    for model in models:
        health = {d.id: stats[d.id].health(now, policy) if d.id in stats else "healthy"
                  for d in model.deployments}
        rejected: dict[str, str] = {}
        # A deployment without a rate for its currency is never called unpriced (domain/fx.py).
        sifting = filtering or any(d.unpriced for d in model.deployments)
        eligible: list[Deployment] = [] if sifting else list(model.deployments)
        for d in model.deployments if sifting else ():
            why = _rejection(d, needs, params, prefs, residency)
            if why:
                rejected[d.id] = why
                reasons[f"{model.id}@{d.provider}"] = why
            else:
                eligible.append(d)
        # Only the requested model's rotation moves: fallback models are rarely used, and moving
        # theirs on every plan would starve their deployments when they are asked for directly.
        ordered, strategy = _order(model, eligible, stats=stats, health=health, prefs=prefs,
                                   balancer=balancer, commit=commit and model is models[0])
        if explain:
            positions = {d.id: len(candidates) + i for i, d in enumerate(ordered)}
            scored.extend(_scored(model, d, rejected.get(d.id, "") or (
                "" if d.id in positions else "not a fallback"), stats=stats, health=health[d.id],
                position=positions.get(d.id, -1)) for d in model.deployments)
        candidates.extend(Candidate(model, d) for d in ordered)
    if not candidates and not explain:
        if residency == residency_policy.RU and any(d.jurisdiction != residency_policy.RU
                                                    for m in models for d in m.deployments):
            raise ResidencyForbidden(
                residency_policy.FORBIDDEN, metadata={"reasons": reasons})
        raise NoProvider("No provider can serve this request with its requirements",
                         metadata={"reasons": reasons})
    return Plan(tuple(candidates), tuple(scored), strategy)


def _scored(model: Model, d: Deployment, rejected_by: str, *,
            stats: Mapping[str, DeploymentStats], health: str, position: int) -> Scored:
    s = stats.get(d.id, DeploymentStats())
    return Scored(model.id, d, rejected_by, 0.0 if rejected_by else balance_weight(d), health,
                  s.latency_ms, s.throughput, position)


def embedding_plan(catalog: Catalog, model_name: str, stats: Mapping[str, DeploymentStats],
                   *, now: float, policy: BreakerPolicy, residency: str = "") -> list[Candidate]:
    """Deployments of the model that offer embeddings and that the key's `residency` policy
    admits: healthy ones first, in catalog order."""
    model = catalog.resolve(model_name)
    able = [d for d in model.deployments if "embeddings" in d.capabilities]
    resident = [d for d in able if not residency_policy.excludes(residency, d.jurisdiction)]
    if able and not resident:
        raise ResidencyForbidden(
            residency_policy.FORBIDDEN, metadata={"reasons": {
                f"{model.id}@{d.provider}": residency_policy.excludes(residency, d.jurisdiction)
                for d in able}})
    priced = [d for d in resident if not d.unpriced]
    if resident and not priced:
        raise NoProvider(f"Model {model.id!r} has no priced embeddings deployment",
                         metadata={"reasons": {f"{model.id}@{d.provider}": fx.missing_rate(d)
                                               for d in resident}})
    able = priced
    if not able:
        raise NoProvider(f"Model {model.id!r} has no embeddings deployment",
                         metadata={"reasons": {f"{model.id}@{d.provider}": "does not support embeddings"
                                               for d in model.deployments}})
    def is_open(d: Deployment) -> bool:
        return stats.get(d.id, DeploymentStats()).breaker(now, policy) == "open"
    return [Candidate(model, d) for d in sorted(able, key=is_open)]
