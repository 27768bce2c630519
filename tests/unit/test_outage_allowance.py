"""The credit guard's outage allowance: what an account may reserve on one replica while Redis
cannot check its balance, never more, freed by settlements, whole again when Redis answers."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from xrouter_router.domain.outage import OutageAllowance


def test_reservations_fit_the_allowance_per_account_and_settle_at_their_cost() -> None:
    allowance = OutageAllowance(Decimal("1.00"))
    assert allowance.take("g1", "acct-a", Decimal("0.60"))
    assert not allowance.take("g2", "acct-a", Decimal("0.50"))  # 1.10 > 1.00
    assert allowance.take("g3", "acct-b", Decimal("0.50"))  # another account's own allowance
    allowance.settle("g1", Decimal("0.10"))  # 0.50 of g1's reservation is free again
    assert allowance.take("g2", "acct-a", Decimal("0.50"))
    assert allowance.used == Decimal("1.10")  # acct-a 0.60, acct-b 0.50
    assert (allowance.admitted, allowance.refused) == (3, 1)
    assert allowance.extend("g2", Decimal("0.40"))
    assert not allowance.extend("g2", Decimal("0.01"))  # acct-a is at 1.00
    assert not allowance.extend("unknown", Decimal("0.01"))
    allowance.restore()
    assert allowance.used == 0
    assert allowance.take("g4", "acct-a", Decimal("1.00"))


def test_an_accounts_plan_allowance_replaces_the_global_one_for_it_alone() -> None:
    allowance = OutageAllowance()  # the global setting: 0, fail closed
    assert allowance.take("g1", "planned", Decimal("0.70"), Decimal("1.00"))
    assert not allowance.take("g2", "planned", Decimal("0.40"), Decimal("1.00"))  # 1.10 > 1.00
    assert not allowance.take("g3", "global", Decimal("0.01"))  # no plan allowance: 0
    assert allowance.extend("g1", Decimal("0.30"))  # within its plan's 1.00
    assert not allowance.extend("g1", Decimal("0.01"))
    allowance.settle("g1", Decimal("0.20"))
    assert allowance.used_by("planned") == Decimal("0.20")
    assert (allowance.admitted, allowance.refused) == (1, 2)


def test_a_plan_allowance_of_zero_refuses_where_the_global_one_would_admit() -> None:
    allowance = OutageAllowance(Decimal("5"))
    assert not allowance.take("g1", "closed", Decimal("0.01"), Decimal(0))
    assert allowance.take("g2", "open", Decimal("0.01"))


def test_a_zero_allowance_admits_nothing() -> None:
    allowance = OutageAllowance()
    assert not allowance.take("g1", "acct", Decimal("0.00000001"))
    assert allowance.refused == 1


amounts = st.decimals(min_value=Decimal(0), max_value=Decimal(5), places=8)


@given(st.lists(st.tuples(st.sampled_from(["take", "extend", "settle"]),
                          st.integers(0, 5), st.sampled_from(["a", "b"]), amounts,
                          amounts), max_size=60))
def test_no_account_ever_holds_more_than_its_allowance(steps: list[
        tuple[str, int, str, Decimal, Decimal]]) -> None:
    allowance = OutageAllowance(Decimal(3))
    owner: dict[str, str] = {}
    for op, n, account, amount, cost in steps:
        generation = f"g{n}"
        if op == "take" and generation not in owner:
            if allowance.take(generation, account, amount):
                owner[generation] = account
        elif op == "extend":
            allowance.extend(generation, amount)
        elif op == "settle":
            allowance.settle(generation, cost)
            owner.pop(generation, None)
        for held in ("a", "b"):
            assert 0 <= allowance.used_by(held) <= Decimal(3)
