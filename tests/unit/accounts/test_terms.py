"""A client's own terms, and an operator's undo for money (proxy/accounts): what
the record holds, how adjustments move money, how keys are enabled and rotated."""

import asyncio
from decimal import Decimal

import pytest
from faults import FaultPlan, FaultyRedis

from proxy.accounts.clients import Accounts
from proxy.accounts.ledger import Ledger
from proxy.accounts.terms import Terms
from proxy.errors import AccountError, InsufficientFunds
from proxy.store import connect


@pytest.fixture
def accounts(redis_client, keys, ledger):
    return Accounts(redis_client, keys, ledger, "USD")


async def test_terms_are_the_deployments_until_set_and_again_when_unset(accounts):
    await accounts.create("acme")
    assert await accounts.terms("acme") == Terms()
    assert (await accounts.get("acme")).terms == Terms()
    await accounts.set_terms("acme", {"markup": "12.5", "duplicate_window": "60", "same_link": "refuse"})
    await accounts.set_rate("acme", 7, Decimal("1.25"))
    await accounts.set_rate("acme", 3, Decimal("0.5"))
    terms = await accounts.terms("acme")
    assert terms == Terms(Decimal("12.5"), 60.0, "refuse", {3: Decimal("0.5"), 7: Decimal("1.25")})
    assert (await accounts.get("acme")).terms == terms
    assert terms.window(0) == 60 and terms.refuses_same_link
    await accounts.set_terms("acme", {"markup": None, "same_link": None})
    await accounts.set_rate("acme", 7, None)
    assert await accounts.terms("acme") == Terms(None, 60.0, "allow", {3: Decimal("0.5")})
    assert Terms().window(30) == 30
    with pytest.raises(AccountError, match="no such terms"):
        await accounts.set_terms("acme", {"colour": "red"})


async def test_an_adjustment_moves_money_either_way_never_below_zero_once_per_ref(accounts, ledger):
    await accounts.create("acme", Decimal("10"))
    taken = await accounts.adjust("acme", Decimal("-4"), ref="fix-1", reason="top-up typed twice", actor="cli:ann")
    assert (taken.kind, taken.amount, taken.balance, taken.memo, taken.actor) == (
        "adjust",
        Decimal("-4"),
        Decimal("6"),
        "top-up typed twice",
        "cli:ann",
    )
    again = await accounts.adjust("acme", Decimal("-4"), ref="fix-1", reason="again", actor="cli:ann")
    assert again.duplicate and again.id == taken.id and await ledger.balance("acme") == Decimal("6")
    with pytest.raises(InsufficientFunds):
        await accounts.adjust("acme", Decimal("-6.0000001"), ref="fix-2", reason="too much", actor="cli:ann")
    assert await ledger.balance("acme") == Decimal("6")
    given = await accounts.adjust("acme", Decimal("1.5"), ref="fix-3", reason="goodwill", actor="admin:bo")
    assert given.balance == Decimal("7.5") and given.actor == "admin:bo"
    with pytest.raises(AccountError, match="non-zero"):
        await accounts.adjust("acme", Decimal("0"), ref="fix-4", reason="nothing", actor="cli:ann")
    assert [(e.kind, e.amount) for e in await ledger.entries("acme")] == [
        ("topup", Decimal("10")),
        ("adjust", Decimal("-4")),
        ("adjust", Decimal("1.5")),
    ]


async def test_racing_debits_never_take_a_balance_below_zero(accounts, ledger):
    await accounts.create("acme", Decimal("10"))
    results = await asyncio.gather(
        *(accounts.adjust("acme", Decimal("-3"), ref=f"r{i}", reason="race", actor="x") for i in range(10)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 3
    assert all(isinstance(r, InsufficientFunds) for r in results if isinstance(r, Exception))
    assert await ledger.balance("acme") == Decimal("1")


async def test_a_lost_reply_is_asked_again_and_applies_once(redis_url, keys, redis_client):
    plan = FaultPlan()
    redis = FaultyRedis.with_plan(connect(redis_url).connection_pool, plan)
    ledger = Ledger(redis, keys)
    accounts = Accounts(redis, keys, ledger, "USD")
    await accounts.create("acme", Decimal("10"))
    plan.arm(2, "lost")  # the get() of the account, then the script: applied, its reply lost
    entry = await accounts.adjust("acme", Decimal("-2"), ref="fix", reason="lost reply", actor="x")
    plan.disarm()
    assert not entry.duplicate and entry.balance == Decimal("8")
    assert [e.amount for e in await ledger.entries("acme")] == [Decimal("10"), Decimal("-2")]
    await redis.aclose()


async def test_enable_takes_the_same_key_again_and_rotate_replaces_it(accounts):
    _, first = await accounts.create("acme")
    await accounts.disable("acme")
    assert await accounts.authenticate(first) is None
    assert not (await accounts.enable("acme")).disabled
    assert await accounts.authenticate(first) == "acme"
    second = await accounts.rotate_key("acme")
    assert await accounts.authenticate(first) is None and await accounts.authenticate(second) == "acme"
    await accounts.disable("acme")
    third = await accounts.rotate_key("acme")  # a disabled client's new key works only once enabled
    assert await accounts.authenticate(third) is None
    await accounts.enable("acme")
    assert await accounts.authenticate(third) == "acme" and await accounts.authenticate(second) is None
