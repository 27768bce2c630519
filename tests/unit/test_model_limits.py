"""The models' token limits without any store: which candidates a request fits and the
max_tokens each gets (domain/limits.fit), and the in-process windows that hold a key's tokens
of each model (storage/model_windows.py): holds, settlement, refusals and pruning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.builders import deployment, model, request
from xrouter_router.domain.catalog import Model, ModelLimits
from xrouter_router.domain.errors import InvalidRequest, RateLimited
from xrouter_router.domain.failover import capped
from xrouter_router.domain.limits import DAY, MINUTE, TokenAsk, TokenHold, fit
from xrouter_router.domain.routing import Candidate
from xrouter_router.storage.model_windows import TokenWindows

DAY_START = 1_699_920_000.0  # a UTC midnight
NOW = DAY_START + 15.0  # 15 s into the day's first minute
MINUTE_END = DAY_START + MINUTE


def _model(model_id: str, **limits: int) -> Model:
    """A model whose deployments may generate 1024 tokens, with the given limits."""
    return replace(model(model_id, deployment(model_id, "p")), limits=ModelLimits(**limits))


def _candidates(*models: Model) -> tuple[Candidate, ...]:
    return tuple(Candidate(m, d) for m in models for d in m.deployments)


# ---- fit: tokens per request, and windows that could never hold the request ----------------

def test_models_without_limits_cost_nothing_more() -> None:
    plan = _candidates(model("a", deployment("a", "p")), model("b", deployment("b", "p")))
    fitted = fit(plan, 10, None)
    assert (fitted.candidates, fitted.caps, fitted.asks) == (plan, {}, ())


def test_a_request_past_tokens_per_request_is_refused_naming_the_limit() -> None:
    plan = _candidates(_model("gigachat-pro", tokens_per_request=4000))
    with pytest.raises(InvalidRequest) as exc:
        fit(plan, 3000, 1001)
    assert exc.value.message == (
        "The request does not fit the tokens_per_request of model 'gigachat-pro' (4000): its "
        "prompt counts as 3000 tokens plus max_tokens 1001")
    assert (exc.value.param, exc.value.metadata) == ("max_tokens", {
        "model": "gigachat-pro", "limit": "tokens_per_request", "tokens_per_request": 4000,
        "prompt_tokens": 3000, "max_tokens": 1001})
    assert fit(plan, 3000, 1000).candidates == plan  # exactly the limit fits


def test_without_max_tokens_the_completion_is_cut_to_what_the_limit_leaves() -> None:
    plan = _candidates(_model("m", tokens_per_request=4000))
    assert fit(plan, 3500, None).caps == {"m": 500}
    assert fit(plan, 100, None).caps == {}  # the deployments' 1024 fit: nothing to cut
    with pytest.raises(InvalidRequest, match="leaves no room for a completion") as exc:
        fit(plan, 4000, None)
    assert exc.value.param == "messages"


def test_the_smallest_window_bounds_a_request_and_is_what_it_asks_to_hold() -> None:
    plan = _candidates(_model("m", tokens_per_minute=1000, tokens_per_day=600))
    fitted = fit(plan, 100, None)
    assert (fitted.caps, fitted.asks) == ({"m": 500}, (TokenAsk("m", 1000, 600, 600),))
    ample = fit(_candidates(_model("m", tokens_per_minute=100_000)), 100, None)
    assert (ample.caps, ample.asks) == ({}, (TokenAsk("m", 100_000, None, 1124),))
    with pytest.raises(InvalidRequest, match="tokens_per_day of model 'm' \\(600\\)"):
        fit(plan, 100, 501)


def test_a_fallback_that_cannot_take_the_request_is_dropped_not_the_request() -> None:
    small, large = _model("small", tokens_per_request=500), _model("large", tokens_per_minute=9000)
    free = model("free", deployment("free", "q"))
    fitted = fit(_candidates(small, large, free), 600, None)
    assert [c.model.id for c in fitted.candidates] == ["large", "free"]
    assert (fitted.caps, fitted.asks) == ({}, (TokenAsk("large", 9000, None, 1624),))
    with pytest.raises(InvalidRequest, match="model 'small'"):  # none left: the first's limit
        fit(_candidates(small, _model("other", tokens_per_request=100)), 600, None)


def test_a_capped_model_gets_its_max_tokens_and_only_it() -> None:
    limited, free = _candidates(_model("m", tokens_per_request=10), model("f", deployment("f", "q")))
    asked = request("m")
    assert capped(asked, {"m": 7}, limited).sampling.max_tokens == 7
    assert capped(asked, {"m": 7}, free) is asked
    assert capped(asked, {}, limited) is asked


# ---- the in-process windows ----------------------------------------------------------------

def test_a_hold_counts_until_it_settles_to_the_real_tokens() -> None:
    windows = TokenWindows()
    ask = TokenAsk("m", 1000, 5000, 600)
    hold = windows.take("k1", [ask], NOW)
    assert hold == TokenHold((ask,), int(NOW // MINUTE), int(NOW // DAY))
    assert windows.used("k1", "m", NOW) == (600, 600)
    with pytest.raises(RateLimited) as exc:  # 600 held + 600 asked > 1000
        windows.take("k1", [ask], NOW + 1)
    assert (exc.value.message, exc.value.retry_after, exc.value.metadata) == (
        "Rate limit exceeded: 1000 tokens per minute of model m", 44.0,
        {"limit": 1000, "remaining": 400, "reset": int(MINUTE_END), "model": "m",
         "requested": 600})
    windows.settle("k1", hold, "m", 150)
    assert windows.used("k1", "m", NOW) == (150, 150)
    windows.take("k1", [ask], NOW + 2)  # 150 + 600 fit now
    assert windows.used("k1", "m", NOW) == (750, 750)


def test_keys_and_models_have_windows_of_their_own() -> None:
    windows = TokenWindows()
    ask = TokenAsk("m", 1000, None, 1000)
    windows.take("k1", [ask], NOW)
    with pytest.raises(RateLimited):
        windows.take("k1", [ask], NOW)
    windows.take("k2", [ask], NOW)  # another key: its own window
    windows.take("k1", [TokenAsk("m2", 1000, None, 1000)], NOW)  # another model: its own
    assert (windows.used("k1", "m", NOW), windows.used("k2", "m", NOW),
            windows.used("k1", "m2", NOW)) == ((1000, 0), (1000, 0), (1000, 0))


def test_a_full_model_is_skipped_for_the_next_and_the_others_give_their_hold_back() -> None:
    windows = TokenWindows()
    primary, fallback = TokenAsk("m", 1000, None, 800), TokenAsk("m2", 5000, None, 800)
    first = windows.take("k", [primary, fallback], NOW)
    assert first.asks == (primary, fallback)
    second = windows.take("k", [primary, fallback], NOW)  # m is full: m2 alone holds it
    assert second.asks == (fallback,) and not second.admits("m") and second.admits("m2")
    windows.settle("k", first, "m2", 300)  # served by the fallback
    assert (windows.used("k", "m", NOW), windows.used("k", "m2", NOW)) == ((0, 0), (1100, 0))
    windows.settle("k", second, "", 0)  # failed: everything back
    assert windows.used("k", "m2", NOW) == (300, 0)


def test_the_day_window_refuses_until_the_day_ends() -> None:
    windows = TokenWindows()
    ask = TokenAsk("m", None, 1000, 600)
    windows.settle("k", windows.take("k", [ask], NOW), "m", 600)
    with pytest.raises(RateLimited) as exc:
        windows.take("k", [ask], NOW + 3 * MINUTE)
    assert exc.value.message == "Rate limit exceeded: 1000 tokens per day of model m"
    assert exc.value.retry_after == DAY - 3 * MINUTE - 15
    windows.take("k", [ask], DAY_START + DAY)


def test_windows_that_ended_are_pruned_and_a_late_settlement_recreates_none() -> None:
    windows = TokenWindows()
    holds = [windows.take(f"k{n}", [TokenAsk("m", 1000, 10_000, 10)], NOW) for n in range(500)]
    assert windows.windows == 1000  # a minute and a day window per key
    windows.take("k0", [TokenAsk("m", 1000, 10_000, 10)], NOW + MINUTE)
    assert windows.windows == 501  # the minutes went; the days stay until the day ends
    windows.settle("k1", holds[1], "m", 4)  # its minute ended: only its day changes
    assert (windows.windows, windows.used("k1", "m", NOW + MINUTE)) == (501, (0, 4))
    windows.take("k0", [TokenAsk("m", 1000, 10_000, 10)], DAY_START + DAY)
    assert windows.windows == 2
