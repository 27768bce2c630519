"""The personal-data guard applied to a request: its policy (key over account, scope), the
texts it reads and puts back, the decision against the plan's candidates (block before any
provider, mask only for the attempts the scope covers), and the restoration of answers, whole
and streamed (a placeholder split across deltas, held text flushed with the finishing delta)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.builders import deployment, model, request
from xrouter_router.domain.errors import ErrorKind, Forbidden, InvalidRequest, PersonalDataBlocked
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.pii import policy as pii
from xrouter_router.domain.pii.guard import PiiGuard, request_texts, with_texts
from xrouter_router.domain.pii.stream import DeltaRestorer
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.types import (
    Completion,
    ContentPart,
    Delta,
    Message,
    ToolCall,
)

PHONE = "+7 (916) 123-45-67"
EMAIL = "ivan.petrov@example.ru"


def _cand(where: str) -> Candidate:
    dep = replace(deployment("m", f"p-{where or 'unknown'}"), jurisdiction=where)
    return Candidate(model("m", dep), dep)


FOREIGN, HOME = _cand("us"), _cand("ru")
MASK = pii.PiiPolicy(pii.MASK, pii.FOREIGN, "key")


def _key(**kwargs: str) -> ApiKey:
    return ApiKey(id="k", account_id="a", tier="free", prefix="p", **kwargs)  # type: ignore[arg-type]


# ---- policy --------------------------------------------------------------------------------

def test_the_keys_policy_wins_over_the_accounts_and_neither_is_off_foreign() -> None:
    assert _key().pii_policy == pii.PiiPolicy(pii.OFF, pii.FOREIGN, "default")
    assert _key(account_pii_guard="block", account_pii_scope="always").pii_policy == \
        pii.PiiPolicy(pii.BLOCK, pii.ALWAYS, "account")
    assert _key(pii_guard="mask", account_pii_guard="block").pii_policy == \
        pii.PiiPolicy(pii.MASK, pii.FOREIGN, "key")
    assert _key(pii_scope="always", account_pii_guard="mask").pii_policy == \
        pii.PiiPolicy(pii.MASK, pii.ALWAYS, "account")


def test_the_scope_foreign_covers_every_provider_not_in_russia_unknown_included() -> None:
    assert MASK.applies("us") and MASK.applies("") and not MASK.applies("ru")
    assert pii.PiiPolicy(pii.MASK, pii.ALWAYS).applies("ru")
    assert not pii.PiiPolicy(pii.OFF, pii.ALWAYS).applies("us")


def test_unknown_values_are_a_400_naming_the_field() -> None:
    assert pii.guard(" Mask ") == "mask" and pii.guard("") == "" and pii.scope("ALWAYS") == "always"
    with pytest.raises(InvalidRequest) as bad:
        pii.guard("redact")
    assert bad.value.param == "pii_guard"
    assert bad.value.message == ("pii_guard must be one of ['off', 'mask', 'block'] (or empty to "
                                 "clear it), got 'redact'")
    with pytest.raises(InvalidRequest) as bad:
        pii.scope("abroad")
    assert bad.value.param == "pii_scope"


def test_a_management_key_cannot_loosen_its_plans_guard() -> None:
    plan = Plan("max", pii_guard="block", pii_scope="always")
    plan.admit(_key(pii_guard="mask"))  # still guarded: allowed
    with pytest.raises(Forbidden) as off:
        plan.admit(_key(pii_guard="off"))
    assert off.value.param == "pii_guard"
    with pytest.raises(Forbidden) as narrower:
        plan.admit(_key(pii_scope="foreign"))
    assert narrower.value.param == "pii_scope"
    with pytest.raises(InvalidRequest):
        Plan("max", pii_guard="Mask")


# ---- the request's texts -------------------------------------------------------------------

MESSAGES = (
    Message(role="system", content=f"Клиент: {EMAIL}"),
    Message(role="user", parts=(ContentPart("text", text=f"звоните {PHONE}"),
                                ContentPart("image_url", image_url="data:x"))),
    Message(role="assistant", content=None, reasoning="думаю",
            tool_calls=(ToolCall(0, "c1", "call", f'{{"phone": "{PHONE}"}}'),)),
    Message(role="tool", content="ok", tool_call_id="c1"),
)


def test_every_text_is_read_in_order_and_put_back_in_place() -> None:
    req = request(messages=MESSAGES)
    texts = request_texts(req)
    assert texts == [f"Клиент: {EMAIL}", f"звоните {PHONE}", "думаю", f'{{"phone": "{PHONE}"}}', "ok"]
    back = with_texts(req, [t.upper() for t in texts])
    assert request_texts(back) == [t.upper() for t in texts]
    assert back.messages[1].parts[1] == MESSAGES[1].parts[1]
    assert back.messages[2].content is None and back.messages[3].tool_call_id == "c1"


# ---- the decision ----------------------------------------------------------------------------

async def test_block_raises_naming_the_kinds_when_a_candidate_is_foreign() -> None:
    policy = pii.PiiPolicy(pii.BLOCK, pii.FOREIGN, "key")
    with pytest.raises(PersonalDataBlocked) as stopped:
        await PiiGuard().prepare(policy, request(messages=MESSAGES), [HOME, FOREIGN])
    assert stopped.value.kind is ErrorKind.INVALID_REQUEST
    assert stopped.value.metadata == {"error_code": "personal_data_blocked",
                                      "reasons": ["pii_guard"], "kinds": ["email", "phone"]}
    assert PHONE not in stopped.value.message and EMAIL not in stopped.value.message
    # Only Russian candidates and the scope foreign: nothing to guard (nothing even scanned).
    assert await PiiGuard().prepare(policy, request(messages=MESSAGES), [HOME]) is None
    always = pii.PiiPolicy(pii.BLOCK, pii.ALWAYS, "key")
    with pytest.raises(PersonalDataBlocked):
        await PiiGuard().prepare(always, request(messages=MESSAGES), [HOME])


async def test_no_personal_data_or_policy_off_leaves_the_request_alone() -> None:
    assert await PiiGuard().prepare(MASK, request(text="просто вопрос"), [FOREIGN]) is None
    off = pii.PiiPolicy()
    assert await PiiGuard().prepare(off, request(messages=MESSAGES), [FOREIGN]) is None


async def test_mask_gives_the_masked_request_only_to_the_attempts_its_scope_covers() -> None:
    req = request(messages=MESSAGES)
    guarded = await PiiGuard().prepare(MASK, req, [FOREIGN, HOME])
    assert guarded is not None
    assert guarded.request_for(HOME) is req
    sent = guarded.request_for(FOREIGN)
    assert request_texts(sent) == ["Клиент: [EMAIL_1]", "звоните [PHONE_1]", "думаю",
                                   '{"phone": "[PHONE_1]"}', "ok"]
    answer = Completion(Message(role="assistant", content="Позвоню на [PHONE_1], пишу [EMAIL_1]",
                                reasoning="номер [PHONE_1]",
                                tool_calls=(ToolCall(0, "c2", "mail", '{"to": "[EMAIL_1]"}'),)),
                        "stop")
    restored = guarded.restore(answer).message
    assert restored.content == f"Позвоню на {PHONE}, пишу {EMAIL}"
    assert restored.reasoning == f"номер {PHONE}"
    assert restored.tool_calls[0].arguments == f'{{"to": "{EMAIL}"}}'


# ---- streams ---------------------------------------------------------------------------------

MAPPING = {"[PHONE_1]": PHONE, "[EMAIL_1]": EMAIL}


def test_a_placeholder_split_across_deltas_is_sent_whole_restored() -> None:
    r = DeltaRestorer(MAPPING)
    assert r.feed([Delta(role="assistant", content="Тел. [PHO")]) == (
        Delta(role="assistant", content="Тел. "),)
    assert r.feed([Delta(content="NE_1], всё")]) == (Delta(content=f"{PHONE}, всё"),)


def test_held_text_goes_out_with_the_choices_finishing_delta() -> None:
    r = DeltaRestorer(MAPPING)
    assert r.feed([Delta(content="пишите [EMA"), Delta(index=1, reasoning="[PH")]) == (
        Delta(content="пишите "), Delta(index=1, reasoning=""))
    assert r.feed([Delta(finish_reason="stop")]) == (Delta(content="[EMA", finish_reason="stop"),)
    # Choice 1 never finished: the end of the stream sends what it holds.
    assert r.finish([]) == (Delta(index=1, reasoning="[PH"),)


def test_tool_call_arguments_are_restored_per_call() -> None:
    r = DeltaRestorer(MAPPING)
    first = r.feed([Delta(tool_calls=(ToolCall(0, "c", "f", '{"a": "[PHON'),
                                      ToolCall(1, "d", "g", '{"b": "[EMAIL_1]"}')))])
    assert first[0].tool_calls == (ToolCall(0, "c", "f", '{"a": "'),
                                   ToolCall(1, "d", "g", f'{{"b": "{EMAIL}"}}'))
    last = r.finish([Delta(tool_calls=(ToolCall(0, "", "", 'E_1]"}'),), finish_reason="tool_calls")])
    assert last == (Delta(tool_calls=(ToolCall(0, "", "", f'{PHONE}"}}'),),
                          finish_reason="tool_calls"),)
